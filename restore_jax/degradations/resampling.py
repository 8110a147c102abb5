"""Resizing: MATLAB bicubic (``restore_jax.ops.resize.imresize_np``) plus bilinear, area, nearest.

Scale convention follows MATLAB: ``resize(x, scale=0.25)`` shrinks by 4; the output side is
``ceil(scale * n)`` for every method (so all methods agree on shapes). The samplers speak in
*downsampling factors* (``factor=4`` means ``scale=1/4``), the usual SR wording.

Methods (code recorded in ``params["method"]``):

* ``"bicubic"`` (0): MATLAB ``imresize(x, scale, 'bicubic')`` with antialiasing — what the SR
  papers use (seed_001 §A.2, §C.2);
* ``"bilinear"`` (1), ``"area"`` (2, box filter), ``"nearest"`` (3): Pillow's float (``F`` mode)
  resamplers, one channel at a time. Pillow's bilinear and box filters widen their support when
  downscaling (antialiased), like MATLAB's.

Images and sequences are accepted; sequences are resized frame by frame. Results are clipped to
``[0, 1]`` by default (bicubic overshoots at edges; clipping matches LR images saved as 8-bit).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from restore_jax.degradations._common import Params, Range, check_image, check_rng, draw_float, f32, i32

__all__ = ["RESIZE_METHODS", "resize", "downsample"]

#: Resize method codes recorded in ``params["method"]``.
RESIZE_METHODS = {"bicubic": 0, "bilinear": 1, "area": 2, "nearest": 3}

_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "area": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST}


def _out_size(n: int, scale: float) -> int:
    return max(1, int(math.ceil(scale * n)))


def resize(
    x: np.ndarray,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    *,
    method: str = "bicubic",
    clip: bool = True,
) -> np.ndarray:
    """Resize an image ``[H, W, C]`` or sequence ``[T, H, W, C]`` by ``scale`` or to ``size=(h, w)``."""
    x = check_image(x, "resize")
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize: method must be one of {sorted(RESIZE_METHODS)}, got {method!r}")
    if (scale is None) == (size is None):
        raise ValueError(f"resize: give exactly one of scale (e.g. 0.25) or size (h, w), got {scale!r}, {size!r}")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"resize: scale must be a positive number, got {scale!r}")
    if method == "bicubic":
        from restore_jax.ops.resize import imresize_np  # lazy: pulls in JAX

        y = imresize_np(x, scale=scale, size=None if size is None else tuple(int(v) for v in size))
    else:
        h, w = x.shape[-3], x.shape[-2]
        oh, ow = (int(size[0]), int(size[1])) if size is not None else (_out_size(h, scale), _out_size(w, scale))
        if oh < 1 or ow < 1:
            raise ValueError(f"resize: output size must be positive, got {(oh, ow)}")
        frames = x.reshape((-1,) + x.shape[-3:])
        out = np.empty((frames.shape[0], oh, ow, x.shape[-1]), dtype=np.float32)
        filt = _PIL_FILTERS[method]
        for t in range(frames.shape[0]):
            for c in range(x.shape[-1]):
                img = Image.fromarray(np.ascontiguousarray(frames[t, :, :, c]))
                out[t, :, :, c] = np.asarray(img.resize((ow, oh), resample=filt), dtype=np.float32)
        y = out.reshape(x.shape[:-3] + (oh, ow, x.shape[-1]))
    y = np.asarray(y, dtype=np.float32)
    return np.clip(y, 0.0, 1.0) if clip else y


def downsample(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    factor: Range = 4.0,
    method: str | list[str] = "bicubic",
    clip: bool = True,
) -> tuple[np.ndarray, Params]:
    """Downsample by a (possibly random, possibly non-integer) factor: ``scale = 1 / factor``.

    ``factor``: number, ``(low, high)`` or list of choices (>= 1 means shrinking; values < 1
    upsample). ``method``: a name or a list of names to pick from uniformly.
    Params: ``factor`` (float32), ``method`` (int32, :data:`RESIZE_METHODS`).
    """
    fn = "downsample"
    check_rng(rng, fn)
    x = check_image(x, fn)
    methods = method if isinstance(method, list) else [method]
    bad = [m for m in methods if m not in RESIZE_METHODS]
    if not methods or bad:
        raise ValueError(f"{fn}: method must be one of {sorted(RESIZE_METHODS)} or a list of them, got {method!r}")
    f = draw_float(rng, factor, "factor", fn, low=1e-3)
    m = methods[min(int(rng.random() * len(methods)), len(methods) - 1)]
    y = resize(x, scale=1.0 / f, method=m, clip=clip)
    return y, {"factor": f32(f), "method": i32(RESIZE_METHODS[m])}
