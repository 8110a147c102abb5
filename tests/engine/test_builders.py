"""Tests for input_pipelines.builders: fixed keys/shapes, crops, frame-averaging and the FMR rule.

References are independent re-statements: NumPy means, Python ``sorted`` with the (x, y, t) key
from the CFMD paper, slicing at the recorded crop offsets, ``np.flip`` / ``np.rot90``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from input_pipelines import builders as B
from restore_jax.ops.resize import imresize_np


def _smooth(h: int, w: int, phase: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 0.5 + 0.4 * np.sin(0.3 * xx + phase)
    g = 0.5 + 0.4 * np.cos(0.2 * yy - phase)
    b = 0.5 + 0.3 * np.sin(0.1 * (xx + yy) + 2 * phase)
    return np.stack([r, g, b], -1).astype(np.float32)


def _clip(t: int, h: int, w: int) -> np.ndarray:
    return np.stack([_smooth(h, w, 0.4 * k) for k in range(t)])


def _spec(ex: dict) -> dict:
    return {k: (v.shape, v.dtype) for k, v in ex.items()}


def _check_fixed(fn, record, n: int = 3, **kwargs) -> list[dict]:
    """Examples from several seeds have the same keys, shapes and dtypes (so they batch)."""
    exs = [fn(record, np.random.default_rng(s), **kwargs) for s in range(n)]
    for ex in exs[1:]:
        assert _spec(ex) == _spec(exs[0])
    for k, v in exs[0].items():
        assert isinstance(v, np.ndarray), k
        if v.dtype.kind == "f":
            assert v.dtype == np.float32, k
    again = fn(record, np.random.default_rng(0), **kwargs)  # pure function of the generator
    for k in exs[0]:
        assert again[k].tobytes() == exs[0][k].tobytes(), k
    return exs


def test_sr_pair():
    img = _smooth(40, 44)
    exs = _check_fixed(B.sr_pair, {"image": img, "index": np.int64(5)}, hr_size=32, scale=4, hflip_prob=0.5)
    for ex in exs:
        y0, x0 = ex["aug/crop"]
        crop = img[y0 : y0 + 32, x0 : x0 + 32]
        if ex["aug/hflip"]:
            crop = crop[:, ::-1]
        np.testing.assert_array_equal(ex["hr"], crop)
        assert ex["lr"].shape == (8, 8, 3)
        np.testing.assert_allclose(ex["lr"], np.clip(imresize_np(crop, scale=0.25), 0, 1), atol=1e-6)
        assert float(ex["deg/downsample/factor"]) == 4.0 and int(ex["meta/index"]) == 5
    chain = [("blur", {"kinds": ["isotropic"], "sigma1": (0.5, 2.0), "size": 7}), ("downsample", {"factor": 2}), ("jpeg", {"quality": (30, 90)})]
    ex = _check_fixed(B.sr_pair, {"image": img}, hr_size=16, scale=2, degradation=chain)[0]
    assert ex["lr"].shape == (8, 8, 3) and "deg/blur/sigma1" in ex and "deg/jpeg/quality" in ex
    with pytest.raises(ValueError, match="expected"):
        B.sr_pair({"image": img}, np.random.default_rng(0), hr_size=16, scale=4, degradation=[("downsample", {"factor": 2})])
    with pytest.raises(ValueError, match="larger than the input"):
        B.sr_pair({"image": img}, np.random.default_rng(0), hr_size=64)


def test_burst_still_and_clip():
    img = _smooth(36, 36)
    ex = _check_fixed(B.burst, {"image": img}, hr_size=32, num_frames=5, scale=4)[0]
    assert ex["lr"].shape == (5, 8, 8, 3) and ex["hr"].shape == (32, 32, 3)
    assert ex["deg/shifts"].shape == (5, 2) and int(ex["deg/reference"]) == 2
    clip = _clip(9, 20, 20)
    for ex in _check_fixed(B.burst, {"frames": clip}, hr_size=16, num_frames=5, scale=2):
        s = int(ex["deg/start"])
        y0, x0 = ex["aug/crop"]
        np.testing.assert_array_equal(ex["hr"], clip[s + 2, y0 : y0 + 16, x0 : x0 + 16])
        assert ex["lr"].shape == (5, 8, 8, 3)


def _moving_face_record(t: int = 13, size: int = 40):
    """Frames plus 68 landmarks whose left eye (42..47) moves with ties in rounded x and y."""
    rng = np.random.default_rng(0)
    frames = rng.random((t, size, size, 3)).astype(np.float32)
    lm = np.tile(rng.uniform(8, size - 8, (1, 68, 2)), (t, 1, 1))
    eye_x = np.array([20, 18, 18, 22, 18, 20, 19, 19, 22, 18, 21, 20, 19], dtype=np.float64)[:t] + 0.1
    eye_y = np.array([15, 16, 14, 15, 14, 15, 17, 17, 13, 16, 15, 15, 17], dtype=np.float64)[:t] - 0.2
    offsets = rng.uniform(-1.5, 1.5, (6, 2))
    offsets -= offsets.mean(0)  # the eye centre is the mean of the 6 points
    lm[:, 42:48, 0] = eye_x[:, None] + offsets[None, :, 0]
    lm[:, 42:48, 1] = eye_y[:, None] + offsets[None, :, 1]
    return {"frames": frames, "landmarks": lm.astype(np.float32), "index": np.int64(3)}


def test_frame_average_blur_mean_and_fmr():
    rec = _moving_face_record()
    kw = dict(num_frames=[5, 7, 9, 11, 13], crop_size=None, scale_range=1.0, face_crop=False, reorder="fmr")
    exs = _check_fixed(B.frame_average_blur, rec, n=6, **kw)
    for ex in exs:
        n, s = int(ex["num_frames"]), int(ex["deg/start"])
        assert ex["sharp"].shape == (13, 40, 40, 3) and n in (5, 7, 9, 11, 13)
        sharp = ex["sharp"][:n]
        # blurred = plain mean of the N sharp frames (gamma = 1)
        np.testing.assert_array_equal(ex["blurred"], sharp.astype(np.float64).mean(0).astype(np.float32))
        # FMR: x ascending, then y, then time, on the rounded left-eye centre (landmarks 42..47)
        eye = rec["landmarks"][s : s + n, 42:48].astype(np.float64).mean(1)
        expect = sorted(range(n), key=lambda t: (round(eye[t, 0]), round(eye[t, 1]), t))
        assert ex["order"][:n].tolist() == expect and (ex["order"][n:] == -1).all()
        for i, t in enumerate(expect):
            np.testing.assert_array_equal(sharp[i], rec["frames"][s + t])
        np.testing.assert_allclose(ex["u"][:n], np.arange(n) / n, rtol=0, atol=1e-7)
        assert ex["sharp_mask"].sum() == n and (ex["sharp"][n:] == 0).all()
        i_t = round(float(ex["u_target"]) * n)
        np.testing.assert_array_equal(ex["target"], sharp[i_t])
    # without re-ordering the frames stay in time order
    ex = B.frame_average_blur(rec, np.random.default_rng(1), **{**kw, "reorder": "none"})
    n, s = int(ex["num_frames"]), int(ex["deg/start"])
    np.testing.assert_array_equal(ex["sharp"][:n], rec["frames"][s : s + n])


def test_frame_average_blur_face_crop_and_gamma():
    rec = _moving_face_record(t=9, size=64)
    exs = _check_fixed(B.frame_average_blur, rec, num_frames=7, crop_size=24, scale_range=(1.0, 1.5), gamma=2.2)
    for ex in exs:
        assert ex["blurred"].shape == (24, 24, 3) and ex["sharp"].shape == (7, 24, 24, 3)
        sharp = ex["sharp"].astype(np.float64)
        np.testing.assert_allclose(ex["blurred"], np.mean(sharp**2.2, 0) ** (1 / 2.2), atol=2e-6)
        by0, bx0, bh, bw = ex["deg/box"]
        assert bh == bw and 0 <= by0 <= 64 - bh and 0 <= bx0 <= 64 - bw
        # eye positions of the output are in crop coordinates and follow the FMR order
        keys = [(round(x), round(y)) for x, y in ex["eye"].astype(np.float64)]
        assert keys == sorted(keys)
    counts = {int(B.frame_average_blur(_moving_face_record(), np.random.default_rng(s), crop_size=8)["num_frames"]) for s in range(12)}
    assert counts <= {5, 7, 9, 11, 13} and len(counts) > 1  # default N: CFMD's odd counts
    with pytest.raises(ValueError, match="landmarks"):
        B.frame_average_blur({"frames": rec["frames"]}, np.random.default_rng(0), num_frames=5, crop_size=16)


def test_septuplet():
    clip = _clip(7, 24, 24)
    kw = dict(hr_size=16, scale=4, hflip_prob=0.5, vflip_prob=0.5, rot90_prob=0.5, reverse_prob=0.5)
    for ex in _check_fixed(B.septuplet, {"frames": clip}, n=8, **kw):
        y0, x0 = ex["aug/crop"]
        ref = clip[:, y0 : y0 + 16, x0 : x0 + 16]
        if ex["aug/vflip"]:
            ref = ref[:, ::-1]
        if ex["aug/hflip"]:
            ref = ref[:, :, ::-1]
        ref = np.rot90(ref, k=int(ex["aug/rot90_k"]), axes=(1, 2))
        if ex["aug/reversed"]:
            ref = ref[::-1]
        np.testing.assert_array_equal(ex["hr"], ref)
        assert ex["lr"].shape == (4, 4, 4, 3)
        np.testing.assert_allclose(ex["lr"], np.clip(imresize_np(ref[[0, 2, 4, 6]], scale=0.25), 0, 1), atol=1e-6)
    vimeo = _clip(7, 32, 56)
    ex = B.septuplet({"frames": vimeo}, np.random.default_rng(0), rot90_prob=0.0)
    assert ex["hr"].shape == (7, 32, 56, 3) and ex["lr"].shape == (4, 8, 14, 3)
    with pytest.raises(ValueError, match="square"):
        B.septuplet({"frames": vimeo}, np.random.default_rng(0))


def test_reference_set():
    images = np.stack([_smooth(32, 32, k) for k in range(6)])
    for ex in _check_fixed(B.reference_set, {"images": images, "identity_id": np.int32(4)}, n=5, num_references=3, hr_size=32, scale=4):
        ref_imgs = images[:, :, ::-1] if ex["aug/hflip"] else images
        np.testing.assert_array_equal(ex["hr"], ref_imgs[0])
        slots = ex["aug/reference_slots"]
        assert len(set(slots.tolist())) == 3 and slots.min() >= 1
        np.testing.assert_array_equal(ex["references"], ref_imgs[slots])
        assert ex["lr"].shape == (8, 8, 3) and int(ex["meta/identity_id"]) == 4
    with pytest.raises(ValueError, match="num_references"):
        B.reference_set({"images": images[:2]}, np.random.default_rng(0), num_references=3)


def test_multiview_pair():
    views = np.stack([_smooth(16, 16, k) for k in range(4)])
    poses = np.array([[0.0, 0.1, 0.0], [0.5, 0.0, 0.1], [-0.5, 0.2, 0.0], [1.0, 0.0, -0.1]])
    for ex in _check_fixed(B.multiview_pair, {"views": views, "poses": poses}, n=5):
        s, t = ex["view_ids"]
        assert s != t
        np.testing.assert_array_equal(ex["source"], views[s])
        np.testing.assert_array_equal(ex["target"], views[t])
        np.testing.assert_allclose(ex["relative_pose"], (poses[t] - poses[s]).astype(np.float32), atol=1e-7)
    blur = [("motion_blur", {"length": (3.0, 5.0), "size": 7})]
    ex = B.multiview_pair({"views": views, "poses": poses}, np.random.default_rng(0), source_view=0, target_view=3, degradation=blur)
    assert ex["view_ids"].tolist() == [0, 3] and not np.array_equal(ex["source"], ex["source_clean"])
    still = B.multiview_pair({"image": views[0], "pose": poses[1]}, np.random.default_rng(0))
    np.testing.assert_array_equal(still["target"], views[0][:, ::-1])
    np.testing.assert_allclose(still["relative_pose"], [-1.0, 0.0, -0.2], atol=1e-7)


def test_contrastive_quadruple():
    p = {"frames": _clip(7, 20, 20), "index": np.int64(0)}
    q = {"frames": _clip(7, 20, 20)[:, ::-1].copy(), "index": np.int64(1)}
    exs = _check_fixed(B.contrastive_quadruple, (p, q), num_frames=5, hr_size=16)
    ex = exs[0]
    assert ex["hr"].shape == (2, 5, 16, 16, 3) and ex["lq"].shape == (2, 2, 5, 4, 4, 3)
    assert ex["lq_negative"].shape == (2, 5, 4, 4, 3) and ex["lr_clean"].shape == (2, 2, 4, 4, 3)
    assert ex["deg/blur/kernel"].shape == (2, 21, 21) and ex["deg_negative/noise/sigma"].shape == (2,)
    assert ex["meta/index"].tolist() == [0, 1]
    # Same content twice: identical draws for d_i / d_j make the two contents' clips identical.
    same = B.contrastive_quadruple((p, p), np.random.default_rng(7), num_frames=7, hr_size=None)  # no crop freedom
    np.testing.assert_array_equal(same["hr"][0], same["hr"][1])
    np.testing.assert_array_equal(same["lq"][0], same["lq"][1])
    assert not np.array_equal(same["lq"][0, 0], same["lq_negative"][0])
    # A deterministic chain (fixed blur + downsample): lr_clean is the chain of the middle HR frame.
    chain = [("gaussian_blur", {"sigma1": 1.0, "isotropic": True, "size": 5}), ("downsample", {"factor": 4})]
    ex = B.contrastive_quadruple((p, q), np.random.default_rng(3), num_frames=5, hr_size=16, degradation=chain)
    np.testing.assert_array_equal(ex["lq"][:, 0, 2], ex["lr_clean"][:, 0])
    np.testing.assert_array_equal(ex["lq"][:, 0], ex["lq"][:, 1])


def test_builders_registry_picklable():
    assert set(B.BUILDERS) >= {"sr_pair", "burst", "frame_average_blur", "septuplet", "reference_set", "multiview_pair", "contrastive_quadruple"}
    assert B.BUILDERS["contrastive_quadruple"].num_records == 2
    from input_pipelines.pipeline import BuilderTransform

    t = pickle.loads(pickle.dumps(BuilderTransform("sr_pair", {"hr_size": 8, "scale": 2})))
    ex = t({"image": _smooth(10, 10)}, np.random.default_rng(0))
    assert ex["lr"].shape == (4, 4, 3)
    with pytest.raises(ValueError, match="unknown builder"):
        B.get_builder("nope")
