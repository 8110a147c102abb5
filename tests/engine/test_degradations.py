"""Tests for restore_jax.degradations (host-side NumPy samplers).

References are independent re-statements (slow loops, closed-form moments, colorsys, np.flip /
np.rot90, block means), never the code under test.
"""

from __future__ import annotations

import colorsys
import math
import pickle

import numpy as np
import pytest

import restore_jax.degradations as D
from restore_jax.degradations import kernels as K

# ----------------------------------------------------------------------------- fixtures


def _smooth_image(h: int = 48, w: int = 48) -> np.ndarray:
    """Deterministic smooth RGB image with a few edges (a 'natural-ish' test picture)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy / (h - 1), xx / (w - 1)
    r = 0.5 + 0.35 * np.sin(2 * np.pi * (1.3 * xx + 0.4 * yy))
    g = 0.3 + 0.4 * yy + 0.2 * ((xx - 0.5) ** 2 + (yy - 0.4) ** 2 < 0.08)
    b = 0.4 + 0.3 * np.cos(2 * np.pi * 2.1 * xx * yy) * (xx > 0.35)
    return np.clip(np.stack([r, g, b], -1), 0, 1).astype(np.float32)


IMG = _smooth_image()
SEQ = np.stack([np.roll(IMG, 2 * t, axis=1) for t in range(7)])  # [7, 48, 48, 3]

# name -> (input, kwargs) for every registered sampler; kwargs make each one random.
SAMPLER_CASES = {
    "blur": (IMG, {}),
    "gaussian_blur": (IMG, {"size": 11}),
    "generalized_gaussian_blur": (SEQ[:3], {"size": 11}),
    "motion_blur": (IMG, {"size": 11, "length": (2.0, 9.0)}),
    "downsample": (IMG, {"factor": [2, 3, 4], "method": ["bilinear", "area", "nearest"]}),
    "noise": (IMG, {}),
    "gaussian_noise": (SEQ[:2], {}),
    "poisson_noise": (IMG, {}),
    "salt_pepper_noise": (IMG, {}),
    "mixed_noise": (IMG, {}),
    "jpeg": (SEQ[:3], {}),
    "scratches": (SEQ[:3], {}),
    "color_jitter": (SEQ[:2], {}),
    "flip_rotate": (SEQ[:2], {"hflip_prob": 0.5, "vflip_prob": 0.5, "rot90_prob": 0.5, "reverse_prob": 0.5}),
    "frame_average": (SEQ, {"num_frames": [3, 5]}),
    "temporal_subsample": (SEQ, {}),
    "burst": (IMG, {"num_frames": 3, "jpeg_quality": (30, 90)}),
}
DETERMINISTIC = {"temporal_subsample"}  # uses no randomness by design


def _run(name: str, seed: int):
    x, kwargs = SAMPLER_CASES[name]
    return D.SAMPLERS[name](np.random.default_rng(seed), x, **kwargs)


def _same(a, b) -> bool:
    (ya, pa), (yb, pb) = a, b
    if ya.shape != yb.shape or ya.tobytes() != yb.tobytes() or sorted(pa) != sorted(pb):
        return False
    return all(pa[k].dtype == pb[k].dtype and pa[k].shape == pb[k].shape and pa[k].tobytes() == pb[k].tobytes() for k in pa)


# ----------------------------------------------------------------------------- contract


def test_every_builtin_sampler_has_a_case():
    builtin = {n for n, f in D.SAMPLERS.items() if f.__module__.startswith("restore_jax.degradations")}
    assert builtin == set(SAMPLER_CASES)


@pytest.mark.parametrize("name", sorted(SAMPLER_CASES))
def test_sampler_determinism_and_param_contract(name):
    a, b = _run(name, 7), _run(name, 7)
    assert _same(a, b), f"{name}: same seed gave different output/params"
    y, params = a
    assert y.dtype == np.float32 and 0.0 <= y.min() and y.max() <= 1.0
    for k, v in params.items():
        assert isinstance(v, np.ndarray) and v.dtype in (np.float32, np.int32), (k, type(v), getattr(v, "dtype", None))
    # Fixed keys, dtypes and shapes regardless of the draw (so params of a batch stack).
    for seed in range(1, 5):
        _, p = _run(name, seed)
        assert sorted(p) == sorted(params)
        assert all(p[k].shape == params[k].shape and p[k].dtype == params[k].dtype for k in p)
    if name not in DETERMINISTIC:
        assert any(not _same(a, _run(name, s)) for s in range(1, 6)), f"{name}: different seeds never differ"


# ----------------------------------------------------------------------------- kernels


def _moments(k: np.ndarray):
    r = k.shape[0] // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    k = k.astype(np.float64)
    mx, my = (k * xx).sum(), (k * yy).sum()
    cxx = (k * (xx - mx) ** 2).sum()
    cyy = (k * (yy - my) ** 2).sum()
    cxy = (k * (xx - mx) * (yy - my)).sum()
    return mx, my, np.array([[cxx, cxy], [cxy, cyy]])


@pytest.mark.parametrize("s1,s2,theta", [(3.0, 1.5, 0.6), (1.2, 2.5, -1.1), (2.0, 2.0, 0.0)])
def test_anisotropic_gaussian_covariance(s1, s2, theta):
    k = K.gaussian_kernel(s1, s2, theta, size=61)
    assert k.dtype == np.float32 and k.shape == (61, 61)
    assert abs(k.astype(np.float64).sum() - 1) < 1e-5
    mx, my, cov = _moments(k)
    # Requested Sigma = R diag(s1^2, s2^2) R^T over (x = column, y = row), built here independently.
    c, s = math.cos(theta), math.sin(theta)
    want = np.array(
        [
            [c * c * s1**2 + s * s * s2**2, c * s * (s1**2 - s2**2)],
            [c * s * (s1**2 - s2**2), s * s * s1**2 + c * c * s2**2],
        ]
    )
    assert abs(mx) < 1e-5 and abs(my) < 1e-5
    np.testing.assert_allclose(cov, want, atol=2e-3 * s1 * s2, rtol=2e-3)


def test_kernels_normalised_and_symmetric():
    iso = K.gaussian_kernel(1.7, size=21)
    np.testing.assert_allclose(iso, iso[::-1], atol=1e-7)
    np.testing.assert_allclose(iso, iso[:, ::-1], atol=1e-7)
    np.testing.assert_allclose(iso, iso.T, atol=1e-7)
    for k in (
        iso,
        K.gaussian_kernel(2.5, 0.7, 0.4, size=21),
        K.generalized_gaussian_kernel(2.0, 1.0, 1.0, beta=0.6, size=15),
        K.generalized_gaussian_kernel(2.0, 1.0, 1.0, beta=3.0, size=15),
        K.motion_kernel(9.0, 0.3, 0.0, size=21),
    ):
        assert k.min() >= 0
        assert abs(k.astype(np.float64).sum() - 1.0) < 1e-5
        np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-6)  # point symmetry k(p) = k(-p)
    curved = K.motion_kernel(12.0, 1.0, 1.2, size=21)
    assert curved.min() >= 0 and abs(curved.astype(np.float64).sum() - 1.0) < 1e-5
    # beta = 1 is exactly the Gaussian.
    np.testing.assert_allclose(
        K.generalized_gaussian_kernel(1.3, 2.1, 0.5, beta=1.0, size=15), K.gaussian_kernel(1.3, 2.1, 0.5, size=15), atol=1e-7
    )


def test_motion_kernel_geometry():
    # Horizontal straight path of length L: mass on the centre row, variance L^2/12 (uniform
    # segment) plus 1/6 from bilinear splatting of uniformly spread sub-pixel positions.
    L = 12.0
    k = K.motion_kernel(L, 0.0, 0.0, size=21)
    np.testing.assert_allclose(k.sum(axis=1)[10], 1.0, atol=1e-6)
    mx, my, cov = _moments(k)
    assert abs(mx) < 1e-6 and abs(my) < 1e-6
    assert abs(cov[0, 0] - (L * L / 12 + 1 / 6)) < 0.05
    # Vertical path (angle pi/2) is the transpose.
    np.testing.assert_allclose(K.motion_kernel(L, math.pi / 2, 0.0, size=21), k.T, atol=1e-6)
    # Curvature = total turning angle of the path.
    pts = K.motion_path(10.0, 0.2, 0.9, num=2001)
    d0, d1 = pts[1] - pts[0], pts[-1] - pts[-2]
    turn = math.atan2(d1[1], d1[0]) - math.atan2(d0[1], d0[0])
    assert abs(turn - 0.9) < 1e-3
    np.testing.assert_array_equal(K.motion_kernel(0.0, 1.0, 0.5, size=7), K.delta_kernel(7))


# ----------------------------------------------------------------------------- convolution


def _slow_convolve(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    kh, kw = k.shape
    ry, rx = kh // 2, kw // 2
    xp = np.pad(x.astype(np.float64), ((ry, ry), (rx, rx), (0, 0)), mode="reflect")
    out = np.zeros(x.shape, np.float64)
    for yy in range(x.shape[0]):
        for xx in range(x.shape[1]):
            for i in range(kh):
                for j in range(kw):
                    # true convolution: out(p) = sum_q x(p - q) k(q)
                    out[yy, xx] += xp[yy + ry - (i - ry), xx + rx - (j - rx)] * k[i, j]
    return out


def test_convolve_matches_slow_loop_and_delta():
    rng = np.random.default_rng(3)
    x = rng.random((7, 6, 2), dtype=np.float32)
    for shape in [(3, 3), (5, 5), (3, 5)]:
        k = rng.random(shape)
        k /= k.sum()
        np.testing.assert_allclose(D.convolve(x, k), _slow_convolve(x, k), atol=2e-6)
    np.testing.assert_allclose(D.convolve(x, K.delta_kernel(5)), x, atol=1e-6)
    # sequences: the same kernel on every frame
    seq = rng.random((3, 7, 6, 2), dtype=np.float32)
    k = K.gaussian_kernel(1.0, 0.6, 0.3, size=5)
    y = D.convolve(seq, k)
    for t in range(3):
        np.testing.assert_allclose(y[t], _slow_convolve(seq[t], k), atol=2e-6)


def test_blur_sampler_records_kernel_used():
    y, p = D.gaussian_blur(np.random.default_rng(0), IMG, size=[7, 11])
    assert p["kernel"].shape == (11, 11)
    s = int(p["size"])
    k = K.pad_kernel(K.gaussian_kernel(float(p["sigma1"]), float(p["sigma2"]), float(p["theta"]), size=s), 11)
    np.testing.assert_allclose(p["kernel"], k, atol=1e-6)
    np.testing.assert_allclose(y, D.convolve(IMG, p["kernel"]), atol=1e-5)
    y, p = D.random_blur(np.random.default_rng(5), IMG, kinds=("motion",), size=11, length=(2.0, 8.0))
    assert int(p["kind"]) == D.KERNEL_KINDS["motion"]
    np.testing.assert_allclose(p["kernel"], K.motion_kernel(float(p["length"]), float(p["angle"]), float(p["curvature"]), 11), atol=1e-6)


# ----------------------------------------------------------------------------- temporal


def test_frame_averaging():
    frames = SEQ[:5]
    np.testing.assert_allclose(D.average_frames(frames), np.mean(frames, axis=0), atol=1e-6)
    g = 2.2
    want = np.mean(frames.astype(np.float64) ** g, axis=0) ** (1 / g)
    np.testing.assert_allclose(D.average_frames(frames, gamma=g), want, atol=1e-6)
    y, p = D.frame_average(np.random.default_rng(2), SEQ, num_frames=(3, 5), gamma=1.0)
    s, n = int(p["start"]), int(p["num_frames"])
    assert 3 <= n <= 5 and 0 <= s <= 7 - n
    np.testing.assert_allclose(y, SEQ[s : s + n].mean(axis=0), atol=1e-6)


def test_temporal_subsample_keeps_odd_frames():
    y, p = D.temporal_subsample(np.random.default_rng(0), SEQ)
    np.testing.assert_array_equal(p["kept"], [0, 2, 4, 6])
    np.testing.assert_array_equal(y, SEQ[[0, 2, 4, 6]])


# ----------------------------------------------------------------------------- noise


def test_gaussian_noise_std_on_mid_grey():
    grey = np.full((128, 128, 3), 0.5, np.float32)
    y = D.add_gaussian_noise(grey, 10.0, np.random.default_rng(0))
    assert abs(float(y.std()) - 10.0 / 255) < 0.02 * 10.0 / 255
    assert abs(float(y.mean()) - 0.5) < 1e-3
    y, p = D.gaussian_noise(np.random.default_rng(1), grey, sigma=(5.0, 20.0))
    assert 5.0 <= float(p["sigma"]) <= 20.0
    assert abs(float(y.std()) - float(p["sigma"]) / 255) < 0.03 * float(p["sigma"]) / 255


def test_poisson_noise_variance():
    grey = np.full((128, 128, 3), 0.5, np.float32)
    y = D.add_poisson_noise(grey, 100.0, np.random.default_rng(0))
    assert abs(float(y.var()) - 0.5 / 100.0) < 0.05 * 0.5 / 100.0


@pytest.mark.parametrize("per_channel", [False, True])
def test_salt_pepper_fraction(per_channel):
    grey = np.full((128, 128, 3), 0.5, np.float32)
    y = D.add_salt_pepper_noise(grey, 0.2, np.random.default_rng(0), salt_ratio=0.25, per_channel=per_channel)
    hit = y != 0.5
    if not per_channel:
        assert np.all(hit.all(-1) == hit.any(-1))  # whole pixels replaced
        hit = hit[..., 0]
    assert abs(hit.mean() - 0.2) < 0.01
    salt = (y == 1.0)[..., 0] if not per_channel else y == 1.0
    assert abs(salt.mean() / hit.mean() - 0.25) < 0.03
    assert set(np.unique(y)) <= {0.0, 0.5, 1.0}


def test_mixed_noise_has_ten_percent_impulses():
    grey = np.full((128, 128, 3), 0.5, np.float32)
    y, p = D.mixed_noise(np.random.default_rng(0), grey)
    assert float(p["amount"]) == pytest.approx(0.1)
    impulses = np.all((y == 0.0) | (y == 1.0), axis=-1)
    assert abs(impulses.mean() - 0.1) < 0.01
    rest = y[~impulses]
    assert abs(float(rest.std()) - float(p["sigma"]) / 255) < 0.05 * float(p["sigma"]) / 255


# ----------------------------------------------------------------------------- JPEG


def _mse(a, b):
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def test_jpeg_error_falls_with_quality():
    img = _smooth_image(64, 64)
    errs = [_mse(D.jpeg_compress(img, q), img) for q in (10, 30, 60, 95)]
    assert errs[0] > errs[1] > errs[2] > errs[3] > 0
    assert D.jpeg_compress(img, 50, "4:4:4").shape == img.shape
    gray = img[..., :1]
    assert D.jpeg_compress(gray, 20).shape == gray.shape


def test_jpeg_error_falls_with_quality_real(shared_data):
    from PIL import Image

    files = sorted((shared_data / "faces128" / "val").glob("*.png"))[:2]
    assert files, "no PNG in shared faces128/val"
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255
        errs = [_mse(D.jpeg_compress(img, q), img) for q in (10, 30, 60, 95)]
        assert errs[0] > errs[1] > errs[2] > errs[3]


def test_jpeg_sequence_quality_per_frame_or_sequence():
    seq = SEQ[:4]
    y, p = D.jpeg(np.random.default_rng(0), seq, quality=(10, 90), subsampling="4:2:0")
    assert p["quality"].shape == (4,) and int(p["subsampling"]) == 2
    for t in range(4):
        np.testing.assert_array_equal(y[t], D.jpeg_compress(seq[t], int(p["quality"][t])))
    _, p1 = D.jpeg(np.random.default_rng(0), seq, per_frame=False, subsampling=["4:4:4"])
    assert len(set(p1["quality"].tolist())) == 1 and int(p1["subsampling"]) == 0
    _, p2 = D.jpeg(np.random.default_rng(0), IMG, quality=[10, 20, 30, 40])
    assert p2["quality"].shape == () and int(p2["quality"]) in (10, 20, 30, 40)


# ----------------------------------------------------------------------------- scratches


def test_scratches_touch_few_pixels_and_mask_matches():
    grey = np.full((128, 128, 3), 0.5, np.float32)
    fractions = []
    for seed in range(6):
        y, p = D.scratches(np.random.default_rng(seed), grey)
        changed = np.any(np.abs(y - grey) > 1 / 255, axis=-1)
        fractions.append(changed.mean())
        assert np.all(y >= grey - 1e-7)  # default scratches are bright
        mask, pm = D.scratch_mask(np.random.default_rng(seed), grey.shape)
        assert mask.shape == (128, 128, 1)
        np.testing.assert_allclose(y, grey * (1 - mask) + mask, atol=1e-6)
        assert all(pm[k].tobytes() == p[k].tobytes() for k in p)
        assert int(p["count"]) >= 1 and abs(float(p["coverage"]) - float(mask.mean())) < 1e-6
    assert np.mean(fractions) < 0.05 and max(fractions) < 0.1


def test_scratches_persist_across_frames():
    seq = np.full((4, 64, 64, 3), 0.5, np.float32)
    mask, _ = D.scratch_mask(np.random.default_rng(1), seq.shape, drift=0.0, count=3)
    for t in range(1, 4):
        np.testing.assert_array_equal(mask[t], mask[0])
    mask, _ = D.scratch_mask(np.random.default_rng(1), seq.shape, drift=0.5, count=3)
    # drifting scratches: the same scratches in every frame, slightly moved sideways
    m0 = mask[0].ravel()
    for t in range(1, 4):
        mt = mask[t].ravel()
        assert not np.array_equal(mt, m0)
        assert np.dot(mt, m0) / np.sqrt(np.dot(mt, mt) * np.dot(m0, m0)) > 0.2
    # frame 0 of a sequence is the still-image scratch pattern (same draws, no drift yet)
    geom = D.sample_scratch_geometry(np.random.default_rng(1), 64, 64, 4, drift=0.5, count=3)
    np.testing.assert_array_equal(geom.offsets[0], 0.0)
    assert 0 < np.abs(geom.offsets[1:]).max() < 4.0
    dark, _ = D.scratches(np.random.default_rng(2), seq, dark_prob=1.0)
    assert np.all(dark <= seq + 1e-7) and np.any(dark < 0.5)


# ----------------------------------------------------------------------------- geometry / colour


def test_flips_identical_across_frames():
    seq = SEQ[:3, :, :40]  # non-square
    seen = set()
    for seed in range(12):
        y, p = D.random_flip_rotate(
            np.random.default_rng(seed), seq, hflip_prob=0.5, vflip_prob=0.5, rot90_prob=0.7, reverse_prob=0.5
        )
        frames = []
        for f in seq:
            if p["vflip"]:
                f = np.flip(f, axis=0)
            if p["hflip"]:
                f = np.flip(f, axis=1)
            f = np.rot90(f, k=int(p["rot90_k"]))
            frames.append(f)
        if p["reversed"]:
            frames = frames[::-1]
        np.testing.assert_array_equal(y, np.stack(frames))
        seen.add(tuple(int(p[k]) for k in ("hflip", "vflip", "rot90_k", "reversed")))
    assert len(seen) > 4
    _, p = D.random_flip_rotate(np.random.default_rng(0), IMG, reverse_prob=1.0)
    assert int(p["reversed"]) == 0  # single images are never time-reversed


def test_color_jitter_reference_and_sequence():
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 3), dtype=np.float32)
    y = D.adjust_hue(x, 0.2)
    for idx in np.ndindex(3, 4):
        h, s, v = colorsys.rgb_to_hsv(*x[idx].astype(np.float64))
        want = colorsys.hsv_to_rgb((h + 0.2) % 1.0, s, v)
        np.testing.assert_allclose(y[idx], want, atol=1e-5)
    grey = D.adjust_saturation(x, 0.0)
    np.testing.assert_allclose(grey, np.repeat(x @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(x.shape), atol=1e-6)
    seq = np.stack([IMG, IMG, IMG])
    ys, p = D.color_jitter(np.random.default_rng(4), seq)
    assert sorted(p["order"].tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(ys[0], ys[1])
    np.testing.assert_array_equal(ys[0], ys[2])


# ----------------------------------------------------------------------------- resize / burst


def test_downsample_methods_and_shapes():
    from restore_jax.ops.resize import imresize_np

    y, p = D.downsample(np.random.default_rng(0), IMG, factor=4)
    assert int(p["method"]) == D.RESIZE_METHODS["bicubic"] and y.shape == (12, 12, 3)
    np.testing.assert_allclose(y, np.clip(imresize_np(IMG, scale=0.25), 0, 1), atol=1e-6)
    # area with an integer factor is the block mean (independent reference)
    blocks = IMG.reshape(24, 2, 24, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(D.resize(IMG, scale=0.5, method="area"), blocks, atol=1e-5)
    for m in ("bicubic", "bilinear", "area", "nearest"):
        assert D.resize(IMG, scale=1 / 3, method=m).shape == (16, 16, 3)  # ceil(48 / 3)
        assert D.resize(IMG, scale=1 / 2.5, method=m).shape == (20, 20, 3)  # non-integer factor
    ys = D.resize(SEQ[:2], scale=0.5, method="bilinear")
    np.testing.assert_array_equal(ys[1], D.resize(SEQ[1], scale=0.5, method="bilinear"))


def test_affine_warp_conventions():
    img = _smooth_image(32, 32)
    # integer shift (dy, dx) moves content down/right: out[y, x] = in[y - dy, x - dx]
    w = D.affine_warp(img, (2.0, -3.0), interpolation="bilinear")
    np.testing.assert_allclose(w[2:, :-3], img[:-2, 3:], atol=1e-5)
    # quarter turn from +x towards +y (clockwise on screen) == np.rot90(k=-1) for a square image
    np.testing.assert_allclose(D.affine_warp(img, angle=math.pi / 2, interpolation="bilinear"), np.rot90(img, k=-1), atol=1e-5)


def test_burst_shapes_params_and_reference_frame():
    y, p = D.burst(np.random.default_rng(0), IMG, num_frames=5, factor=4, jpeg_quality=None, interpolation="bilinear")
    assert y.shape == (5, 12, 12, 3)
    assert p["shifts"].shape == (5, 2) and p["angles"].shape == (5,) and p["zooms"].shape == (5,)
    assert int(p["reference"]) == 2 and np.all(p["quality"] == 0)
    plain = D.resize(IMG, scale=0.25)
    np.testing.assert_allclose(y[2], plain, atol=1e-5)  # identity reference frame == plain downsampling
    assert np.all(np.abs(np.delete(p["shifts"], 2, axis=0)) > 0)
    assert not np.allclose(y[0], plain, atol=1e-3)
    again = D.render_burst(IMG, p["shifts"], p["angles"], p["zooms"], factor=4, gains=p["gains"], interpolation="bilinear")
    np.testing.assert_array_equal(again, y)  # params fully describe the burst
    z = D.render_burst(IMG, np.zeros((2, 2)), 0.0, 1.0, factor=4)
    np.testing.assert_allclose(z[0], plain, atol=1e-5)


# ----------------------------------------------------------------------------- composer


def _chain():
    return D.Compose(
        [
            ("blur", {"size": 11, "length": (2.0, 8.0)}),
            ("downsample", {"factor": 2, "method": ["bilinear", "area"]}),
            ("noise", {"sigma": (0.0, 15.0)}),
            ("jpeg", {"quality": (30, 90)}),
        ],
        random_order=True,
    )


def test_compose_prefixes_order_determinism_and_stacking():
    c = _chain()
    y, p = c(np.random.default_rng(0), IMG)
    assert y.shape == (24, 24, 3)
    assert {"blur/sigma1", "blur/kernel", "downsample/factor", "noise/sigma", "jpeg/quality", "order"} <= set(p)
    assert sorted(p["order"].tolist()) == [0, 1, 2, 3]
    # Re-run the chain by hand in the recorded order from the same generator state.
    rng = np.random.default_rng(0)
    perm = rng.permutation(4)
    np.testing.assert_array_equal(perm, p["order"])
    z = IMG
    for idx in perm:
        name, kwargs, _ = c.steps[int(idx)]
        z, _ = D.SAMPLERS[name](rng, z, **kwargs)
    np.testing.assert_array_equal(z, y)
    assert _same((y, p), c(np.random.default_rng(0), IMG))
    runs = [c(np.random.default_rng(s), IMG)[1] for s in range(4)]
    stacked = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
    assert stacked["blur/kernel"].shape == (4, 11, 11) and stacked["order"].shape == (4, 4)
    assert len({tuple(r["order"]) for r in runs}) > 1
    fixed = D.Compose([("noise", {}), ("jpeg", {})])
    np.testing.assert_array_equal(fixed(np.random.default_rng(3), IMG)[1]["order"], [0, 1])


def test_compose_pickles_and_labels():
    c = _chain()
    c2 = pickle.loads(pickle.dumps(c))
    assert _same(c(np.random.default_rng(9), IMG), c2(np.random.default_rng(9), IMG))
    twice = D.Compose([("noise", {"sigma": 5.0}), ("noise", {"sigma": 10.0}, "noise2")])
    _, p = twice(np.random.default_rng(0), IMG)
    assert float(p["noise/sigma"]) == 5.0 and float(p["noise2/sigma"]) == 10.0
    with pytest.raises(ValueError, match="duplicate"):
        D.Compose([("noise", {}), ("noise", {})])
    with pytest.raises(ValueError, match="unknown sampler"):
        D.Compose([("nosie", {})])
    with pytest.raises(ValueError, match="bad arguments"):
        D.Compose([("noise", {"sigm": 3})])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: D.gaussian_noise(np.random.default_rng(0), np.zeros((8, 8), np.float32)), "shape"),
        (lambda: D.gaussian_noise(np.random.default_rng(0), np.zeros((8, 8, 3), np.uint8)), "dtype uint8"),
        (lambda: D.jpeg(np.random.default_rng(0), np.full((8, 8, 3), 200.0, np.float32)), "0-255"),
        (lambda: D.random_blur(np.random.default_rng(0), np.full((8, 8, 3), np.nan, np.float32)), "NaN"),
        (lambda: D.frame_average(np.random.default_rng(0), IMG), "sequence"),
        (lambda: D.burst(np.random.default_rng(0), SEQ), "image"),
        (lambda: D.jpeg(np.random.default_rng(0), np.zeros((8, 8, 2), np.float32)), "channels"),
        (lambda: D.gaussian_noise(0, IMG), "Generator"),
        (lambda: D.gaussian_blur(np.random.default_rng(0), IMG, size=20), "odd"),
        (lambda: D.motion_blur(np.random.default_rng(0), IMG, size=9, length=(2.0, 12.0)), "fit"),
        (lambda: D.gaussian_noise(np.random.default_rng(0), IMG, sigma=(10.0, 5.0)), "low <= high"),
        (lambda: D.frame_average(np.random.default_rng(0), SEQ, num_frames=9), "cannot average"),
    ],
)
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
