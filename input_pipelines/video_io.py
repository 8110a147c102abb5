"""Video decode / encode through PyAV. This is the **only** module of the project that imports ``av``.

Why one module: codec libraries change their Python API between releases (PyAV renamed and
removed several calls across versions); keeping every call here means one file changes when they do.

Frame indexing contract:

* :func:`probe_video` demuxes the first video stream once (no decoding; fast) and records the
  presentation timestamps (pts) of all its packets, sorted. Frame ``i`` of the video is the frame
  with the ``i``-th smallest pts, so frame numbers follow display order even with B-frames.
* :func:`read_frames` seeks to the key frame at or before frame ``start`` and decodes forward,
  keeping the ``count`` frames whose pts are ``pts[start:start + count]``. If the container's index
  is unreliable (the decoded pts do not line up), it falls back to decoding from the beginning, so
  the result is always the frames a full decode would give at those positions.
* Frames are returned as uint8 RGB ``[T, H, W, 3]`` (FFmpeg's ``rgb24`` conversion with the
  stream's own colour matrix); sources convert them to float ``[0, 1]``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Union

import av
import numpy as np

__all__ = ["VideoInfo", "VideoReadError", "probe_video", "read_frames", "decode_all", "write_video"]

PathLike = Union[str, os.PathLike]


class VideoReadError(ValueError):
    """A video file could not be opened, probed or decoded (message names the file and the fix)."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video source needs to know about one file (computed once, picklable)."""

    path: str
    num_frames: int
    height: int
    width: int
    fps: float
    pts: tuple[int, ...]  # sorted presentation timestamps, one per frame, in the stream time base


def _open(path: str):
    try:
        container = av.open(path)
    except OSError:
        raise  # missing file / I/O failure: not a content problem (PyAV's file errors are OSErrors)
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"{path}: cannot open as a video ({exc}); check the file and its codec") from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: no video stream found")
    return container


def probe_video(path: PathLike) -> VideoInfo:
    """Count the frames of ``path`` and record their timestamps by demuxing (no decoding)."""
    path = os.fspath(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        pts = []
        missing = 0
        for packet in container.demux(stream):
            if packet.size == 0:  # flush packet at the end of the stream
                continue
            if packet.pts is None:
                missing += 1
                continue
            pts.append(int(packet.pts))
        if missing:
            raise VideoReadError(
                f"{path}: {missing} packets have no timestamp, so frames cannot be indexed for seeking; "
                "remux the file (e.g. `ffmpeg -i in -c copy out.mp4`)"
            )
        if not pts:
            raise VideoReadError(f"{path}: the video stream has no frames")
        rate = stream.average_rate or stream.guessed_rate or 0
        info = VideoInfo(
            path=path,
            num_frames=len(pts),
            height=int(stream.codec_context.height),
            width=int(stream.codec_context.width),
            fps=float(rate) if rate else 0.0,
            pts=tuple(sorted(pts)),
        )
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"{path}: corrupt video ({exc})") from exc
    finally:
        container.close()
    if len(set(info.pts)) != info.num_frames:
        raise VideoReadError(f"{path}: duplicate frame timestamps; remux or re-encode the file")
    return info


def _decode_by_pts(container, stream, wanted: list[int]) -> list[np.ndarray] | None:
    """Decode forward from the current position; frames whose pts are in ``wanted``, in order."""
    first, last = wanted[0], wanted[-1]
    got: dict[int, np.ndarray] = {}
    want = set(wanted)
    for frame in container.decode(stream):
        if frame.pts is None:
            return None
        if frame.pts in want:
            got[frame.pts] = frame.to_ndarray(format="rgb24")
        if frame.pts >= last and len(got) == len(wanted):
            break
        if frame.pts > last and len(got) != len(wanted):
            return None
    if len(got) != len(wanted) or min(got) != first:
        return None
    return [got[p] for p in wanted]


def read_frames(path: PathLike, start: int, count: int, *, info: VideoInfo | None = None) -> np.ndarray:
    """Frames ``start .. start + count - 1`` (display order) of ``path`` as uint8 ``[count, H, W, 3]``.

    Seeks to the nearest key frame at or before ``start`` (cheap for random windows of long videos).
    ``info`` from :func:`probe_video` avoids probing the file again.
    """
    path = os.fspath(path)
    info = info or probe_video(path)
    if count < 1 or start < 0 or start + count > info.num_frames:
        raise IndexError(
            f"{path}: frames [{start}, {start + count}) are outside the video ({info.num_frames} frames)"
        )
    wanted = list(info.pts[start : start + count])
    container = _open(path)
    try:
        stream = container.streams.video[0]
        frames = None
        try:
            container.seek(wanted[0], stream=stream, backward=True, any_frame=False)
            frames = _decode_by_pts(container, stream, wanted)
        except av.error.FFmpegError:
            frames = None
        if frames is None:  # unreliable index: decode from the beginning
            container.seek(info.pts[0], stream=stream, backward=True, any_frame=False)
            frames = _decode_by_pts(container, stream, wanted)
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"{path}: decoding failed ({exc})") from exc
    finally:
        container.close()
    if frames is None:
        raise VideoReadError(
            f"{path}: frames [{start}, {start + count}) could not be decoded at their timestamps; "
            "the file may be damaged - re-encode it"
        )
    return np.stack(frames)


def decode_all(path: PathLike) -> np.ndarray:
    """Every frame of the first video stream, in decode-output order, as uint8 ``[T, H, W, 3]``."""
    path = os.fspath(path)
    container = _open(path)
    try:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"{path}: decoding failed ({exc})") from exc
    finally:
        container.close()


def write_video(
    path: PathLike,
    frames: Union[np.ndarray, Iterable[np.ndarray]],
    *,
    fps: float = 25.0,
    codec: str = "libx264",
    crf: int | None = 18,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> None:
    """Encode frames (uint8 ``[H, W, 3]`` or float in ``[0, 1]``) to a video file.

    ``crf`` applies to x264/x265 (0 = lossless luma); ``options`` go to the encoder verbatim.
    Width and height must be even for ``yuv420p``.
    """
    from fractions import Fraction

    path = os.fspath(path)
    container = av.open(path, mode="w")
    try:
        stream = None
        for frame in frames:
            arr = np.asarray(frame)
            if np.issubdtype(arr.dtype, np.floating):
                arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
            if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
                raise ValueError(f"write_video: frames must be [H, W, 3] uint8 or float, got {arr.shape} {arr.dtype}")
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = arr.shape[:2]
                stream.pix_fmt = pix_fmt
                opts = dict(options or {})
                if crf is not None and codec in ("libx264", "libx265", "libx264rgb"):
                    opts.setdefault("crf", str(crf))
                stream.options = opts
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError("write_video: no frames given")
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
