"""Random-access data sources: ``len(src)`` and ``src[i] -> dict[str, np.ndarray]``, picklable.

Every source returns float32 images in ``[0, 1]`` (the rules of :mod:`input_pipelines.image_io`)
and a few int32/int64 bookkeeping scalars; no strings, so records batch and cross process
boundaries cheaply. Keys:

=====================  ====================================================================
source (registry name)  record
=====================  ====================================================================
``image_folder``        ``image [H, W, 3]``, ``index`` (+ ``identity_id`` with ``labels='parent'``)
``identity_folder``     ``images [G, H, W, 3]`` (target first, then G-1 others of its folder),
                        ``identity_id``, ``index``
``video``               ``frames [N, H, W, 3]``, ``video_index``, ``start``
``frame_folder``        ``frames [N, H, W, 3]``, ``clip_index``, ``start``
``vimeo_septuplet``     ``frames [7, H, W, 3]``, ``index``
``tfds``                ``image [H, W, 3]`` (or ``frames`` for a video feature), ``index``, extra keys
``arrayrecord``         whatever was written (see :mod:`input_pipelines.arrayrecord`)
``synthetic_faces``     depends on ``mode`` (see :class:`SyntheticFacesSource`)
=====================  ====================================================================

Unreadable files and ``on_error``: ``'raise'`` stops with an error naming the files and the fix;
``'skip'`` drops files that fail the check done when the source is built (``validate``) and warns
with a few names; a file that passes that check but whose content fails to decode later is
replaced by the next readable item (index ``i + 1``, ``i + 2``, ... modulo the length). Both
decisions depend only on the file contents, never on timing or worker count, so samples stay a
pure function of the index. I/O errors (``OSError``: the file cannot be read at all, maybe
transiently) are never skipped: they propagate.
"""

from __future__ import annotations

import glob
import inspect
import os
import pathlib
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np

from input_pipelines import image_io
from input_pipelines.image_io import IMAGE_EXTENSIONS, ImageReadError

__all__ = [
    "Source",
    "ImageFolderSource",
    "IdentityFolderSource",
    "VideoSource",
    "FrameFolderSource",
    "VimeoSeptupletSource",
    "TFDSSource",
    "ArrayRecordSource",
    "SyntheticFacesSource",
    "SOURCES",
    "make_source",
    "natural_key",
]

PathLike = Union[str, os.PathLike]
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
_ON_ERROR = ("skip", "raise")
_MAX_LISTED = 5


def _check_on_error(on_error: str) -> str:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    return on_error


def natural_key(text: str) -> list:
    """Sort key with digit runs compared as numbers (``frame2`` before ``frame10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _list_files(root: pathlib.Path, extensions: Sequence[str], recursive: bool) -> list[str]:
    """Relative POSIX paths of files under ``root`` with the given suffixes, naturally sorted."""
    exts = tuple(e.lower() for e in extensions)
    it = root.rglob("*") if recursive else root.iterdir()
    rel = [p.relative_to(root).as_posix() for p in it if p.is_file() and p.suffix.lower() in exts]
    return sorted(rel, key=natural_key)


def _format_failures(failures: Sequence[tuple[str, str]]) -> str:
    lines = [f"  {p}: {why}" for p, why in failures[:_MAX_LISTED]]
    if len(failures) > _MAX_LISTED:
        lines.append(f"  ... and {len(failures) - _MAX_LISTED} more")
    return "\n".join(lines)


def _handle_index_failures(kind: str, root: Any, failures: list[tuple[str, str]], on_error: str) -> None:
    if not failures:
        return
    if on_error == "raise":
        raise ImageReadError(
            f"{kind} {root}: {len(failures)} unreadable file(s):\n{_format_failures(failures)}\n"
            "Fix or remove them, or set on_error='skip' to leave them out."
        )
    warnings.warn(
        f"{kind} {root}: skipped {len(failures)} unreadable file(s):\n{_format_failures(failures)}",
        stacklevel=3,
    )


class Source:
    """Base class: a finite, random-access, picklable sequence of records (dicts of arrays)."""

    #: Records whose decode failed after indexing and were replaced (this process only).
    read_failures: dict[int, str]
    on_error: str = "raise"

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, index: int) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """Human-readable provenance of record ``index`` (file name, window...)."""
        return f"{type(self).__name__}[{index}]"

    def _check_index(self, index: int) -> int:
        n = len(self)
        index = int(index)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {n} records")
        return index % n

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = self._check_index(index)
        if self.on_error == "raise":
            return self._load(index)
        n = len(self)
        first_error = None
        for k in range(n):
            j = (index + k) % n
            try:
                return self._load(j)
            except ValueError as exc:  # bad content (ImageReadError, VideoReadError); never I/O errors
                if not hasattr(self, "read_failures"):
                    self.read_failures = {}
                if j not in self.read_failures:
                    self.read_failures[j] = str(exc)
                    warnings.warn(f"{self.describe(j)} could not be read and is replaced by the next record: {exc}")
                first_error = first_error or exc
        raise ImageReadError(f"{type(self).__name__}: no record could be read (first error: {first_error})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)})"


# ----------------------------------------------------------------------------------------------
# Image folders


class ImageFolderSource(Source):
    """All PNG / JPEG / WebP images under a folder (recursive), naturally sorted by relative path.

    Args:
      root: the folder. ``subdir``: an optional sub-folder (e.g. per split: ``'train'``).
      extensions / recursive: which files count as images.
      background: colour that transparent pixels are composited on (default white).
      on_error: ``'skip'`` or ``'raise'`` (see the module docstring).
      validate: check done on every file when the source is built: ``'header'`` (open + verify,
        cheap), ``'decode'`` (full decode, catches everything) or ``'none'``.
      labels: ``'parent'`` adds ``identity_id`` = index of the file's parent folder (sorted), the
        CelebA / VGGFace layout ``<identity>/<image>``.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        subdir: str | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        recursive: bool = True,
        background: image_io.Background = "white",
        on_error: str = "skip",
        validate: str = "header",
        labels: str | None = None,
    ):
        base = pathlib.Path(root)
        if subdir:
            base = base / subdir
        if not base.is_dir():
            raise FileNotFoundError(f"image folder {base} does not exist or is not a folder")
        self.root = str(base)
        self.on_error = _check_on_error(on_error)
        self.background = tuple(float(v) for v in image_io.parse_background(background))
        if labels not in (None, "parent"):
            raise ValueError(f"labels must be None or 'parent', got {labels!r}")
        self.labels = labels
        files = _list_files(base, extensions, recursive)
        if not files:
            raise FileNotFoundError(f"no images with extensions {tuple(extensions)} found under {base}")
        failures = []
        kept = []
        for rel in files:
            try:
                image_io.check_image_file(base / rel, level=validate)
                kept.append(rel)
            except ImageReadError as exc:
                failures.append((rel, str(exc).split(": ", 1)[-1]))
        _handle_index_failures("image folder", base, failures, self.on_error)
        if not kept:
            raise ImageReadError(f"image folder {base}: none of the {len(files)} files is readable")
        self.files = kept
        #: Files left out when the source was built: ``[(relative path, reason)]``.
        self.skipped = failures
        self.read_failures = {}
        if labels == "parent":
            parents = [str(pathlib.PurePosixPath(f).parent) for f in kept]
            names = sorted(set(parents), key=natural_key)
            lookup = {n: i for i, n in enumerate(names)}
            self.identity_names = names
            self.identity_ids = np.asarray([lookup[p] for p in parents], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return os.path.join(self.root, self.files[self._check_index(index)])

    def describe(self, index: int) -> str:
        return self.path(index)

    def _read(self, index: int) -> np.ndarray:
        return image_io.read_image(os.path.join(self.root, self.files[index]), background=self.background)

    def _load(self, index: int) -> dict[str, np.ndarray]:
        rec = {"image": self._read(index), "index": np.asarray(index, np.int64)}
        if self.labels == "parent":
            rec["identity_id"] = np.asarray(self.identity_ids[index], np.int32)
        return rec


class IdentityFolderSource(ImageFolderSource):
    """Groups of images of one identity from a ``<identity>/<image>`` folder.

    Record ``i`` holds image ``i`` (the target) followed by the ``group_size - 1`` next images of the
    same folder in sorted order, wrapping around (a deterministic choice, so the record is a pure
    function of ``i``; the builders pick randomly among them when they need fewer). Folders with
    fewer than ``group_size`` images repeat images cyclically. All images of a group must share
    one size.
    """

    def __init__(self, root: PathLike, *, group_size: int = 2, **kwargs: Any):
        kwargs["labels"] = "parent"
        super().__init__(root, **kwargs)
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = int(group_size)
        members: dict[int, list[int]] = {}
        for i, ident in enumerate(self.identity_ids):
            members.setdefault(int(ident), []).append(i)
        self._members = members

    def _load(self, index: int) -> dict[str, np.ndarray]:
        ident = int(self.identity_ids[index])
        group = self._members[ident]
        pos = group.index(index)
        chosen = [group[(pos + k) % len(group)] for k in range(self.group_size)]
        images = [self._read(j) for j in chosen]
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise ImageReadError(
                f"identity folder {self.root}: images of identity {self.identity_names[ident]!r} have "
                f"different sizes {sorted(shapes)}; resize them to one size first"
            )
        return {"images": np.stack(images), "identity_id": np.asarray(ident, np.int32), "index": np.asarray(index, np.int64)}


# ----------------------------------------------------------------------------------------------
# Videos and frame folders


class _WindowIndex:
    """Maps a flat index to (clip, start) for windows of ``window`` frames with a given stride."""

    def __init__(self, lengths: Sequence[int], window: int, stride: int):
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
        counts = [max(0, (n - window) // stride + 1) for n in lengths]
        self.window, self.stride = int(window), int(stride)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        clip = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return clip, int(index - self.offsets[clip]) * self.stride


class _Windowed:
    """Mixin for sources whose records are frame windows: ``self._windows`` is a :class:`_WindowIndex`."""

    _windows: _WindowIndex

    @property
    def window(self) -> int:
        return self._windows.window

    def __len__(self) -> int:
        return len(self._windows)

    def locate(self, index: int) -> tuple[int, int]:
        """``(clip index, first frame)`` of record ``index``."""
        return self._windows.locate(self._check_index(index))


class VideoSource(_Windowed, Source):
    """Windows of ``window`` consecutive frames from video files (MP4, MOV, MKV, AVI, WebM).

    Frame counts and timestamps are read once here (:func:`input_pipelines.video_io.probe_video`,
    demux only); record ``i`` is window ``(video, start)``, ``start`` stepping by ``stride``, and is
    decoded by seeking to the key frame before ``start``. Files are sorted by name.

    Args:
      paths: a folder (searched recursively), a glob pattern, a file, or a list of files.
    """

    def __init__(
        self,
        paths: Union[PathLike, Sequence[PathLike]],
        *,
        window: int = 1,
        stride: int = 1,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        on_error: str = "skip",
    ):
        from input_pipelines import video_io

        self.on_error = _check_on_error(on_error)
        files = _resolve_paths(paths, extensions, "video")
        infos, failures = [], []
        for f in files:
            try:
                infos.append(video_io.probe_video(f))
            except video_io.VideoReadError as exc:
                failures.append((f, str(exc).split(": ", 1)[-1]))
        _handle_index_failures("videos", paths, failures, self.on_error)
        self.infos = infos
        self.skipped = failures
        self.read_failures = {}
        self._windows = _WindowIndex([i.num_frames for i in infos], window, stride)
        if len(self._windows) == 0:
            raise ValueError(
                f"videos {paths}: no video has {window} frames (lengths: {[i.num_frames for i in infos]}); "
                "use a shorter window"
            )

    def describe(self, index: int) -> str:
        v, s = self.locate(index)
        return f"{self.infos[v].path} frames {s}..{s + self.window - 1}"

    def _load(self, index: int) -> dict[str, np.ndarray]:
        from input_pipelines import video_io

        v, s = self._windows.locate(index)
        frames = video_io.read_frames(self.infos[v].path, s, self.window, info=self.infos[v])
        return {
            "frames": (frames.astype(np.float32) / np.float32(255.0)),
            "video_index": np.asarray(v, np.int32),
            "start": np.asarray(s, np.int32),
        }


def _resolve_paths(paths: Union[PathLike, Sequence[PathLike]], extensions: Sequence[str], what: str) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        p = pathlib.Path(paths)
        if p.is_dir():
            files = [str(p / f) for f in _list_files(p, extensions, True)]
        elif p.is_file():
            files = [str(p)]
        else:
            files = sorted(glob.glob(str(paths), recursive=True), key=natural_key)
    else:
        files = [os.fspath(f) for f in paths]
    if not files:
        raise FileNotFoundError(f"no {what} files found at {paths!r}")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"{what} files not found: {missing[:_MAX_LISTED]}")
    return files


class _FrameReader(Source):
    """Shared reading of frame-file lists with the image conversion rules."""

    background: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def _read_frames(self, paths: Sequence[str]) -> np.ndarray:
        frames = [image_io.read_image(p, background=self.background) for p in paths]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise ImageReadError(f"frames {paths[0]} ... have different sizes {sorted(shapes)}")
        return np.stack(frames)


class FrameFolderSource(_Windowed, _FrameReader):
    """Windows of consecutive frames from a Vid4-like layout ``root/<clip>/<frame>.png``.

    Frames are ordered by natural sort of their names (``2.png`` before ``10.png``). If ``root``
    itself holds images (and no clip folders do), it is one clip. ``clips`` restricts to named clips.
    Missing or unreadable frames follow ``on_error`` when read (no upfront check: ``validate``
    ``'header'`` checks every frame file when the source is built).
    """

    def __init__(
        self,
        root: PathLike,
        *,
        window: int = 1,
        stride: int = 1,
        clips: Sequence[str] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        background: image_io.Background = "white",
        on_error: str = "skip",
        validate: str = "none",
    ):
        base = pathlib.Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"frame folder {base} does not exist or is not a folder")
        self.root = str(base)
        self.on_error = _check_on_error(on_error)
        self.background = tuple(float(v) for v in image_io.parse_background(background))
        sub = sorted((d.name for d in base.iterdir() if d.is_dir()), key=natural_key)
        if clips is not None:
            sub = [c for c in sub if c in set(clips)]
            missing = set(clips) - set(sub)
            if missing:
                raise FileNotFoundError(f"frame folder {base}: clips not found: {sorted(missing)}")
        clip_frames = [(c, _list_files(base / c, extensions, False)) for c in sub]
        clip_frames = [(c, f) for c, f in clip_frames if f]
        if not clip_frames:
            own = _list_files(base, extensions, False)
            if not own:
                raise FileNotFoundError(f"frame folder {base}: no clip folders with frames and no frames in it")
            clip_frames = [(".", own)]
        failures = []
        if validate != "none":
            for c, frames in clip_frames:
                for f in frames:
                    try:
                        image_io.check_image_file(base / c / f, level=validate)
                    except ImageReadError as exc:
                        failures.append((f"{c}/{f}", str(exc).split(": ", 1)[-1]))
            _handle_index_failures("frame folder", base, failures, self.on_error)
            bad = {f for f, _ in failures}
            clip_frames = [(c, [f for f in fr if f"{c}/{f}" not in bad]) for c, fr in clip_frames]
        self.clips = [c for c, _ in clip_frames]
        self.frames = [fr for _, fr in clip_frames]
        self.skipped = failures
        self.read_failures = {}
        self._windows = _WindowIndex([len(f) for f in self.frames], window, stride)
        if len(self._windows) == 0:
            raise ValueError(f"frame folder {base}: no clip has {window} frames; use a shorter window")

    def frame_paths(self, index: int) -> list[str]:
        c, s = self.locate(index)
        return [os.path.join(self.root, self.clips[c], f) for f in self.frames[c][s : s + self.window]]

    def describe(self, index: int) -> str:
        paths = self.frame_paths(index)
        return f"{paths[0]} .. {os.path.basename(paths[-1])}"

    def _load(self, index: int) -> dict[str, np.ndarray]:
        c, s = self._windows.locate(index)
        paths = [os.path.join(self.root, self.clips[c], f) for f in self.frames[c][s : s + self.window]]
        return {"frames": self._read_frames(paths), "clip_index": np.asarray(c, np.int32), "start": np.asarray(s, np.int32)}


class VimeoSeptupletSource(_FrameReader):
    """Vimeo-90K septuplets: ``root/sequences/<a>/<b>/im1.png .. im7.png`` listed in a list file.

    ``split``: ``'train'`` -> ``sep_trainlist.txt``, ``'test'`` -> ``sep_testlist.txt``,
    ``'test_fast' | 'test_medium' | 'test_slow'`` -> the motion-magnitude test lists when present
    (``fast_testset.txt`` / ``sep_fast_testset.txt`` / ``sep_testlist_fast.txt``, ...).
    ``list_file`` overrides the lookup. If ``root`` itself contains ``im1.png .. im7.png`` it is a
    single septuplet (e.g. the ``test_example`` folders shipped with some repositories).
    """

    LIST_FILES = {
        "train": ("sep_trainlist.txt",),
        "test": ("sep_testlist.txt",),
        "test_fast": ("fast_testset.txt", "sep_fast_testset.txt", "sep_testlist_fast.txt", "fast_testlist.txt"),
        "test_medium": ("medium_testset.txt", "sep_medium_testset.txt", "sep_testlist_medium.txt", "medium_testlist.txt"),
        "test_slow": ("slow_testset.txt", "sep_slow_testset.txt", "sep_testlist_slow.txt", "slow_testlist.txt"),
    }

    def __init__(
        self,
        root: PathLike,
        *,
        split: str = "train",
        list_file: PathLike | None = None,
        sequences_dir: str = "sequences",
        num_frames: int = 7,
        background: image_io.Background = "white",
        on_error: str = "skip",
    ):
        base = pathlib.Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"Vimeo-90K folder {base} does not exist or is not a folder")
        self.root = str(base)
        self.on_error = _check_on_error(on_error)
        self.background = tuple(float(v) for v in image_io.parse_background(background))
        self.num_frames = int(num_frames)
        self.split = split
        if (base / "im1.png").is_file():
            self.sequence_root = str(base)
            self.entries = ["."]
        else:
            if list_file is None:
                if split not in self.LIST_FILES:
                    raise ValueError(f"unknown Vimeo-90K split {split!r}; use one of {sorted(self.LIST_FILES)} or list_file=")
                found = [base / n for n in self.LIST_FILES[split] if (base / n).is_file()]
                if not found:
                    raise FileNotFoundError(
                        f"Vimeo-90K folder {base}: no list file for split {split!r} "
                        f"(looked for {', '.join(self.LIST_FILES[split])}); pass list_file="
                    )
                list_file = found[0]
            lines = pathlib.Path(list_file).read_text().splitlines()
            self.entries = [ln.strip() for ln in lines if ln.strip()]
            if not self.entries:
                raise ValueError(f"Vimeo-90K list file {list_file} is empty")
            self.sequence_root = str(base / sequences_dir)
            if not os.path.isdir(self.sequence_root):
                raise FileNotFoundError(f"Vimeo-90K folder {base}: no {sequences_dir}/ folder")
        self.read_failures = {}
        self.skipped = []

    def __len__(self) -> int:
        return len(self.entries)

    def frame_paths(self, index: int) -> list[str]:
        d = os.path.join(self.sequence_root, self.entries[self._check_index(index)])
        return [os.path.join(d, f"im{k}.png") for k in range(1, self.num_frames + 1)]

    def describe(self, index: int) -> str:
        return os.path.join(self.sequence_root, self.entries[self._check_index(index)])

    def _load(self, index: int) -> dict[str, np.ndarray]:
        return {"frames": self._read_frames(self.frame_paths(index)), "index": np.asarray(index, np.int64)}


# ----------------------------------------------------------------------------------------------
# TFDS, ArrayRecord


class TFDSSource(Source):
    """Adapter over ``tfds.data_source(name, split=..., data_dir=...)`` (ArrayRecord-backed TFDS).

    ``image_key``: the image (or video) feature; it is converted by the image rules and returned as
    ``image`` (``[H, W, 3]``) or ``frames`` (for ``[T, H, W, C]`` features). ``keys``: other
    numeric features passed through as arrays. Nothing is downloaded: the dataset must already be
    prepared under ``data_dir`` (``tfds build`` / ``download_and_prepare``).
    """

    def __init__(
        self,
        name: str,
        *,
        split: str = "train",
        data_dir: PathLike | None = None,
        image_key: str = "image",
        keys: Sequence[str] = (),
        background: image_io.Background = "white",
        on_error: str = "raise",
    ):
        import tensorflow_datasets as tfds

        self.name, self.split, self.image_key = name, split, image_key
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        self.keys = tuple(keys)
        self.on_error = _check_on_error(on_error)
        self.background = tuple(float(v) for v in image_io.parse_background(background))
        self.read_failures = {}
        try:
            self._ds = tfds.data_source(name, split=split, data_dir=self.data_dir, download=False)
        except Exception as exc:  # noqa: BLE001 - tfds raises many kinds; all mean "not prepared"
            raise FileNotFoundError(
                f"TFDS dataset {name!r} split {split!r} is not available under data_dir={self.data_dir!r} "
                f"({type(exc).__name__}: {exc}). Prepare it first (`tfds build {name} --data_dir=...`); "
                "nothing is downloaded at run time."
            ) from exc

    def __len__(self) -> int:
        return len(self._ds)

    def _load(self, index: int) -> dict[str, np.ndarray]:
        rec = self._ds[index]
        if self.image_key not in rec:
            raise KeyError(f"TFDS {self.name}: no feature {self.image_key!r}; features are {sorted(rec)}")
        img = np.asarray(rec[self.image_key])
        name = f"tfds:{self.name}/{self.split}[{index}]"
        out: dict[str, np.ndarray] = {"index": np.asarray(index, np.int64)}
        if img.ndim == 4:
            out["frames"] = np.stack([image_io.to_float_rgb(f, background=self.background, name=name) for f in img])
        else:
            out["image"] = image_io.to_float_rgb(img, background=self.background, name=name)
        for k in self.keys:
            out[k] = np.asarray(rec[k])
        return out


class ArrayRecordSource(Source):
    """Records written by :func:`input_pipelines.arrayrecord.write_arrayrecord`.

    ``paths``: an ``.array_record`` file, a folder of them, a glob, or a list. Each record is a dict of
    arrays; image arrays stored quantized (uint8 / uint16) come back as float32 in ``[0, 1]``.
    """

    def __init__(self, paths: Union[PathLike, Sequence[PathLike]], *, on_error: str = "raise"):
        from input_pipelines import arrayrecord

        self.paths = _resolve_paths(paths, (".array_record", ".arrayrecord"), "ArrayRecord")
        self.on_error = _check_on_error(on_error)
        self.read_failures = {}
        self._reader = arrayrecord.open_reader(self.paths)

    def __len__(self) -> int:
        return len(self._reader)

    def _load(self, index: int) -> dict[str, np.ndarray]:
        from input_pipelines import arrayrecord

        return arrayrecord.decode_record(self._reader[index])


# ----------------------------------------------------------------------------------------------
# Synthetic faces


class SyntheticFacesSource(Source):
    """Adapter over :class:`input_pipelines.synthetic_faces.SyntheticFaces` (procedural faces, no files).

    ``mode`` picks the kind of record (all numeric fields of the renderer's record are passed on;
    ``index`` is added):

    * ``'image'``: a still - ``image [S, S, 3]``, ``landmarks [68, 2]`` (x, y pixels), ``visibility``,
      ``pose [3]`` (yaw, pitch, roll, degrees), ``expression``, ``lighting``, ``identity``,
      ``identity_id``.
    * ``'sequence'``: ``num_frames`` frames of one continuous talking/moving head at ``fps`` -
      ``frames [T, S, S, 3]``, ``landmarks [T, 68, 2]``, ``poses [T, 3]``, ``expressions``,
      ``times`` ... (``motion_scale`` > 1 moves faster; ``drift`` > 0 adds straight-line head motion
      of that many head units per second within ``drift_angle`` degrees of the horizontal; a high ``fps`` gives smooth averaged blur).
    * ``'views'``: one moment seen by ``num_views`` cameras (yaw spread over +-``max_view_yaw``,
      view 0 the most frontal) - ``views [V, S, S, 3]``, ``poses [V, 3]``, ``landmarks [V, 68, 2]``.
    * ``'identity_set'``: ``set_size`` images of one person in varied pose, expression and light -
      ``images [K, S, S, 3]``, ``poses [K, 3]``, ``landmarks [K, 68, 2]``.

    ``num_examples`` sets the length (default: ``num_identities * 16``); identities cycle with the
    index (consecutive indices are different people). Each record is a pure function of
    ``(seed, split, index)``; splits have disjoint identities.
    """

    MODES = ("image", "sequence", "views", "identity_set")

    def __init__(
        self,
        *,
        size: int | Sequence[int] = 128,
        num_identities: int | None = None,
        num_examples: int | None = None,
        seed: int = 0,
        split: str = "train",
        mode: str = "image",
        num_frames: int = 7,
        fps: float = 30.0,
        motion_scale: float = 1.0,
        drift: float = 0.0,
        drift_angle: float = 180.0,
        num_views: int = 2,
        max_view_yaw: float = 60.0,
        set_size: int = 4,
        supersample: int = 1,
    ):
        from input_pipelines.synthetic_faces import SyntheticFaces
        from input_pipelines.synthetic_faces.dataset import DEFAULT_NUM_IDENTITIES

        if mode not in self.MODES:
            raise ValueError(f"synthetic_faces mode must be one of {self.MODES}, got {mode!r}")
        if split not in DEFAULT_NUM_IDENTITIES:
            raise ValueError(f"synthetic_faces split must be one of {sorted(DEFAULT_NUM_IDENTITIES)}, got {split!r}")
        n_ids = int(num_identities or DEFAULT_NUM_IDENTITIES[split])
        per_identity = 16 if num_examples is None else max(1, -(-int(num_examples) // n_ids))
        self.mode, self.split = mode, split
        self.num_frames, self.fps, self.motion_scale = int(num_frames), float(fps), float(motion_scale)
        self.drift, self.drift_angle = float(drift), float(drift_angle)
        self.num_views, self.max_view_yaw, self.set_size = int(num_views), float(max_view_yaw), int(set_size)
        self.on_error = "raise"
        self.read_failures = {}
        self._ds = SyntheticFaces(
            size=size, num_identities=n_ids, seed=int(seed), split=split, samples_per_identity=per_identity,
            supersample=int(supersample),
        )
        self.num_examples = len(self._ds) if num_examples is None else int(num_examples)
        if self.num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}")

    def __len__(self) -> int:
        return self.num_examples

    def describe(self, index: int) -> str:
        return f"{self._ds!r}[{index}] ({self.mode})"

    def _load(self, index: int) -> dict[str, np.ndarray]:
        ds = self._ds
        if self.mode == "image":
            rec = ds[index]
        elif self.mode == "sequence":
            rec = ds.sequence(
                index, self.num_frames, self.fps, motion_scale=self.motion_scale, drift=self.drift,
                drift_angle=self.drift_angle,
            )
        elif self.mode == "views":
            rec = dict(ds.views(index, self.num_views, max_yaw=self.max_view_yaw))
            rec["views"] = rec.pop("images")
        else:
            rec = ds.identity_set(index, self.set_size)
        out = _numeric_fields(rec)
        out["index"] = np.asarray(index, np.int64)
        return out


def _numeric_fields(rec: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Numeric / bool arrays of a record (floats as float32); strings and objects are dropped."""
    out = {}
    for k, v in rec.items():
        a = np.asarray(v)
        if a.dtype.kind in "biuf":
            out[k] = a.astype(np.float32) if a.dtype.kind == "f" else a
    return out


# ----------------------------------------------------------------------------------------------
# Registry


SOURCES: dict[str, Callable[..., Source]] = {
    "image_folder": ImageFolderSource,
    "identity_folder": IdentityFolderSource,
    "video": VideoSource,
    "frame_folder": FrameFolderSource,
    "vimeo_septuplet": VimeoSeptupletSource,
    "tfds": TFDSSource,
    "arrayrecord": ArrayRecordSource,
    "synthetic_faces": SyntheticFacesSource,
}


def accepted_args(factory: Any, skip: int = 0) -> tuple[set[str] | None, set[str]]:
    """(keyword arguments ``factory`` accepts after its first ``skip`` parameters, or ``None`` when it
    takes ``**kwargs``; the required ones). Used to pass ``split`` / ``on_error`` only to sources that
    take them, and to check a config's ``kwargs`` against a source's or builder's signature."""
    try:
        params = list(inspect.signature(factory).parameters.values())[skip:]
    except (TypeError, ValueError):
        return None, set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        accepted = None
    else:
        accepted = {p.name for p in params if p.kind in kinds}
    required = {p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty}
    return accepted, required


def make_source(
    config: Mapping[str, Any],
    *,
    split: str | None = None,
    on_error: str | None = None,
    sources: Mapping[str, Callable[..., Source]] | None = None,
) -> Source:
    """Build a source from ``{'name': ..., 'kwargs': {...}, 'splits': {split: {...overrides}}}``.

    ``name`` is looked up in ``sources`` (a method's own sources, ``Method.sources``), then in the
    generic :data:`SOURCES`.

    ``kwargs`` go to the constructor, updated by ``splits[split]`` when present. ``split`` is also
    passed to sources that take a ``split`` argument (TFDS, Vimeo-90K, synthetic faces) unless
    given explicitly; ``on_error`` likewise for sources that take one.
    """
    cfg = dict(config)
    name = cfg.get("name")
    table = {**SOURCES, **(sources or {})}
    if name not in table:
        raise ValueError(
            f"unknown source {name!r}; known sources: {sorted(table)} (a method adds its own through Method.sources)"
        )
    factory = table[name]
    kwargs = dict(cfg.get("kwargs") or {})
    splits = cfg.get("splits") or {}
    if split is not None and split in splits:
        kwargs.update(dict(splits[split] or {}))
    accepted, _ = accepted_args(factory)
    if split is not None and "split" not in kwargs and (accepted is None or "split" in accepted):
        kwargs["split"] = split
    if on_error is not None and "on_error" not in kwargs and (accepted is None or "on_error" in accepted):
        kwargs["on_error"] = on_error
    return factory(**kwargs)



