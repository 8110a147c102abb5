"""Sub-pixel rearrangements (NHWC) with PyTorch's channel order, so ported weights line up.

For ``pixel_shuffle`` with factor ``r``: output channel ``c`` at sub-position ``(i, j)`` comes from
input channel ``c * r * r + i * r + j``. ``pixel_unshuffle`` is its exact inverse.
"""

from __future__ import annotations

import jax.numpy as jnp


def _check_rank4(x, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} expects an NHWC array of rank 4, got shape {tuple(x.shape)}")


def pixel_shuffle(x: jnp.ndarray, r: int) -> jnp.ndarray:
    """[B, H, W, C*r*r] -> [B, H*r, W*r, C] (depth-to-space, PyTorch channel order)."""
    _check_rank4(x, "pixel_shuffle")
    b, h, w, crr = x.shape
    if r < 1 or crr % (r * r):
        raise ValueError(f"pixel_shuffle: channels {crr} are not divisible by r*r = {r * r}")
    c = crr // (r * r)
    x = x.reshape(b, h, w, c, r, r)  # channel index = c*r*r + i*r + j
    x = x.transpose(0, 1, 4, 2, 5, 3)  # b, h, i, w, j, c
    return x.reshape(b, h * r, w * r, c)


def pixel_unshuffle(x: jnp.ndarray, r: int) -> jnp.ndarray:
    """[B, H*r, W*r, C] -> [B, H, W, C*r*r] (space-to-depth, inverse of ``pixel_shuffle``)."""
    _check_rank4(x, "pixel_unshuffle")
    b, hr, wr, c = x.shape
    if r < 1 or hr % r or wr % r:
        raise ValueError(f"pixel_unshuffle: spatial size {hr}x{wr} is not divisible by r = {r}")
    h, w = hr // r, wr // r
    x = x.reshape(b, h, r, w, r, c)  # b, h, i, w, j, c
    x = x.transpose(0, 1, 3, 5, 2, 4)  # b, h, w, c, i, j
    return x.reshape(b, h, w, c * r * r)
