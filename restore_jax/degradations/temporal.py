"""Temporal degradations: frame averaging (motion blur of the deblurring papers) and subsampling.

Frame averaging (seed_000 §1.2 eq. 3.1, seed_002_003 §A2 eq. 5 and §B2): a blurry image is the
mean of ``N`` consecutive sharp frames, optionally through a camera response ``g``:
``y = (mean_i x_i^gamma)^(1 / gamma)`` — frames are linearised with ``x ** gamma``, averaged, and
re-encoded with ``1 / gamma``; ``gamma = 1`` is the plain mean (the papers' stated model; the
CFMD spec suggests ``gamma = 2.2`` as the GoPro-style option).

Temporal subsampling (seed_001 §A.2): Zooming Slow-Mo keeps the odd frames 1, 3, 5, 7 of a
septuplet — 0-based indices 0, 2, 4, 6 — i.e. ``x[offset::step]`` with ``step=2, offset=0``.
"""

from __future__ import annotations

import numpy as np

from restore_jax.degradations._common import Params, Range, check_image, check_rng, draw_int, f32, i32

__all__ = ["average_frames", "frame_average", "subsample_frames", "temporal_subsample"]


def average_frames(frames: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``[N, H, W, C] -> [H, W, C]``: ``(mean(frames ** gamma)) ** (1 / gamma)``."""
    frames = check_image(frames, "average_frames", allow_image=False)
    if not gamma > 0:
        raise ValueError(f"average_frames: gamma must be > 0, got {gamma!r}")
    if gamma == 1.0:
        y = frames.astype(np.float64).mean(axis=0)
    else:
        y = np.power(np.power(frames.astype(np.float64), gamma).mean(axis=0), 1.0 / gamma)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def frame_average(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    num_frames: Range | None = None,
    gamma: float = 1.0,
) -> tuple[np.ndarray, Params]:
    """Average a random window of ``num_frames`` consecutive frames of a sequence ``[T, H, W, C]``.

    ``num_frames``: ``None`` (all ``T`` frames), an int, an inclusive ``(low, high)`` range or a
    list of choices (CFMD: ``[5, 7, 9, 11, 13]``; VFB: 7; deblur-and-rotate: 9 or 65). The window
    start is uniform over the valid positions; the matching sharp frames are
    ``x[start:start + num_frames]``. Params: ``num_frames``, ``start`` (int32), ``gamma`` (float32).
    """
    fn = "frame_average"
    check_rng(rng, fn)
    x = check_image(x, fn, allow_image=False)
    t = x.shape[0]
    n = draw_int(rng, t if num_frames is None else num_frames, "num_frames", fn, low=1)
    if n > t:
        raise ValueError(f"{fn}: cannot average {n} frames from a sequence of {t}; pass a longer sequence")
    start = min(int(rng.random() * (t - n + 1)), t - n)
    y = average_frames(x[start : start + n], gamma)
    return y, {"num_frames": i32(n), "start": i32(start), "gamma": f32(gamma)}


def subsample_frames(x: np.ndarray, step: int = 2, offset: int = 0) -> np.ndarray:
    """``x[offset::step]`` of a sequence (ZSM: ``step=2, offset=0`` keeps frames 0, 2, 4, 6)."""
    x = check_image(x, "subsample_frames", allow_image=False)
    if int(step) != step or step < 1 or int(offset) != offset or not 0 <= offset < x.shape[0]:
        raise ValueError(f"subsample_frames: need step >= 1 and 0 <= offset < T={x.shape[0]}, got {step!r}, {offset!r}")
    return np.ascontiguousarray(x[int(offset) :: int(step)])


def temporal_subsample(rng: np.random.Generator, x: np.ndarray, *, step: int = 2, offset: int = 0) -> tuple[np.ndarray, Params]:
    """Deterministic sampler wrapper of :func:`subsample_frames` (uses no randomness).

    Params: ``step``, ``offset`` (int32) and ``kept`` (int32 indices of the kept frames).
    """
    check_rng(rng, "temporal_subsample")
    y = subsample_frames(x, step, offset)
    kept = np.arange(int(offset), np.asarray(x).shape[0], int(step))
    return y, {"step": i32(step), "offset": i32(offset), "kept": i32(kept)}
