"""300VW face videos with per-frame 68-point annotations: the ``.pts`` reader and the ``vw300`` source.

Layout (the 300VW release, one folder per video)::

    <root>/<video_id>/vid.avi              the video (any file with a video extension works), or
    <root>/<video_id>/frames/000001.png    extracted frames (or the images directly in <video_id>/)
    <root>/<video_id>/annot/000001.pts     68 (x, y) points per frame, frame 1 = 000001.pts

Split (CFMD, spec seed_002_003 §A2: 83 training and 9 test videos "following Ren et al.", whose list
the spec does not give): pass the test ids explicitly with ``test_ids=[...]``, or the deterministic
rule of :func:`held_out_ids` picks ``num_test`` (default 9) videos evenly spread over the naturally
sorted ids; every other video is training data. ``'val'`` and ``'test'`` are the held-out videos.

Landmark coordinates: 300VW (like 300-W) stores MATLAB-style 1-based pixel coordinates; the source
subtracts ``pts_origin`` (default 1) so that landmarks use the project's convention (0-based pixel
centres, as ``input_pipelines.synthetic_faces``). FMR only compares eye positions, so the offset
matters only for the crop box.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import warnings
from collections.abc import Sequence
from typing import Any, Union

import numpy as np

from input_pipelines import image_io
from input_pipelines.image_io import IMAGE_EXTENSIONS
from input_pipelines.sources import VIDEO_EXTENSIONS, Source, natural_key, _Windowed, _WindowIndex

__all__ = ["PtsError", "parse_pts", "read_pts", "held_out_ids", "split_ids", "VW300Source", "NUM_TEST_VIDEOS"]

PathLike = Union[str, os.PathLike]
NUM_TEST_VIDEOS = 9  # CFMD: 83 training + 9 test videos
SPLITS = ("train", "val", "test")


class PtsError(ValueError):
    """A malformed ``.pts`` landmark file (the message names the file, the line and the problem)."""


_HEADER = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$")


def parse_pts(text: str, *, source: str = "<string>", expected_points: int | None = None) -> np.ndarray:
    """Points ``[n, 2]`` (x, y) float32 from the text of an iBUG ``.pts`` file.

    Accepts the standard form (``version: 1``, ``n_points: 68``, ``{``, one ``x y`` per line, ``}``),
    a bare list of ``x y`` lines, Windows line ends, a UTF-8 BOM, ``//`` / ``#`` comments and blank
    lines. Raises :class:`PtsError` naming ``source`` and the line for: non-numeric or non-finite
    values, a line without exactly two numbers, a missing ``}``, text after ``}``, a point count
    different from ``n_points`` (or ``expected_points``), or no points at all.
    """
    text = text.lstrip("\ufeff")
    declared: int | None = None
    points: list[tuple[float, float]] = []
    state = "header"  # header -> body ({ seen) -> done (} seen); 'bare' = no braces
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = re.split(r"//|#", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        where = f"{source}, line {lineno}"
        if state == "done":
            raise PtsError(f"{where}: unexpected text after the closing '}}': {raw.strip()!r}")
        if line == "{":
            if state != "header":
                raise PtsError(f"{where}: unexpected '{{' (the point list is already open)")
            state = "body"
            continue
        if line == "}":
            if state != "body":
                raise PtsError(f"{where}: '}}' without an opening '{{'")
            state = "done"
            continue
        m = _HEADER.match(line)
        if m and state == "header":
            key, value = m.group(1).lower(), m.group(2)
            if key == "n_points":
                try:
                    declared = int(value)
                except ValueError:
                    raise PtsError(f"{where}: n_points must be an integer, got {value!r}") from None
                if declared < 1:
                    raise PtsError(f"{where}: n_points must be >= 1, got {declared}")
            continue  # version and other header fields are ignored
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
            raise PtsError(f"{where}: expected two numbers 'x y', got {raw.strip()!r}")
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise PtsError(f"{where}: not a number in {raw.strip()!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise PtsError(f"{where}: non-finite coordinate in {raw.strip()!r}")
        if state == "header":
            state = "bare"
        points.append((x, y))
    if state == "body":
        raise PtsError(f"{source}: the point list is not closed with '}}' (file truncated?)")
    if not points:
        raise PtsError(f"{source}: no points found (empty or header-only .pts file)")
    if declared is not None and declared != len(points):
        raise PtsError(f"{source}: n_points says {declared} but the file lists {len(points)} points")
    if expected_points is not None and len(points) != expected_points:
        raise PtsError(f"{source}: expected {expected_points} points, the file has {len(points)}")
    return np.asarray(points, np.float32)


def read_pts(path: PathLike, *, expected_points: int | None = 68) -> np.ndarray:
    """Read one ``.pts`` file: ``[n, 2]`` (x, y) float32 (see :func:`parse_pts`)."""
    p = pathlib.Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"landmark file {p} does not exist") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PtsError(f"{p}: not a text file (cannot decode as UTF-8); is it really a .pts file?") from None
    return parse_pts(text, source=str(p), expected_points=expected_points)


def held_out_ids(ids: Sequence[str], num_test: int) -> list[str]:
    """The deterministic held-out rule: sort ``ids`` naturally, take positions
    ``floor((k + 0.5) * n / num_test)`` for ``k = 0 .. num_test - 1`` (evenly spread, never the ends
    unless ``n`` is small). ``num_test >= n`` holds everything out."""
    ordered = sorted({str(i) for i in ids}, key=natural_key)
    n = len(ordered)
    if num_test <= 0:
        return []
    if num_test >= n:
        return ordered
    return [ordered[int(math.floor((k + 0.5) * n / num_test))] for k in range(num_test)]


def split_ids(ids: Sequence[str], split: str, *, test_ids: Sequence[str] | None = None, num_test: int = NUM_TEST_VIDEOS) -> list[str]:
    """The ids of ``split`` (``'train'``; ``'val'`` / ``'test'`` = held out), naturally sorted."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ordered = sorted({str(i) for i in ids}, key=natural_key)
    if test_ids is not None:
        held = [str(t) for t in test_ids]
        unknown = sorted(set(held) - set(ordered))
        if unknown:
            raise ValueError(f"test_ids {unknown} are not among the videos found ({len(ordered)}: {ordered[:8]} ...)")
    else:
        held = held_out_ids(ordered, num_test)
    held_set = set(held)
    return [i for i in ordered if (i in held_set) == (split != "train")]


class _VideoEntry:
    """One 300VW video: where its frames and annotations are and how many usable frames it has."""

    def __init__(self, video_id: str, frames: Any, pts: list[str], num_frames: int):
        self.video_id = video_id
        self.frames = frames  # VideoInfo (a video file) or a list of image paths
        self.pts = pts
        self.num_frames = num_frames


class VW300Source(_Windowed, Source):
    """Windows of ``window`` consecutive frames of 300VW videos, with their 68 landmarks.

    Record: ``frames [window, H, W, 3]`` float32 in [0, 1], ``landmarks [window, 68, 2]`` (x, y,
    0-based pixel centres), ``video_index`` (index into :attr:`video_ids`), ``start`` (0-based).

    Args:
      root: the folder holding one sub-folder per video.
      split: ``'train'``, or ``'val'`` / ``'test'`` (the held-out videos; see the module docstring).
      window, stride: window length (CFMD: up to 13 frames) and the step between window starts.
      test_ids: the held-out video ids (folder names); ``None`` uses :func:`held_out_ids`.
      num_test: how many videos the rule holds out (9, as in CFMD).
      video_ids: restrict to these videos before splitting.
      pts_origin: subtracted from the ``.pts`` coordinates (1 for 300VW's 1-based coordinates).
      on_error: ``'skip'`` leaves out videos without frames or annotations (with a warning);
        ``'raise'`` stops with the list.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        split: str = "train",
        window: int = 13,
        stride: int = 1,
        test_ids: Sequence[str] | None = None,
        num_test: int = NUM_TEST_VIDEOS,
        video_ids: Sequence[str] | None = None,
        pts_origin: float = 1.0,
        on_error: str = "skip",
    ):
        base = pathlib.Path(root).expanduser()
        if not base.is_dir():
            raise FileNotFoundError(
                f"300VW folder {base} does not exist; it should hold one folder per video "
                "(<id>/vid.avi or <id>/frames/*.png, plus <id>/annot/*.pts)"
            )
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.root, self.on_error, self.pts_origin = str(base), on_error, float(pts_origin)
        self.read_failures: dict[int, str] = {}
        all_ids = sorted((d.name for d in base.iterdir() if d.is_dir()), key=natural_key)
        if video_ids is not None:
            missing = sorted(set(map(str, video_ids)) - set(all_ids))
            if missing:
                raise FileNotFoundError(f"300VW folder {base}: videos not found: {missing}")
            all_ids = [i for i in all_ids if i in set(map(str, video_ids))]
        if not all_ids:
            raise FileNotFoundError(f"300VW folder {base} has no video folders")
        ids = split_ids(all_ids, split, test_ids=test_ids, num_test=num_test)
        entries, failures = [], []
        for vid in ids:
            try:
                entries.append(self._index_video(base / vid))
            except (FileNotFoundError, ValueError) as exc:
                failures.append((vid, str(exc)))
        if failures:
            listed = "\n".join(f"  {v}: {why}" for v, why in failures[:5])
            if on_error == "raise":
                raise FileNotFoundError(f"300VW folder {base}: {len(failures)} unusable video(s):\n{listed}")
            warnings.warn(f"300VW folder {base}: skipped {len(failures)} unusable video(s):\n{listed}", stacklevel=2)
        if not entries:
            raise FileNotFoundError(f"300VW folder {base}: no usable video in split {split!r}")
        self.split = split
        self.entries = entries
        self.video_ids = [e.video_id for e in entries]
        self.skipped = failures
        self._windows = _WindowIndex([e.num_frames for e in entries], window, stride)
        if len(self._windows) == 0:
            raise ValueError(f"300VW folder {base}: no video of split {split!r} has {window} annotated frames")

    @staticmethod
    def _index_video(folder: pathlib.Path) -> _VideoEntry:
        annot = folder / "annot"
        if not annot.is_dir():
            raise FileNotFoundError(f"no annotation folder {annot}")
        pts = sorted((p.name for p in annot.iterdir() if p.suffix.lower() == ".pts"), key=natural_key)
        if not pts:
            raise FileNotFoundError(f"no .pts files in {annot}")
        pts = [str(annot / p) for p in pts]
        videos = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS),
            key=lambda p: (p.stem != "vid", natural_key(p.name)),
        )
        if videos:
            from input_pipelines import video_io

            info = video_io.probe_video(videos[0])
            frames: Any = info
            n = info.num_frames
        else:
            img_dir = folder / "frames" if (folder / "frames").is_dir() else folder
            images = sorted(
                (p.name for p in img_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                key=natural_key,
            )
            if not images:
                raise FileNotFoundError(f"no video file ({', '.join(VIDEO_EXTENSIONS)}) and no frame images in {folder}")
            frames = [str(img_dir / f) for f in images]
            n = len(frames)
        if n != len(pts):
            warnings.warn(
                f"300VW video {folder.name}: {n} frames but {len(pts)} annotation files; using the first "
                f"{min(n, len(pts))}",
                stacklevel=3,
            )
        return _VideoEntry(folder.name, frames, pts, min(n, len(pts)))

    def describe(self, index: int) -> str:
        v, s = self.locate(index)
        return f"300VW {self.entries[v].video_id} frames {s + 1}..{s + self.window} (1-based)"

    def landmarks(self, video: int, start: int, count: int) -> np.ndarray:
        """``[count, 68, 2]`` landmarks of frames ``start .. start + count - 1`` of video ``video``."""
        e = self.entries[video]
        pts = np.stack([read_pts(p, expected_points=68) for p in e.pts[start : start + count]])
        return (pts - np.float32(self.pts_origin)).astype(np.float32)

    def _load(self, index: int) -> dict[str, np.ndarray]:
        v, s = self._windows.locate(index)
        e = self.entries[v]
        w = self.window
        if isinstance(e.frames, list):
            frames = np.stack([image_io.read_image(p) for p in e.frames[s : s + w]])
        else:
            from input_pipelines import video_io

            frames = video_io.read_frames(e.frames.path, s, w, info=e.frames).astype(np.float32) / np.float32(255.0)
        return {
            "frames": frames.astype(np.float32),
            "landmarks": self.landmarks(v, s, w),
            "video_index": np.asarray(v, np.int32),
            "start": np.asarray(s, np.int32),
        }
