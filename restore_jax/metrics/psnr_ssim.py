"""PSNR and SSIM as the restoration literature reports them.

Both take images with channels last (``[..., H, W, C]``) and reduce over the last three axes, so
any leading axes (batch, time) are kept. Options follow the common protocol switches:

- ``crop_border``: pixels dropped from each side before scoring (SR papers crop ``scale``);
- ``y_channel``: score the BT.601 luma only (:func:`restore_jax.ops.rgb_to_y`), on the same
  ``data_range`` scale as the input;
- ``data_range``: the dynamic range of the input (1.0 for [0, 1] images, 255 for 8-bit values).

SSIM is the standard Wang et al. (2004) definition: an 11x11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, population (not sample) covariances, the window applied in "valid" mode
(no padding), the SSIM map averaged over positions and channels. This equals
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)`` up to the border handling, which here is "valid"
(skimage also crops (win_size-1)/2 pixels before averaging, so the two agree).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import jax
import jax.numpy as jnp

from restore_jax.ops.color import rgb_to_y

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _prepare(a, b, crop_border: int, y_channel: bool, data_range: float):
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim < 3:
        raise ValueError(f"images need channels last ([..., H, W, C]), got shape {tuple(a.shape)}")
    if y_channel:
        if a.shape[-1] != 3:
            raise ValueError(f"y_channel=True needs RGB inputs, got {a.shape[-1]} channels")
        # rgb_to_y works on [0, 1]; rescale so the luma keeps the caller's data_range.
        a = rgb_to_y(a / data_range) * data_range
        b = rgb_to_y(b / data_range) * data_range
    if crop_border:
        h, w = a.shape[-3], a.shape[-2]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {h}x{w} image")
        a = a[..., crop_border:-crop_border, crop_border:-crop_border, :]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border, :]
    return a, b


def psnr(a, b, *, crop_border: int = 0, y_channel: bool = False, data_range: float = 1.0) -> jnp.ndarray:
    """Peak signal-to-noise ratio in dB over the last three axes; identical images give +inf."""
    a, b = _prepare(a, b, crop_border, y_channel, data_range)
    mse = jnp.mean(jnp.square(a - b), axis=(-3, -2, -1))
    return 10.0 * jnp.log10(data_range**2 / mse)


def _gaussian_window(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _filter_valid(x: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
    """Separable 'valid' Gaussian filtering of ``[N, H, W, C]`` along H and W."""
    n, h, w, c = x.shape
    k = g.shape[0]
    # Depthwise conv: treat channels as separate images.
    y = x.transpose(0, 3, 1, 2).reshape(n * c, h, w, 1)
    kh = g.reshape(k, 1, 1, 1)
    kw = g.reshape(1, k, 1, 1)
    dn = ("NHWC", "HWIO", "NHWC")
    prec = jax.lax.Precision.HIGHEST
    y = jax.lax.conv_general_dilated(y, kh, (1, 1), "VALID", dimension_numbers=dn, precision=prec)
    y = jax.lax.conv_general_dilated(y, kw, (1, 1), "VALID", dimension_numbers=dn, precision=prec)
    return y.reshape(n, c, h - k + 1, w - k + 1).transpose(0, 2, 3, 1)


def ssim(a, b, *, crop_border: int = 0, y_channel: bool = False, data_range: float = 1.0) -> jnp.ndarray:
    """Structural similarity (Wang et al. 2004, Gaussian 11x11, sigma 1.5) over the last three axes."""
    a, b = _prepare(a, b, crop_border, y_channel, data_range)
    h, w, c = a.shape[-3:]
    if min(h, w) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {_SSIM_WINDOW}x{_SSIM_WINDOW}, got {h}x{w}")
    lead = a.shape[:-3]
    a = a.reshape((-1, h, w, c))
    b = b.reshape((-1, h, w, c))
    g = jnp.asarray(_gaussian_window())
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    mu_a = _filter_valid(a, g)
    mu_b = _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return jnp.mean(num / den, axis=(-3, -2, -1)).reshape(lead)


def mean_over_clips(per_frame_scores: Sequence[Sequence[float]] | dict) -> float:
    """Average per clip first, then over clips (the Vid4/Vimeo convention: each clip weighs the same).

    Accepts a list of per-clip score lists, or a ``{clip_name: scores}`` mapping.
    """
    clips = list(per_frame_scores.values()) if isinstance(per_frame_scores, dict) else list(per_frame_scores)
    if not clips or any(len(c) == 0 for c in clips):
        raise ValueError("mean_over_clips needs at least one clip, each with at least one score")
    return float(np.mean([np.mean(np.asarray(c, dtype=np.float64)) for c in clips]))
