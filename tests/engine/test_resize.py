"""MATLAB-compatible bicubic imresize: analytic cases, hand-derived kernel values, and an independent
loop-based re-statement of MATLAB's contribution algorithm (no matrices) as the reference."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restore_jax.ops.resize import imresize, imresize_np

# --------------------------------------------------------------------------------------------------
# Independent reference: MATLAB's contributions()/resizeAlongDim re-stated with explicit loops.
# --------------------------------------------------------------------------------------------------


def _ref_cubic(t: float) -> float:
    """Keys cubic, a = -0.5, evaluated one scalar at a time."""
    t = abs(t)
    if t <= 1.0:
        return 1.5 * t**3 - 2.5 * t**2 + 1.0
    if t <= 2.0:
        return -0.5 * t**3 + 2.5 * t**2 - 4.0 * t + 2.0
    return 0.0


def _ref_mirror(i: int, n: int) -> int:
    """1-based symmetric reflection with the edge sample repeated: 0 -> 1, -1 -> 2, n+1 -> n."""
    while i < 1 or i > n:
        i = 1 - i if i < 1 else 2 * n + 1 - i
    return i


def _ref_resize_axis(
    a: np.ndarray, axis: int, out_len: int, scale: float, aa: bool, uint8: bool
) -> np.ndarray:
    a = np.moveaxis(np.asarray(a, dtype=np.float64), axis, 0)
    n = a.shape[0]
    stretch, width = (scale, 4.0 / scale) if (scale < 1 and aa) else (1.0, 4.0)
    out = np.zeros((out_len,) + a.shape[1:])
    for xo in range(1, out_len + 1):
        u = xo / scale + 0.5 * (1.0 - 1.0 / scale)
        left = math.floor(u - width / 2.0)
        taps = math.ceil(width) + 2
        weights, sources = [], []
        for p in range(taps):
            j = left + p
            weights.append(stretch * _ref_cubic(stretch * (u - j)))
            sources.append(_ref_mirror(j, n))
        total = sum(weights)
        for w, j in zip(weights, sources):
            out[xo - 1] += (w / total) * a[j - 1]
    if uint8:  # MATLAB keeps uint8 between passes: saturate, round half away from zero
        out = np.floor(np.clip(out, 0.0, 255.0) + 0.5)
    return np.moveaxis(out, 0, axis)


def ref_imresize(img: np.ndarray, scale=None, size=None, aa: bool = True) -> np.ndarray:
    """Loop reference on HW or HWC (or [B,H,W,C]: axes -3, -2)."""
    img = np.asarray(img)
    ax_h, ax_w = (0, 1) if img.ndim == 2 else (img.ndim - 3, img.ndim - 2)
    h, w = img.shape[ax_h], img.shape[ax_w]
    if size is not None:
        out = [size[0], size[1]]
        scales = [size[0] / h, size[1] / w]
    else:
        scales = [scale, scale] if np.isscalar(scale) else list(scale)
        out = [math.ceil(scales[0] * h), math.ceil(scales[1] * w)]
    is_u8 = img.dtype == np.uint8
    y = img.astype(np.float64)
    dims = [0, 1] if scales[0] <= scales[1] else [1, 0]  # smaller scale first, rows on ties
    for d in dims:
        y = _ref_resize_axis(y, (ax_h, ax_w)[d], out[d], scales[d], aa, is_u8)
    return y.astype(np.uint8) if is_u8 else y


def _jax(x, **kw):
    return np.asarray(imresize(jnp.asarray(x), **kw))


# --------------------------------------------------------------------------------------------------
# 1. Analytic cases
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw", [dict(scale=2), dict(scale=0.25), dict(scale=0.37), dict(scale=1.5), dict(size=(7, 29))]
)
def test_constant_image_stays_constant(kw):
    x = np.full((2, 11, 14, 3), 0.625, dtype=np.float64)
    np.testing.assert_allclose(imresize_np(x, **kw), 0.625, atol=1e-12)
    np.testing.assert_allclose(_jax(x.astype(np.float32), **kw), 0.625, atol=1e-6)


@pytest.mark.parametrize(
    "kw, expected",
    [
        (dict(scale=2), (40, 26)),
        (dict(scale=4), (80, 52)),
        (dict(scale=0.25), (5, 4)),  # ceil(3.25) = 4
        (dict(scale=0.37), (8, 5)),  # ceil(7.4), ceil(4.81)
        (dict(scale=1.5), (30, 20)),  # ceil(19.5) = 20
        (dict(scale=(0.5, 2.0)), (10, 26)),
        (dict(size=(9, 31)), (9, 31)),
    ],
)
def test_output_shapes(kw, expected):
    x = np.random.default_rng(0).random((20, 13, 2))
    assert imresize_np(x, **kw).shape == (*expected, 2)
    assert imresize(jnp.asarray(x, jnp.float32)[None], **kw).shape == (1, *expected, 2)
    assert imresize_np(x[..., 0], **kw).shape == expected  # 2-D HW input


def test_linear_ramp_is_reproduced_in_interior_when_upscaling():
    n = 16
    ramp_rows = 0.3 * np.arange(1, n + 1) - 1.0  # f(i) = 0.3 i - 1 at 1-based sample i
    x = np.tile(ramp_rows[:, None], (1, 6))  # ramp along rows, constant along columns
    y = imresize_np(x, scale=2)
    yj = _jax(x.astype(np.float32)[..., None], scale=2)[..., 0]
    for xo in range(1, 2 * n + 1):
        u = xo / 2 + 0.5 * (1 - 1 / 2)
        if 3 <= u <= n - 2:  # all non-zero taps inside the image
            np.testing.assert_allclose(y[xo - 1], 0.3 * u - 1.0, atol=1e-12)
            np.testing.assert_allclose(yj[xo - 1], 0.3 * u - 1.0, atol=1e-5)


def test_checkerboard_antialiasing():
    ii, jj = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
    board = ((ii + jj) % 2).astype(np.float64)  # period 2, mean 0.5
    # x1/2 with antialiasing: interior is exactly the mean, borders nearly.
    y = imresize_np(board, scale=0.5, antialiasing=True)
    np.testing.assert_allclose(y[2:-2, 2:-2], 0.5, atol=1e-12)
    assert np.abs(y - 0.5).max() < 0.1
    # x1/3 (output centres on input samples): antialiasing keeps ~1% of the alternation,
    # plain cubic just samples the board and aliases at full amplitude.
    y_aa = imresize_np(board, scale=1 / 3, antialiasing=True)
    y_no = imresize_np(board, scale=1 / 3, antialiasing=False)
    assert np.abs(y_aa[1:-1, 1:-1] - 0.5).max() < 0.02
    assert np.abs(y_no[1:-1, 1:-1] - 0.5).min() > 0.45
    np.testing.assert_allclose(_jax(board.astype(np.float32), scale=1 / 3), y_aa, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# 2. Against the loop reference
# --------------------------------------------------------------------------------------------------

CASES = [
    ((9, 11, 3), dict(scale=2)),
    ((6, 5, 1), dict(scale=4)),
    ((24, 20, 2), dict(scale=0.25)),
    ((17, 19, 3), dict(scale=1 / 3)),
    ((15, 12, 2), dict(scale=0.7)),
    ((10, 13, 3), dict(scale=1.5)),
    ((20, 9, 1), dict(size=(13, 17))),  # rows scale 0.65 < columns 1.89: rows first
    ((8, 21, 2), dict(scale=(1.5, 0.4))),  # columns have the smaller scale: resized first
]


@pytest.mark.parametrize("aa", [True, False])
@pytest.mark.parametrize("shape, kw", CASES)
def test_matches_loop_reference(shape, kw, aa):
    x = np.random.default_rng(hash((shape, aa)) % 2**32).random(shape)
    ref = ref_imresize(x, aa=aa, **kw)
    got = imresize_np(x, antialiasing=aa, **kw)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    got_j = _jax(x[None].astype(np.float32), antialiasing=aa, **kw)[0]
    assert got_j.dtype == np.float32
    np.testing.assert_allclose(got_j, ref, rtol=0, atol=1e-5)


def test_uint8_matches_reference_with_per_pass_rounding():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(14, 10, 3), dtype=np.uint8)
    x[:3, :3] = 255  # saturated corner: bicubic overshoot must clip, not wrap
    x[3:6, :3] = 0
    for kw in (dict(scale=0.5), dict(scale=(2.0, 0.3)), dict(size=(5, 23))):
        got = imresize_np(x, **kw)
        assert got.dtype == np.uint8
        ref = ref_imresize(x, **kw)
        np.testing.assert_array_equal(got, ref)
    up = imresize_np(x, scale=3).astype(np.int64)
    ref_float = ref_imresize(x.astype(np.float64), scale=3)
    assert up.min() >= 0 and up.max() <= 255
    assert ref_float.max() > 255 or ref_float.min() < 0  # the float result overshoots; uint8 saturates


# --------------------------------------------------------------------------------------------------
# 3. Kernel values through tiny 1-D cases (derived by hand, weights already sum to 1)
# --------------------------------------------------------------------------------------------------


def _impulse_column(n: int, at: int) -> np.ndarray:
    x = np.zeros((n, 1))
    x[at - 1, 0] = 1.0  # 1-based position
    return x


def test_keys_kernel_values_by_hand():
    # x2 upsampling, no mirroring involved: u = xo/2 + 1/4, so the impulse at sample 6 is seen at
    # offsets u - 6 = -1.75, -1.25, -0.75, -0.25, 0.25, 0.75, 1.25, 1.75 by outputs 8..15:
    #   k(0.25) = 1.5/64 - 2.5/16 + 1 = 0.8671875,  k(0.75) = 1.5*27/64 - 2.5*9/16 + 1 = 0.2265625,
    #   k(1.25) = -0.5*125/64 + 2.5*25/16 - 5 + 2 = -0.0703125,
    #   k(1.75) = -0.5*343/64 + 2.5*49/16 - 7 + 2 = -0.0234375.
    up = imresize_np(_impulse_column(11, 6), scale=(2.0, 1.0))[:, 0]
    expected = np.zeros(22)
    half = [0.8671875, 0.2265625, -0.0703125, -0.0234375]  # k(0.25), k(0.75), k(1.25), k(1.75)
    expected[7:15] = half[::-1] + half
    np.testing.assert_allclose(up, expected, atol=1e-15)
    up_j = _jax(_impulse_column(11, 6).astype(np.float32), scale=(2.0, 1.0))[:, 0]
    np.testing.assert_allclose(up_j, expected, atol=1e-7)
    # x1/2 without antialiasing: u = 2 xo - 1/2 sits halfway between samples. An impulse at sample 8
    # is seen by output 4 (u = 7.5, offset -0.5) and output 5 (u = 9.5, offset 1.5); output 3 and 6
    # are 2.5 away. k(0.5) = 1.5/8 - 2.5/4 + 1 = 0.5625, k(1.5) = -0.5*27/8 + 2.5*9/4 - 6 + 2 = -0.0625.
    down = imresize_np(_impulse_column(16, 8), scale=(0.5, 1.0), antialiasing=False)[:, 0]
    expected = np.zeros(8)
    expected[3], expected[4] = 0.5625, -0.0625
    np.testing.assert_allclose(down, expected, atol=1e-15)
    down = imresize_np(_impulse_column(16, 9), scale=(0.5, 1.0), antialiasing=False)[:, 0]
    expected = np.zeros(8)
    expected[3], expected[4] = -0.0625, 0.5625  # offsets +1.5 (u=7.5) and -0.5 (u=9.5)
    np.testing.assert_allclose(down, expected, atol=1e-15)
    # x1/3 without antialiasing: u = 3 xo - 1 lands on samples 2, 5, 8, 11: k(0) = 1 and
    # k(1) = k(2) = 0, so the output is exactly those samples.
    x = np.arange(1.0, 13.0)[:, None] ** 2
    sampled = imresize_np(x, scale=(1 / 3, 1.0), antialiasing=False)[:, 0]
    np.testing.assert_allclose(sampled, [4, 25, 64, 121], atol=1e-12)


# --------------------------------------------------------------------------------------------------
# 4. Batching, uint8, JAX transforms, bfloat16, errors
# --------------------------------------------------------------------------------------------------


def test_batched_equals_per_image():
    x = np.random.default_rng(5).random((3, 2, 10, 12, 2)).astype(np.float32)
    for kw in (dict(scale=0.5), dict(size=(7, 15))):
        batch_np = imresize_np(x, **kw)
        batch_j = _jax(x, **kw)
        for a in range(3):
            for b in range(2):
                np.testing.assert_array_equal(batch_np[a, b], imresize_np(x[a, b], **kw))
                np.testing.assert_allclose(batch_j[a, b], _jax(x[a, b], **kw), atol=1e-6)


def test_jit_grad_and_linearity():
    rng = np.random.default_rng(6)
    h, w, scale = 12, 10, (0.5, 1.5)
    x = jnp.asarray(rng.random((2, h, w, 3)), jnp.float32)
    z = jnp.asarray(rng.random((2, h, w, 3)), jnp.float32)
    f = jax.jit(imresize, static_argnames=("scale", "size", "antialiasing"))
    np.testing.assert_allclose(f(x, scale=scale), imresize_np(np.asarray(x), scale=scale), atol=1e-6)
    lhs = f(2.5 * x - 0.75 * z, scale=scale)
    rhs = 2.5 * f(x, scale=scale) - 0.75 * f(z, scale=scale)
    np.testing.assert_allclose(lhs, rhs, atol=1e-5)
    # d sum(R_h X R_w^T) / dX[i, j] = colsum(R_h)[i] * colsum(R_w)[j]; matrices from the loop reference.
    r_h = _ref_resize_axis(np.eye(h), 0, math.ceil(0.5 * h), 0.5, True, False)
    r_w = _ref_resize_axis(np.eye(w), 0, math.ceil(1.5 * w), 1.5, True, False)
    g = jax.jit(jax.grad(lambda v: imresize(v, scale=scale).sum()))(x)
    expected = np.outer(r_h.sum(0), r_w.sum(0))[None, :, :, None] * np.ones((2, 1, 1, 3))
    assert g.shape == x.shape and g.dtype == jnp.float32
    np.testing.assert_allclose(g, expected, atol=1e-5)


def test_bfloat16():
    x = np.random.default_rng(7).random((1, 16, 12, 3)).astype(np.float32)
    y32 = _jax(x, scale=0.5)
    y16 = imresize(jnp.asarray(x, jnp.bfloat16), scale=0.5)
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=2e-2)


def test_float32_numpy_keeps_dtype():
    x = np.random.default_rng(8).random((9, 9, 1)).astype(np.float32)
    assert imresize_np(x, scale=0.5).dtype == np.float32


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(), "exactly one"),
        (dict(scale=2, size=(4, 4)), "exactly one"),
        (dict(scale=0), "positive"),
        (dict(scale=(-1.0, 2.0)), "positive"),
        (dict(size=(0, 4)), "positive"),
        (dict(size=(4.5, 4)), "integers"),
        (dict(size=(4, 4, 4)), "pair"),
    ],
)
def test_bad_arguments(kw, match):
    x = np.zeros((6, 6, 1), np.float32)
    with pytest.raises(ValueError, match=match):
        imresize_np(x, **kw)
    with pytest.raises(ValueError, match=match):
        imresize(jnp.asarray(x), **kw)


def test_bad_inputs():
    with pytest.raises(ValueError, match="rank"):
        imresize_np(np.zeros(5), scale=2)
    with pytest.raises(ValueError, match="floating"):
        imresize(jnp.zeros((4, 4, 1), jnp.int32), scale=2)


# --------------------------------------------------------------------------------------------------
# 5. A real face (optional shared data)
# --------------------------------------------------------------------------------------------------


def test_real_face_quarter(shared_data):
    from PIL import Image

    path = shared_data / "faces128" / "val" / "val_0000.png"
    face = np.asarray(Image.open(path).convert("RGB"))
    assert face.shape == (128, 128, 3)
    x = face.astype(np.float64) / 255.0
    ref = ref_imresize(x, scale=0.25)
    np.testing.assert_allclose(imresize_np(x, scale=0.25), ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(_jax(x[None].astype(np.float32), scale=0.25)[0], ref, rtol=0, atol=1e-5)
    # uint8 path, MATLAB-style rounding after each pass; allow a rare off-by-one at an exact .5 tie
    # reached through a different summation order.
    got8 = imresize_np(face, scale=0.25).astype(np.int64)
    ref8 = ref_imresize(face, scale=0.25).astype(np.int64)
    assert got8.shape == (32, 32, 3)
    assert np.abs(got8 - ref8).max() <= 1 and np.mean(got8 != ref8) < 1e-3
