"""pixel (un)shuffle, colour conversion and bilinear sampling against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from restore_jax.ops.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from restore_jax.ops.pixel import pixel_shuffle, pixel_unshuffle
from restore_jax.ops.quantize import quantize_8bit
from restore_jax.ops.sampling import bilinear_sample, warp

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _nhwc_to_nchw(x: np.ndarray) -> "torch.Tensor":
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_matches_torch(r):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5 * r * r)).astype(np.float32)
    ours = np.asarray(pixel_shuffle(jnp.asarray(x), r))
    ref = F.pixel_shuffle(_nhwc_to_nchw(x), r).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(ours, ref)
    back = np.asarray(pixel_unshuffle(jnp.asarray(ours), r))
    np.testing.assert_array_equal(back, x)
    ref_un = F.pixel_unshuffle(_nhwc_to_nchw(ours), r).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(back, ref_un)


def test_pixel_shuffle_channel_rule():
    """Output channel c at sub-position (i, j) comes from input channel c*r*r + i*r + j."""
    r, c = 2, 3
    x = np.arange(c * r * r, dtype=np.float32).reshape(1, 1, 1, c * r * r)
    y = np.asarray(pixel_shuffle(jnp.asarray(x), r))
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                assert y[0, i, j, ch] == ch * r * r + i * r + j


def test_pixel_shuffle_errors():
    with pytest.raises(ValueError, match="divisible"):
        pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)
    with pytest.raises(ValueError, match="divisible"):
        pixel_unshuffle(jnp.zeros((1, 3, 4, 1)), 2)
    with pytest.raises(ValueError, match="rank 4"):
        pixel_shuffle(jnp.zeros((2, 2, 4)), 2)


def test_ycbcr_matches_skimage():
    skcolor = pytest.importorskip("skimage.color")
    x = np.random.default_rng(1).uniform(size=(5, 7, 3)).astype(np.float64)
    # skimage returns MATLAB's rgb2ycbcr values on the 0-255 scale for float input in [0, 1].
    ref = skcolor.rgb2ycbcr(x) / 255.0
    np.testing.assert_allclose(np.asarray(rgb_to_ycbcr(jnp.asarray(x, jnp.float32))), ref, atol=1e-6)
    np.testing.assert_allclose(rgb_to_y(x)[..., 0], ref[..., 0], atol=1e-12)  # NumPy path, float64
    back = np.asarray(ycbcr_to_rgb(rgb_to_ycbcr(jnp.asarray(x, jnp.float32))))
    np.testing.assert_allclose(back, x, atol=1e-5)


def test_y_range_convention():
    black, white = np.zeros((1, 3)), np.ones((1, 3))
    assert rgb_to_y(black)[0, 0] == pytest.approx(16 / 255)
    assert rgb_to_y(white)[0, 0] == pytest.approx(235 / 255, abs=1e-6)


def test_bilinear_sample_matches_torch_grid_sample():
    rng = np.random.default_rng(2)
    b, h, w, c = 2, 6, 7, 3
    x = rng.standard_normal((b, h, w, c)).astype(np.float32)
    # Points inside, on the border band and well outside the image.
    coords = np.stack(
        [rng.uniform(-2.5, h + 1.5, size=(b, 5, 4)), rng.uniform(-2.5, w + 1.5, size=(b, 5, 4))], axis=-1
    ).astype(np.float32)
    ours = np.asarray(bilinear_sample(jnp.asarray(x), jnp.asarray(coords)))
    # torch grid_sample with align_corners=True maps -1..1 to pixel centres 0..size-1; grid is (x, y).
    grid = np.stack([coords[..., 1] / (w - 1) * 2 - 1, coords[..., 0] / (h - 1) * 2 - 1], axis=-1)
    ref = F.grid_sample(
        _nhwc_to_nchw(x), torch.from_numpy(grid), mode="bilinear", padding_mode="zeros", align_corners=True
    ).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_warp_integer_shift_and_gradient():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 5, 6, 2)).astype(np.float32)
    flow = np.zeros((1, 5, 6, 2), np.float32)
    flow[..., 0] = 1.0  # dx = +1: out[y, x] = x[y, x + 1]
    out = np.asarray(warp(jnp.asarray(x), jnp.asarray(flow)))
    np.testing.assert_allclose(out[:, :, :-1], x[:, :, 1:], atol=1e-6)
    np.testing.assert_array_equal(out[:, :, -1], 0.0)
    g = jax.grad(lambda f: warp(jnp.asarray(x), f).sum())(jnp.asarray(flow + 0.3))
    assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).sum() > 0


def test_sampling_shape_errors():
    with pytest.raises(ValueError, match="coords"):
        bilinear_sample(jnp.zeros((2, 4, 4, 1)), jnp.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="flow"):
        warp(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 5, 2)))


def test_quantize_8bit_matches_numpy_uint8_round_trip():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-0.3, 1.3, 5000), [0.0, 1.0, 0.5, -1.0, 2.0]]).astype(np.float32)
    # independent reference: the uint8 value (round half to even, saturated) read back, in float64
    ref = np.clip(np.rint(x.astype(np.float64) * 255.0), 0, 255).astype(np.uint8) / 255.0
    host = quantize_8bit(x)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32 and host.shape == x.shape
    np.testing.assert_allclose(host, ref, rtol=0, atol=1e-7)
    assert host[-3] == np.float32(128 / 255)  # 0.5 * 255 = 127.5: a tie, rounded to even
    dev = jax.jit(quantize_8bit)(jnp.asarray(x))
    assert isinstance(dev, jax.Array) and dev.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(dev), ref, rtol=0, atol=1e-7)
    bf = quantize_8bit(jnp.asarray(x, jnp.bfloat16))  # cast to float32 first
    assert bf.dtype == jnp.float32
    assert quantize_8bit([0.2, 0.7]).dtype == np.float32  # lists go through NumPy
