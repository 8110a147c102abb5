"""Bilinear sampling with zeros outside the image, and backward warping by a flow field.

Coordinates are in pixels with pixel centres at integer positions (``align_corners=True`` in
PyTorch's terms): ``(y, x) = (0, 0)`` is the centre of the top-left pixel. A sample's four corner
neighbours that fall outside the image contribute zero, so a point more than one pixel outside the
image samples exactly 0 and a point half a pixel outside fades linearly, which is how the DCNv2 CUDA
op and ``torchvision.ops.deform_conv2d`` sample.
"""

from __future__ import annotations

import jax.numpy as jnp


def bilinear_corners(height: int, width: int, y: jnp.ndarray, x: jnp.ndarray):
    """Flat indices ``[..., 4]`` and weights ``[..., 4]`` of the four neighbours of ``(y, x)``.

    Weights of neighbours outside the ``height x width`` grid are zero (and their indices are clamped
    to a valid position so a gather stays in bounds). Shared by :func:`bilinear_sample` and the
    deformable convolution so both sample identically.
    """
    y0 = jnp.floor(y)
    x0 = jnp.floor(x)
    ly, lx = y - y0, x - x0
    y0 = y0.astype(jnp.int32)
    x0 = x0.astype(jnp.int32)
    ys = jnp.stack([y0, y0, y0 + 1, y0 + 1], axis=-1)
    xs = jnp.stack([x0, x0 + 1, x0, x0 + 1], axis=-1)
    wy = jnp.stack([1 - ly, 1 - ly, ly, ly], axis=-1)
    wx = jnp.stack([1 - lx, lx, 1 - lx, lx], axis=-1)
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    weights = jnp.where(inside, wy * wx, 0).astype(y.dtype)
    flat = jnp.clip(ys, 0, height - 1) * width + jnp.clip(xs, 0, width - 1)
    return flat, weights


def bilinear_sample(x: jnp.ndarray, coords: jnp.ndarray) -> jnp.ndarray:
    """Sample ``x [B, H, W, C]`` at ``coords [B, *S, 2]`` holding ``(y, x)``; returns ``[B, *S, C]``."""
    if x.ndim != 4:
        raise ValueError(f"bilinear_sample expects x of shape [B,H,W,C], got {tuple(x.shape)}")
    if coords.shape[0] != x.shape[0] or coords.shape[-1] != 2:
        raise ValueError(
            f"bilinear_sample expects coords of shape [B,...,2] with B={x.shape[0]}, got {tuple(coords.shape)}"
        )
    b, h, w, c = x.shape
    sample_shape = coords.shape[1:-1]
    coords = coords.reshape(b, -1, 2).astype(jnp.promote_types(x.dtype, jnp.float32))
    flat, weights = bilinear_corners(h, w, coords[..., 0], coords[..., 1])  # [B, N, 4]
    gathered = jnp.take_along_axis(x.reshape(b, h * w, c), flat.reshape(b, -1, 1), axis=1)
    gathered = gathered.reshape(b, -1, 4, c)
    out = jnp.einsum("bnkc,bnk->bnc", gathered, weights.astype(x.dtype))
    return out.reshape((b, *sample_shape, c))


def warp(x: jnp.ndarray, flow: jnp.ndarray) -> jnp.ndarray:
    """Backward warp: ``out[p] = x[p + flow[p]]`` with ``flow [B, H, W, 2]`` holding ``(dx, dy)``.

    The channel order ``(dx, dy)`` is the optical-flow convention (as in BasicSR's ``flow_warp``).
    Samples outside the image are zero.
    """
    if flow.ndim != 4 or flow.shape[-1] != 2 or flow.shape[:3] != x.shape[:3]:
        raise ValueError(
            f"warp expects flow of shape {tuple(x.shape[:3]) + (2,)} for x of shape {tuple(x.shape)}, "
            f"got {tuple(flow.shape)}"
        )
    _, h, w, _ = x.shape
    gy, gx = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype), indexing="ij")
    coords = jnp.stack([gy[None] + flow[..., 1], gx[None] + flow[..., 0]], axis=-1)
    return bilinear_sample(x, coords)
