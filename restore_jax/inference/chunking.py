"""Temporal chunking: run video models on fixed-length windows and assemble each output frame once.

Three forms, all with a fixed window shape (one compilation for the whole video):

* :func:`chunked_video_apply` — many-to-many window models. A window of ``N`` input frames yields
  ``(N - 1) * temporal_scale + 1`` output frames: ``temporal_scale = 1`` for video SR / denoising
  (``N`` in, ``N`` out), ``temporal_scale = 2`` for Zooming Slow-Mo (``N`` in, ``2N - 1`` out:
  the inputs plus one interpolated frame between each pair).
* :func:`sliding_window_apply` — many-to-one models: output frame ``t`` from input frames
  ``t - radius .. t + radius`` (temporal border frames by reflection or repetition).
* :func:`per_frame_apply` — single-image models applied to every frame.

Each accepts ``tile=`` to also cut frames into spatial tiles (delegating to
:mod:`restore_jax.inference.tiling`), so memory is bounded by the window length times the tile
size, whatever the frame size.

Index arithmetic of :func:`plan_windows` (``T`` input frames, window ``N``, stride ``S``,
temporal scale ``k``). Output frame ``g`` lies at input time ``g / k``; there are
``(T - 1) * k + 1`` of them. Window starts are ``0, S, 2S, ...`` while the window fits, plus one
extra window aligned to the end (start ``T - N``) when the regular ones stop short. The window
starting at input frame ``s`` produces global output frames ``s*k .. s*k + (N - 1)*k``. Two
consecutive windows overlap on output frames ``[B0, A1]`` (``B0`` the later window's first, ``A1``
the earlier window's last); with ``c = A1 - B0 + 1`` the earlier window keeps the first ``c // 2``
of them and the later one the rest, so every output frame is taken from exactly one window, from
the window where it sits more centrally. ZSM example: ``N = 4, S = 3`` (consecutive windows share
one input frame), ``k = 2``: windows at 0, 3, 6, ... produce 7 frames each; the shared frame goes
to the later window, so each window contributes 6 frames and the last one 7. Coverage requires
``S <= N`` for ``k = 1`` and ``S <= N - 1`` for ``k >= 2`` (else the interpolated frame between
two windows is never produced). A video shorter than the window is padded by repeating its last
frame; the outputs beyond ``(T - 1) * k`` are dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

from restore_jax.inference.tiling import (
    _as_jitted,
    _check_pad_mode,
    _check_tiling_args,
    _tiled_core,
    apply_in_batches,
    pad_spatial,
)

__all__ = [
    "Window",
    "plan_windows",
    "num_output_frames",
    "chunked_video_apply",
    "iter_chunked_video",
    "sliding_window_apply",
    "per_frame_apply",
]


@dataclasses.dataclass(frozen=True)
class Window:
    """One window of the plan: input frames ``[start, start + window)`` (clipped to the video,
    padded by repeating the last frame); local outputs ``[keep_start, keep_stop)`` are kept and
    land at global output ``out_offset + local index``."""

    start: int
    keep_start: int
    keep_stop: int
    out_offset: int


def num_output_frames(num_frames: int, temporal_scale: int = 1) -> int:
    """``(T - 1) * temporal_scale + 1`` output frames for ``T`` input frames."""
    return (num_frames - 1) * temporal_scale + 1


def _check_window_args(num_frames: int, window: int, stride: int, temporal_scale: int) -> None:
    if num_frames < 1:
        raise ValueError(f"the video has no frames (num_frames={num_frames})")
    if temporal_scale < 1:
        raise ValueError(f"temporal_scale must be >= 1, got {temporal_scale}")
    if window < 1 or (temporal_scale > 1 and window < 2):
        raise ValueError(f"window must be >= {2 if temporal_scale > 1 else 1}, got {window}")
    max_stride = window if temporal_scale == 1 else window - 1
    if not 1 <= stride <= max_stride:
        raise ValueError(
            f"stride must lie in [1, {max_stride}] for window {window} and temporal_scale {temporal_scale} "
            "(a larger stride leaves output frames that no window produces)"
        )


def plan_windows(num_frames: int, window: int, stride: int, temporal_scale: int = 1) -> list[Window]:
    """The windows covering a ``num_frames`` video and which of their outputs are kept (see module doc)."""
    _check_window_args(num_frames, window, stride, temporal_scale)
    k = temporal_scale
    per_window = (window - 1) * k + 1
    if num_frames <= window:
        return [Window(start=0, keep_start=0, keep_stop=num_output_frames(num_frames, k), out_offset=0)]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    # cut[i]: first global output owned by window i + 1.
    cuts = []
    for a, b in zip(starts[:-1], starts[1:]):
        b0, a1 = b * k, a * k + per_window - 1
        cuts.append(b0 + (a1 - b0 + 1) // 2)
    plan = []
    for i, s in enumerate(starts):
        lo = 0 if i == 0 else cuts[i - 1] - s * k
        hi = per_window if i == len(starts) - 1 else cuts[i] - s * k
        plan.append(Window(start=s, keep_start=lo, keep_stop=hi, out_offset=s * k))
    return plan


def _window_frames(frames: np.ndarray, start: int, window: int) -> np.ndarray:
    idx = np.minimum(np.arange(start, start + window), frames.shape[0] - 1)
    return frames[idx]


def _spatial_call(fn, x, *, n_inner, tile, overlap, margin, scale, multiple, batch_tiles, pad_mode, progress):
    """``fn`` on ``x = [B, *inner, H, W, C]``: tiled, or whole frames padded to the multiple."""
    if tile is not None:
        return _tiled_core(
            fn, x, n_inner=n_inner, tile=tile, overlap=overlap, margin=margin, scale=scale,
            multiple=multiple, batch_tiles=batch_tiles, pad_mode=pad_mode, progress=False,
        )
    h, w = x.shape[-3], x.shape[-2]
    xp = pad_spatial(x, -h % multiple, -w % multiple, pad_mode)
    y = np.asarray(_as_jitted(fn)(xp))
    hp, wp = xp.shape[-3], xp.shape[-2]
    if y.ndim != x.ndim or y.shape[0] != x.shape[0] or y.shape[-3:-1] != (hp * scale, wp * scale):
        raise ValueError(
            f"the model returned shape {y.shape} for input {xp.shape}; expected batch {x.shape[0]} and "
            f"spatial size {hp * scale}x{wp * scale} (scale {scale}) - check scale="
        )
    return y[..., : h * scale, : w * scale, :]


def _check_video(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise ValueError(f"expected video frames [T, H, W, C] with T >= 1, got shape {frames.shape}")
    return frames


def _check_spatial(tile, overlap, margin, scale, multiple, pad_mode):
    _check_pad_mode(pad_mode)
    if tile is not None:
        _check_tiling_args(tile, overlap, margin, scale, multiple)
    elif scale < 1 or multiple < 1:
        raise ValueError(f"scale and multiple must be >= 1, got {scale}, {multiple}")


def iter_chunked_video(
    fn: Callable,
    frames: np.ndarray,
    *,
    window: int,
    stride: int,
    temporal_scale: int = 1,
    batch_windows: int = 1,
    tile: int | None = None,
    overlap: int = 0,
    margin: int | None = None,
    scale: int = 1,
    multiple: int = 1,
    batch_tiles: int = 8,
    pad_mode: str = "reflect",
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Like :func:`chunked_video_apply` but yields the output frames in order (streaming to a
    writer keeps host memory bounded by one window group, whatever the video length)."""
    frames = _check_video(frames)
    _check_spatial(tile, overlap, margin, scale, multiple, pad_mode)
    if batch_windows < 1:
        raise ValueError(f"batch_windows must be >= 1, got {batch_windows}")
    plan = plan_windows(frames.shape[0], window, stride, temporal_scale)
    per_window = (window - 1) * temporal_scale + 1
    groups = [plan[i : i + batch_windows] for i in range(0, len(plan), batch_windows)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), desc="windows", unit="window")
    try:
        for group in groups:
            x = np.stack([_window_frames(frames, wnd.start, window) for wnd in group])
            if tile is None and len(group) < batch_windows:  # keep one shape: fill up the group
                x = np.concatenate([x, np.repeat(x[-1:], batch_windows - len(group), axis=0)])
            y = _spatial_call(
                fn, x, n_inner=1, tile=tile, overlap=overlap, margin=margin, scale=scale,
                multiple=multiple, batch_tiles=batch_tiles, pad_mode=pad_mode, progress=False,
            )
            if y.ndim != 5 or y.shape[1] != per_window:
                raise ValueError(
                    f"the window model returned shape {y.shape}; expected [batch, {per_window}, H, W, C] "
                    f"({window} input frames -> (window - 1) * temporal_scale + 1 = {per_window} output frames)"
                )
            for wnd, yw in zip(group, y):
                yield from yw[wnd.keep_start : wnd.keep_stop]
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def chunked_video_apply(
    fn: Callable,
    frames: np.ndarray,
    *,
    window: int,
    stride: int,
    temporal_scale: int = 1,
    batch_windows: int = 1,
    tile: int | None = None,
    overlap: int = 0,
    margin: int | None = None,
    scale: int = 1,
    multiple: int = 1,
    batch_tiles: int = 8,
    pad_mode: str = "reflect",
    progress: bool = False,
) -> np.ndarray:
    """Apply a window model to a whole video ``frames [T, H, W, C]``; each output frame once.

    ``fn`` maps ``[b, window, h, w, C]`` to ``[b, (window - 1) * temporal_scale + 1, h*scale,
    w*scale, C_out]``; ``b = batch_windows`` (whole frames padded to ``multiple``) or
    ``b = batch_tiles`` and ``h = w = tile`` when ``tile`` is given (frames cut into overlapping
    tiles, see :func:`restore_jax.inference.tiling.tiled_apply` for ``overlap`` / ``margin``).
    Returns ``[(T - 1) * temporal_scale + 1, H*scale, W*scale, C_out]`` (window plan: module doc).
    """
    out = list(
        iter_chunked_video(
            fn, frames, window=window, stride=stride, temporal_scale=temporal_scale,
            batch_windows=batch_windows, tile=tile, overlap=overlap, margin=margin, scale=scale,
            multiple=multiple, batch_tiles=batch_tiles, pad_mode=pad_mode, progress=progress,
        )
    )
    return np.stack(out)


def sliding_window_apply(
    fn: Callable,
    frames: np.ndarray,
    *,
    radius: int,
    batch: int = 1,
    temporal_pad: str = "reflect",
    tile: int | None = None,
    overlap: int = 0,
    margin: int | None = None,
    scale: int = 1,
    multiple: int = 1,
    batch_tiles: int = 8,
    pad_mode: str = "reflect",
    progress: bool = False,
) -> np.ndarray:
    """Many-to-one model: output frame ``t`` = ``fn`` of input frames ``t - radius .. t + radius``.

    ``fn`` maps ``[b, 2*radius + 1, h, w, C]`` to ``[b, h*scale, w*scale, C_out]``. Frames outside
    the video come from ``temporal_pad``: ``'reflect'`` (frame ``-1`` is frame ``1``; falls back to
    ``'edge'`` for a one-frame video) or ``'edge'`` (repeat the first / last frame).
    Returns ``[T, H*scale, W*scale, C_out]``.
    """
    frames = _check_video(frames)
    _check_spatial(tile, overlap, margin, scale, multiple, pad_mode)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if temporal_pad not in ("reflect", "edge"):
        raise ValueError(f"temporal_pad must be 'reflect' or 'edge', got {temporal_pad!r}")
    t_len = frames.shape[0]
    mode = "edge" if t_len == 1 else temporal_pad
    index = np.pad(np.arange(t_len), radius, mode=mode)

    def windows():
        for t in range(t_len):
            yield frames[index[t : t + 2 * radius + 1]]

    if tile is not None:
        outs = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=t_len, desc="frames", unit="frame")
        for wnd in windows():
            outs.append(
                _tiled_core(
                    fn, wnd[None], n_inner=1, tile=tile, overlap=overlap, margin=margin, scale=scale,
                    multiple=multiple, batch_tiles=batch_tiles, pad_mode=pad_mode, progress=False,
                )[0]
            )
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return np.stack(outs)
    h, w = frames.shape[1:3]
    ph, pw = -h % multiple, -w % multiple
    padded = (pad_spatial(x, ph, pw, pad_mode) for x in windows())
    outs = list(apply_in_batches(fn, padded, batch, num_items=t_len, progress=progress, desc="frames"))
    y = np.stack(outs)
    if y.ndim != 4 or y.shape[1:3] != ((h + ph) * scale, (w + pw) * scale):
        raise ValueError(
            f"the model returned frames of shape {y.shape[1:]}; expected spatial size "
            f"{(h + ph) * scale}x{(w + pw) * scale} (scale {scale}) - check scale="
        )
    return y[:, : h * scale, : w * scale]


def per_frame_apply(
    fn: Callable,
    frames: np.ndarray,
    *,
    batch: int = 1,
    tile: int | None = None,
    overlap: int = 0,
    margin: int | None = None,
    scale: int = 1,
    multiple: int = 1,
    batch_tiles: int = 8,
    pad_mode: str = "reflect",
    progress: bool = False,
) -> np.ndarray:
    """Single-image model on every frame: ``fn`` maps ``[b, h, w, C]`` to ``[b, h*scale, w*scale, C_out]``.

    Without ``tile``: ``b = batch`` whole frames (padded to ``multiple``). With ``tile``: tiles from
    all frames are batched together (``b = batch_tiles``). Returns ``[T, H*scale, W*scale, C_out]``.
    """
    frames = _check_video(frames)
    _check_spatial(tile, overlap, margin, scale, multiple, pad_mode)
    if tile is not None:
        return _tiled_core(
            fn, frames, n_inner=0, tile=tile, overlap=overlap, margin=margin, scale=scale,
            multiple=multiple, batch_tiles=batch_tiles, pad_mode=pad_mode, progress=progress,
        )
    h, w = frames.shape[1:3]
    ph, pw = -h % multiple, -w % multiple
    padded = (pad_spatial(f, ph, pw, pad_mode) for f in frames)
    y = np.stack(list(apply_in_batches(fn, padded, batch, num_items=frames.shape[0], progress=progress, desc="frames")))
    if y.shape[1:3] != ((h + ph) * scale, (w + pw) * scale):
        raise ValueError(
            f"the model returned frames of shape {y.shape[1:]}; expected spatial size "
            f"{(h + ph) * scale}x{(w + pw) * scale} (scale {scale}) - check scale="
        )
    return y[:, : h * scale, : w * scale]

