"""Burst synthesis for multi-frame SR: one HR image -> N shifted/rotated/zoomed LR frames.

seed_004 §2.1 builds each multi-frame sample from one still by 7 random "warping, rotation,
brightness change, zooming" transforms, a resize to 32x32 and a JPEG at random quality; §2.6
recommends adding sub-pixel shifts so that fusing frames is informative. Here frame ``i`` is

``lr_i = jpeg(downsample(gain_i * warp(x; shift_i * factor, angle_i, zoom_i), factor), q_i)``

where :func:`affine_warp` rotates by ``angle_i`` (radians, same convention as the blur kernels: from
+x towards +y) and scales by ``zoom_i`` about the image centre, then translates by the HR shift
(``shift_i`` is given in **LR pixels**, ``(dy, dx)``). The reference frame (default: the middle
one) gets the identity warp and unit gain, so it is aligned with the HR target. Interpolation is
scipy's spline interpolation of order 1 ("bilinear") or 3 ("bicubic", cubic B-spline) with
whole-sample mirrored borders. Downsampling uses :func:`restore_jax.degradations.resampling.resize`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage

from restore_jax.degradations._common import (
    Params,
    Range,
    check_image,
    check_rng,
    draw_float,
    draw_int,
    f32,
    i32,
)
from restore_jax.degradations.compression import jpeg_compress
from restore_jax.degradations.resampling import RESIZE_METHODS, resize

__all__ = ["affine_warp", "render_burst", "burst"]

_ORDERS = {"bilinear": 1, "bicubic": 3}


def affine_warp(
    x: np.ndarray,
    shift: tuple[float, float] = (0.0, 0.0),
    angle: float = 0.0,
    zoom: float = 1.0,
    *,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """Rotate by ``angle``, scale by ``zoom`` about the centre, then shift by ``(dy, dx)`` pixels.

    Image ``[H, W, C]`` only; the output keeps the input size, clipped to ``[0, 1]``.
    """
    x = check_image(x, "affine_warp", allow_sequence=False)
    if interpolation not in _ORDERS:
        raise ValueError(f"affine_warp: interpolation must be one of {sorted(_ORDERS)}, got {interpolation!r}")
    if not zoom > 0:
        raise ValueError(f"affine_warp: zoom must be > 0, got {zoom!r}")
    c, s = math.cos(angle), math.sin(angle)
    # Forward map in (row, col) = (y, x): q = c0 + zoom * A (p - c0) + shift, A = [[c, s], [-s, c]].
    a_inv = np.array([[c, -s], [s, c]], dtype=np.float64) / zoom  # A^T / zoom
    c0 = np.array([(x.shape[0] - 1) / 2.0, (x.shape[1] - 1) / 2.0])
    offset = c0 - a_inv @ (c0 + np.asarray(shift, dtype=np.float64))
    out = np.empty_like(x)
    for ch in range(x.shape[-1]):
        out[:, :, ch] = scipy.ndimage.affine_transform(
            x[:, :, ch].astype(np.float64), a_inv, offset=offset, order=_ORDERS[interpolation], mode="mirror"
        )
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def render_burst(
    x: np.ndarray,
    shifts: np.ndarray,
    angles: np.ndarray,
    zooms: np.ndarray,
    *,
    factor: float = 4.0,
    gains: np.ndarray | None = None,
    quality: np.ndarray | None = None,
    interpolation: str = "bicubic",
    method: str = "bicubic",
) -> np.ndarray:
    """Deterministic burst from explicit per-frame ``shifts [N, 2]`` (LR px), ``angles [N]``,
    ``zooms [N]``, optional ``gains [N]`` and JPEG ``quality [N]`` (values <= 0 mean no JPEG).
    Returns ``[N, ceil(H / factor), ceil(W / factor), C]``."""
    x = check_image(x, "render_burst", allow_sequence=False)
    shifts = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    n = shifts.shape[0]
    angles = np.broadcast_to(np.asarray(angles, dtype=np.float64), (n,))
    zooms = np.broadcast_to(np.asarray(zooms, dtype=np.float64), (n,))
    gains = np.ones(n) if gains is None else np.broadcast_to(np.asarray(gains, dtype=np.float64), (n,))
    frames = []
    for i in range(n):
        w = affine_warp(x, tuple(shifts[i] * factor), float(angles[i]), float(zooms[i]), interpolation=interpolation)
        if gains[i] != 1.0:
            w = np.clip(w * np.float32(gains[i]), 0.0, 1.0)
        frames.append(resize(w, scale=1.0 / factor, method=method))
    y = np.stack(frames)
    if quality is not None:
        q = np.broadcast_to(np.asarray(quality), (n,))
        for i in range(n):
            if q[i] > 0:
                y[i] = jpeg_compress(y[i], int(q[i]))
    return y


def burst(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    num_frames: Range = 7,
    factor: Range = 4.0,
    shift: Range = (-1.0, 1.0),
    rotation: Range = (-0.1, 0.1),
    zoom: Range = (0.95, 1.05),
    gain: Range = 1.0,
    jpeg_quality: Range | None = None,
    reference: int | None = -1,
    interpolation: str = "bicubic",
    method: str = "bicubic",
) -> tuple[np.ndarray, Params]:
    """Random burst ``[N, h, w, C]`` from one HR image ``[H, W, C]`` (see module doc).

    ``shift`` (LR pixels, drawn independently for dy and dx), ``rotation`` (radians), ``zoom``,
    ``gain`` (brightness factor) and ``jpeg_quality`` (``None`` = no JPEG; seed_004 §2.6 suggests
    ``(10, 70)``) are drawn per frame. ``reference``: index of the identity frame, ``-1`` = middle
    (``N // 2``), ``None`` = no identity frame.
    Params: ``shifts`` float32 ``[N, 2]`` (dy, dx, LR px), ``angles``, ``zooms``, ``gains``
    float32 ``[N]``, ``quality`` int32 ``[N]`` (0 = no JPEG), ``factor`` float32,
    ``reference`` int32 (-1 = none), ``method`` int32 (:data:`RESIZE_METHODS`).
    """
    fn = "burst"
    check_rng(rng, fn)
    x = check_image(x, fn, allow_sequence=False)
    if method not in RESIZE_METHODS or interpolation not in _ORDERS:
        raise ValueError(f"{fn}: method must be in {sorted(RESIZE_METHODS)} and interpolation in {sorted(_ORDERS)}")
    n = draw_int(rng, num_frames, "num_frames", fn, low=1)
    f = draw_float(rng, factor, "factor", fn, low=1e-3)
    if reference is not None and not -1 <= reference < n:
        raise ValueError(f"{fn}: reference must be -1 (middle), None or an index < {n}, got {reference!r}")
    ref = None if reference is None else (n // 2 if reference == -1 else int(reference))
    shifts = np.zeros((n, 2))
    angles, zooms, gains = np.zeros(n), np.ones(n), np.ones(n)
    quality = np.zeros(n, dtype=np.int32)
    for i in range(n):
        shifts[i, 0] = draw_float(rng, shift, "shift", fn)
        shifts[i, 1] = draw_float(rng, shift, "shift", fn)
        angles[i] = draw_float(rng, rotation, "rotation", fn)
        zooms[i] = draw_float(rng, zoom, "zoom", fn, low=1e-3)
        gains[i] = draw_float(rng, gain, "gain", fn, low=0.0)
        if jpeg_quality is not None:
            quality[i] = draw_int(rng, jpeg_quality, "jpeg_quality", fn, low=1, high=100)
    if ref is not None:
        shifts[ref], angles[ref], zooms[ref], gains[ref] = 0.0, 0.0, 1.0, 1.0
    # Render from the float32 values that are recorded, so params reproduce the output exactly.
    shifts, angles, zooms, gains = (np.asarray(v, np.float32).astype(np.float64) for v in (shifts, angles, zooms, gains))
    f = float(np.float32(f))
    y = render_burst(
        x, shifts, angles, zooms, factor=f, gains=gains, quality=quality, interpolation=interpolation, method=method
    )
    params: Params = {
        "shifts": f32(shifts),
        "angles": f32(angles),
        "zooms": f32(zooms),
        "gains": f32(gains),
        "quality": i32(quality),
        "factor": f32(f),
        "reference": i32(-1 if ref is None else ref),
        "method": i32(RESIZE_METHODS[method]),
    }
    return y, params
