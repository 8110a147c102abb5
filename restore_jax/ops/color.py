"""Colour conversions, ITU-R BT.601 "studio swing" as MATLAB's ``rgb2ycbcr`` defines it.

Inputs are RGB in [0, 1] (channel last). Outputs are in the same [0, 1] scale: Y lies in
[16/255, 235/255] and Cb/Cr in [16/255, 240/255], i.e. the 8-bit values divided by 255. This is the
convention the super-resolution literature uses when it reports "PSNR on Y".
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

# Rows: Y, Cb, Cr. Coefficients are for RGB in [0, 1] giving 8-bit-scale outputs.
_RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def _check_rgb(x, name: str) -> None:
    if x.shape[-1] != 3:
        raise ValueError(f"{name} expects RGB with 3 channels last, got shape {tuple(x.shape)}")


def rgb_to_y(x: jnp.ndarray) -> jnp.ndarray:
    """Luma Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 for RGB in [0, 1]; keeps a last axis of 1."""
    _check_rgb(x, "rgb_to_y")
    xp = np if isinstance(x, np.ndarray) else jnp
    w = xp.asarray(_RGB_TO_YCBCR[0] / 255.0, dtype=x.dtype)
    return (x @ w)[..., None] + xp.asarray(16.0 / 255.0, dtype=x.dtype)


def rgb_to_ycbcr(x: jnp.ndarray) -> jnp.ndarray:
    """RGB in [0, 1] -> YCbCr in [0, 1] (8-bit studio-swing values / 255)."""
    _check_rgb(x, "rgb_to_ycbcr")
    xp = np if isinstance(x, np.ndarray) else jnp
    m = xp.asarray(_RGB_TO_YCBCR.T / 255.0, dtype=x.dtype)
    return x @ m + xp.asarray(_YCBCR_OFFSET / 255.0, dtype=x.dtype)


def ycbcr_to_rgb(x: jnp.ndarray) -> jnp.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (no clipping, so out-of-gamut values stay visible)."""
    _check_rgb(x, "ycbcr_to_rgb")
    xp = np if isinstance(x, np.ndarray) else jnp
    m = xp.asarray(_YCBCR_TO_RGB.T * 255.0, dtype=x.dtype)
    return (x - xp.asarray(_YCBCR_OFFSET / 255.0, dtype=x.dtype)) @ m
