"""CFMD data: face videos with cached landmarks, a source mixture, and the ``cfmd_blur`` builder.

What CFMD adds to the generic sources and builders (``SOURCES`` / ``BUILDERS``, handed to the
engine by ``restore_jax.methods.cfmd.METHOD``; nothing registers on import):

* source ``face_video`` (:class:`FaceVideoSource`): windows of talking-head videos without landmark
  files (e.g. ``../shared/data/face_video/*.mp4``); 68 landmarks per frame come from the face-api
  landmark net, run **once per video** and cached as ``<cache_dir>/face_landmarks/<stem>-<hash>.npz``.
  ``cache_dir`` defaults to ``$RESTORE_JAX_CACHE`` or ``~/.cache/restore_jax`` and may never lie inside
  the videos' folder (shared data stays read-only). Without the face-api weights the source warns and
  yields windows without landmarks; ``cfmd_blur`` then keeps their time order (``reorder='none'``).
  Split: the held-out rule of :func:`input_pipelines.vw300.held_out_ids` on the file stems
  (``num_test=1``: of ``d0 d3 d11 d12 d18`` the clip ``d11`` is held out) or explicit ``test_ids``.
* source ``vw300``: :class:`input_pipelines.vw300.VW300Source`.
* source ``mixture`` (:class:`MixtureSource`): the concatenation of several sources (each repeated
  ``repeat`` times), e.g. synthetic motion sequences plus real face videos.
* builder ``cfmd_blur``: :func:`input_pipelines.builders.frame_average_blur` that falls back to
  ``reorder='none'`` (with a warning, once per process) for records without landmarks.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

from restore_jax.locations import shared_data
from input_pipelines.builders import BuilderSpec, Example, frame_average_blur
from input_pipelines.sources import VIDEO_EXTENSIONS, Source, VideoSource, _resolve_paths, make_source
from input_pipelines.vw300 import VW300Source, split_ids

__all__ = [
    "FaceVideoSource",
    "MixtureSource",
    "cfmd_blur",
    "default_cache_dir",
    "default_face_video_dir",
    "track_video_landmarks",
    "video_landmarks",
]

PathLike = Union[str, os.PathLike]
LANDMARK_CACHE_VERSION = 1


def default_face_video_dir() -> pathlib.Path:
    """``<shared>/data/face_video`` (:mod:`restore_jax.locations`)."""
    return shared_data("face_video")


def default_cache_dir() -> pathlib.Path:
    """``$RESTORE_JAX_CACHE``, else ``~/.cache/restore_jax``."""
    env = os.environ.get("RESTORE_JAX_CACHE")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "restore_jax"


def _file_digest(path: pathlib.Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def face_api_available(weights_dir: PathLike | None = None) -> bool:
    """Whether the face-api detector and 68-point landmark weights can be found."""
    from restore_jax.faces.weights import MODEL_FILES, _needed_files, resolve_weights_dir

    try:
        folder = resolve_weights_dir(weights_dir)
    except FileNotFoundError:
        return False
    stems = [MODEL_FILES["face_landmark_68"], MODEL_FILES["tiny_face_detector"]]
    return all((folder / f).is_file() for s in stems for f in _needed_files(s))


def track_video_landmarks(path: PathLike, nets=None, *, chunk: int = 32, log=None) -> np.ndarray:
    """68 landmarks ``[T, 68, 2]`` for every frame of a one-face video (0-based pixel centres).

    Frame 0 (and any frame where tracking looks lost) runs the face detector and the landmark net
    (:func:`restore_jax.faces.align.detect_faces`); other frames re-run the landmark net on the square
    around the previous frame's points (two refinement passes, :func:`landmarks_in_box`). face-api's
    coordinates have the origin at the pixel corner, so 0.5 is subtracted.
    """
    from input_pipelines import video_io
    from restore_jax.faces.align import FaceNets, detect_faces, landmarks_in_box

    nets = nets or FaceNets.from_face_api()
    info = video_io.probe_video(path)
    out = np.zeros((info.num_frames, 68, 2), np.float64)
    prev = None
    redetections = 0
    for start in range(0, info.num_frames, chunk):
        count = min(chunk, info.num_frames - start)
        frames = video_io.read_frames(path, start, count, info=info)
        for j, frame in enumerate(frames):
            lms = None
            if prev is not None:
                lo, hi = prev.min(0), prev.max(0)
                cx, cy = (lo + hi) / 2
                side = 1.05 * max(hi - lo)
                box = np.array([[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]])
                lms = landmarks_in_box(frame, box, nets.landmarks)[0]
                ext = lms.max(0) - lms.min(0)
                if not np.all(np.isfinite(lms)) or min(ext) < 0.05 * min(frame.shape[:2]):
                    lms = None
            if lms is None:
                boxes, _, found = detect_faces(frame, nets)
                redetections += 1
                if len(found) == 0:
                    if prev is None:
                        raise ValueError(f"{path}: no face found in frame {start + j}; cannot start landmark tracking")
                    lms = prev  # keep the last good points for a frame without a detection
                else:
                    lms = found[0]
            out[start + j] = lms
            prev = lms
    if log is not None:
        log(f"landmarks for {path}: {info.num_frames} frames, {redetections} detector runs")
    return (out - 0.5).astype(np.float32)


def video_landmarks(
    path: PathLike,
    *,
    cache_dir: PathLike | None = None,
    weights_dir: PathLike | None = None,
    nets=None,
    log=print,
) -> np.ndarray:
    """Cached :func:`track_video_landmarks` of ``path`` (computed once, then read from the cache).

    The cache file is ``<cache_dir>/face_landmarks/<stem>-<sha1 of the video>.npz``; a cache folder
    inside the video's own folder is refused (data folders such as ``../shared`` stay untouched).
    """
    path = pathlib.Path(path)
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache_res, video_dir = cache.resolve(), path.parent.resolve()
    if cache_res == video_dir or video_dir in cache_res.parents:
        raise ValueError(
            f"landmark cache {cache} lies inside the video folder {path.parent}; choose a cache_dir outside "
            "the data folder (e.g. ~/.cache/restore_jax or the run's workdir)"
        )
    file = cache / "face_landmarks" / f"{path.stem}-{_file_digest(path)}.npz"
    if file.is_file():
        with np.load(file, allow_pickle=False) as z:
            if int(z["version"]) == LANDMARK_CACHE_VERSION:
                return np.asarray(z["landmarks"], np.float32)
    if nets is None:
        from restore_jax.faces.align import FaceNets

        nets = FaceNets.from_face_api(weights_dir)
    if log is not None:
        log(f"computing face landmarks for {path} (once; cached in {file.parent})")
    lms = track_video_landmarks(path, nets, log=log)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, landmarks=lms, version=np.int32(LANDMARK_CACHE_VERSION), source=np.asarray(path.name))
    os.replace(tmp, file)
    return lms


class FaceVideoSource(Source):
    """Windows of face videos with per-frame landmarks from the cached face-api tracker.

    Record: ``frames [window, H, W, 3]``, ``landmarks [window, 68, 2]`` (absent without the face-api
    weights when ``landmarks='auto'``), ``video_index``, ``start``.

    Args:
      paths: folder / glob / file list of videos (default ``../shared/data/face_video``).
      split: ``'train'`` or ``'val'`` / ``'test'`` (held out by :func:`input_pipelines.vw300.split_ids`
        on the file stems: ``test_ids`` or ``num_test`` evenly spread clips).
      window, stride: as :class:`input_pipelines.sources.VideoSource`.
      landmarks: ``'auto'`` (compute when the weights exist, else warn and go without), ``'require'``
        (error without weights) or ``'none'``.
      cache_dir, weights_dir: landmark cache folder and face-api weights folder.
    """

    def __init__(
        self,
        paths: PathLike | Sequence[PathLike] | None = None,
        *,
        split: str = "train",
        window: int = 13,
        stride: int = 1,
        test_ids: Sequence[str] | None = None,
        num_test: int = 1,
        landmarks: str = "auto",
        cache_dir: PathLike | None = None,
        weights_dir: PathLike | None = None,
        on_error: str = "skip",
    ):
        if landmarks not in ("auto", "require", "none"):
            raise ValueError(f"landmarks must be 'auto', 'require' or 'none', got {landmarks!r}")
        files = _resolve_paths(paths if paths else default_face_video_dir(), VIDEO_EXTENSIONS, "video")
        stems = {pathlib.Path(f).stem: f for f in files}
        if len(stems) != len(files):
            raise ValueError(f"face videos {paths}: two files share a name stem; split ids need unique stems")
        chosen = split_ids(list(stems), split, test_ids=test_ids, num_test=num_test)
        if not chosen:
            raise ValueError(f"face videos {paths}: split {split!r} is empty ({len(files)} videos, num_test={num_test})")
        self.video = VideoSource([stems[s] for s in chosen], window=window, stride=stride, on_error=on_error)
        self.on_error = self.video.on_error
        self.read_failures: dict[int, str] = {}
        self.split, self.stems = split, [pathlib.Path(i.path).stem for i in self.video.infos]
        self.landmarks: list[np.ndarray] | None = None
        use = landmarks == "require" or (landmarks == "auto" and face_api_available(weights_dir))
        if landmarks == "auto" and not use:
            warnings.warn(
                "face-api weights not found: face videos are used without landmarks, so their frames keep "
                "the time order (reorder='none') and the whole frame is the crop box. Provide the weights "
                "(see docs/faces.md) for FMR ordering.",
                stacklevel=2,
            )
        if use:
            lms = []
            for info in self.video.infos:
                arr = video_landmarks(info.path, cache_dir=cache_dir, weights_dir=weights_dir)
                if arr.shape != (info.num_frames, 68, 2):
                    raise ValueError(
                        f"landmark cache for {info.path} has shape {arr.shape}, expected ({info.num_frames}, 68, 2); "
                        "delete the cache file to recompute"
                    )
                lms.append(arr)
            self.landmarks = lms

    def __len__(self) -> int:
        return len(self.video)

    def describe(self, index: int) -> str:
        return self.video.describe(index)

    def _load(self, index: int) -> dict[str, np.ndarray]:
        rec = self.video._load(index)
        if self.landmarks is not None:
            v, s = int(rec["video_index"]), int(rec["start"])
            rec["landmarks"] = self.landmarks[v][s : s + self.video.window]
        return rec


class MixtureSource(Source):
    """Concatenation of several sources, each repeated ``repeat`` times (a weighting knob).

    ``parts``: ``[{'name': ..., 'kwargs': {...}, 'splits': {...}, 'repeat': 1}, ...]`` (the
    :func:`input_pipelines.sources.make_source` format plus ``repeat``). Records keep ``frames`` and,
    when present, ``landmarks``; provenance is normalised to ``index`` (the mixture index) and
    ``clip_index`` (the part) so that examples from different parts batch together.
    """

    def __init__(self, parts: Sequence[Mapping[str, Any]], *, split: str | None = None, on_error: str | None = None):
        if not parts:
            raise ValueError("mixture source needs at least one part")
        self.parts: list[Source] = []
        repeats = []
        for i, p in enumerate(parts):
            p = dict(p)
            rep = int(p.pop("repeat", 1))
            if rep < 1:
                raise ValueError(f"mixture part {i} ({p.get('name')}): repeat must be >= 1, got {rep}")
            self.parts.append(make_source(p, split=split, on_error=on_error, sources=SOURCES))
            repeats.append(rep)
        self.repeats = repeats
        sizes = [len(s) * r for s, r in zip(self.parts, repeats)]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.on_error = "raise"  # each part handles its own unreadable files
        self.read_failures: dict[int, str] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(part, index within the part)`` of mixture record ``index``."""
        index = self._check_index(index)
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return part, int(index - self.offsets[part]) % len(self.parts[part])

    def describe(self, index: int) -> str:
        part, j = self.locate(index)
        return f"mixture part {part}: {self.parts[part].describe(j)}"

    def _load(self, index: int) -> dict[str, np.ndarray]:
        part, j = self.locate(index)
        rec = self.parts[part][j]
        out = {"frames": rec["frames"], "index": np.asarray(index, np.int64), "clip_index": np.asarray(part, np.int32)}
        if "landmarks" in rec:
            out["landmarks"] = rec["landmarks"]
        return out


_WARNED_NO_LANDMARKS = False


def cfmd_blur(record: Mapping[str, np.ndarray], rng: np.random.Generator, *, reorder: str = "fmr", **kwargs: Any) -> Example:
    """:func:`frame_average_blur` (same arguments and keys) that keeps the time order, with a warning
    once per process, for records without ``landmarks`` when ``reorder='fmr'``."""
    global _WARNED_NO_LANDMARKS
    if reorder == "fmr" and record.get("landmarks") is None:
        if not _WARNED_NO_LANDMARKS:
            warnings.warn("cfmd_blur: a record has no landmarks; its frames keep the time order (reorder='none')")
            _WARNED_NO_LANDMARKS = True
        reorder = "none"
    return frame_average_blur(record, rng, reorder=reorder, **kwargs)


#: The sources and builder CFMD adds to the generic ones (``Method.sources`` / ``Method.builders``).
SOURCES: dict[str, Any] = {"vw300": VW300Source, "face_video": FaceVideoSource, "mixture": MixtureSource}
BUILDERS: dict[str, BuilderSpec] = {"cfmd_blur": BuilderSpec(cfmd_blur, 1, "sequence")}
