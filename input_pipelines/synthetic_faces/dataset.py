"""Random-access dataset of synthetic faces (the embedded default dataset).

``SyntheticFaces(size, num_identities, seed, split)`` maps an index to a record (a dict of NumPy
arrays). Everything is a pure function of ``(seed, split, index)``: no state, no files, picklable,
safe to use from many worker processes (Grain ``RandomAccessDataSource`` style: ``__len__`` and
``__getitem__``).

Identities: split ``s`` owns identity ids ``SPLIT_OFFSETS[s] + j`` for ``j < num_identities``;
the identity itself is ``sample_identity((seed, identity_id))``, so train/val/test never share a
person. Index ``i`` shows identity ``j = i % num_identities`` in its ``i // num_identities``-th
sample (consecutive indices are different people).
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

from .geometry import _as_size
from .identity import Identity, sample_identity
from .motion import (
    render_identity_set,
    render_sequence_full,
    render_views,
    sample_expression,
    sample_pose,
)
from .render import render_face
from .voice import synthesize_voice

SPLITS = ("train", "val", "test")
SPLIT_OFFSETS = {"train": 0, "val": 10_000_000, "test": 20_000_000}
DEFAULT_NUM_IDENTITIES = {"train": 1000, "val": 100, "test": 100}
_TAG_STILL, _TAG_SEQ, _TAG_VIEWS, _TAG_SET = 11, 12, 13, 14


@functools.lru_cache(maxsize=2048)  # pure memo (identities are small, frozen and revisited)
def _identity(seed: int, identity_id: int) -> Identity:
    return sample_identity((seed, identity_id))


class SyntheticFaces:
    """Synthetic face images with landmarks, pose, expression and identity labels.

    Args:
      size: output size, an int or ``(H, W)``.
      num_identities: people in this split (default 1000 train, 100 val, 100 test).
      seed: dataset seed; different seeds give different people.
      split: ``"train"``, ``"val"`` or ``"test"`` (disjoint identities).
      samples_per_identity: images per person; ``len = num_identities * samples_per_identity``.
      supersample: renderer supersampling factor (1 is already anti-aliased).
      max_yaw: largest head yaw of still images (degrees).
    """

    def __init__(
        self,
        size: int | Sequence[int] = 128,
        num_identities: Optional[int] = None,
        seed: int = 0,
        split: str = "train",
        *,
        samples_per_identity: int = 16,
        supersample: int = 1,
        max_yaw: float = 70.0,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if num_identities is None:
            num_identities = DEFAULT_NUM_IDENTITIES[split]
        if not 1 <= int(num_identities) <= 10_000_000:
            raise ValueError(f"num_identities must be in [1, 10_000_000], got {num_identities}")
        if int(samples_per_identity) < 1:
            raise ValueError(f"samples_per_identity must be >= 1, got {samples_per_identity}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.size = _as_size(size)
        self.num_identities = int(num_identities)
        self.seed = int(seed)
        self.split = split
        self.samples_per_identity = int(samples_per_identity)
        self.supersample = int(supersample)
        self.max_yaw = float(max_yaw)

    def __len__(self) -> int:
        return self.num_identities * self.samples_per_identity

    def __repr__(self) -> str:
        return (
            f"SyntheticFaces(size={self.size}, num_identities={self.num_identities}, seed={self.seed}, "
            f"split={self.split!r}, samples_per_identity={self.samples_per_identity})"
        )

    # --- identities -----------------------------------------------------------------------------

    def _check(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self!r} (len {len(self)})")
        return index

    def identity_id(self, index: int) -> int:
        """Global identity id shown at ``index`` (unique across splits)."""
        return SPLIT_OFFSETS[self.split] + self._check(index) % self.num_identities

    def identity_ids(self) -> np.ndarray:
        """All identity ids of this split."""
        return SPLIT_OFFSETS[self.split] + np.arange(self.num_identities)

    def identity(self, identity_id: int) -> Identity:
        """The person with global id ``identity_id`` (for this dataset seed)."""
        return _identity(self.seed, int(identity_id))

    def _rng(self, index: int, tag: int) -> np.random.Generator:
        index = self._check(index)
        ident = self.identity_id(index)
        return np.random.default_rng([self.seed, ident, index // self.num_identities, tag])

    def _size(self, size) -> tuple[int, int]:
        return self.size if size is None else _as_size(size)

    def _base(self, index: int) -> tuple[int, Identity, dict]:
        ident = self.identity_id(index)
        idn = self.identity(ident)
        return ident, idn, {"identity_id": np.asarray(ident, np.int64), "identity": idn.to_vector()}

    # --- records --------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """Still image record: ``image`` float32 (H, W, 3) in [0, 1], ``landmarks`` float32 (68, 2)
        pixel (x, y), ``visibility`` bool (68,), ``identity_id`` int64 scalar, ``pose`` float32 (3,)
        (yaw, pitch, roll degrees), ``expression`` float32 (7,), ``identity`` float32 attribute
        vector, ``lighting`` float32 (3,) (azimuth, elevation, ambient)."""
        if isinstance(index, (slice, list, tuple, np.ndarray)):
            raise TypeError("SyntheticFaces indexes one record at a time; batch with a data loader")
        rng = self._rng(index, _TAG_STILL)
        _, idn, rec = self._base(index)
        pose = sample_pose(rng, self.max_yaw)
        ex = sample_expression(rng)
        jit = rng.normal(0.0, 1.0, 3).tolist()
        lighting = (
            min(max(idn.light_azimuth + 20.0 * jit[0], -80.0), 80.0),
            min(max(idn.light_elevation + 10.0 * jit[1], -20.0), 70.0),
            min(max(idn.ambient + 0.05 * jit[2], 0.2), 0.7),
        )
        translation = rng.normal(0, 0.04, 2)
        zoom = float(rng.uniform(0.94, 1.06))
        image, landmarks, visibility = render_face(
            idn, pose, ex, self.size, lighting=lighting, translation=translation, scale=zoom, supersample=self.supersample
        )
        rec.update(
            image=image,
            landmarks=landmarks,
            visibility=visibility,
            pose=np.asarray(pose, np.float32),
            expression=ex.to_vector(),
            lighting=np.asarray(lighting, np.float32),
        )
        return rec

    def sequence_seed(self, index: int) -> int:
        """Motion/voice seed of the sequence at ``index`` (shared by :meth:`sequence` and :meth:`voice`)."""
        return int(self._rng(index, _TAG_SEQ).integers(0, 2**31 - 1))

    def sequence(
        self,
        index: int,
        num_frames: int = 16,
        fps: float = 30.0,
        *,
        motion_scale: float = 1.0,
        start_time: float = 0.0,
        size: int | Sequence[int] | None = None,
        drift: float = 0.0,
        drift_angle: float = 180.0,
    ) -> dict[str, np.ndarray]:
        """Video record: ``frames`` (T, H, W, 3), ``landmarks`` (T, 68, 2), ``visibility`` (T, 68),
        ``poses`` (T, 3), ``translations`` (T, 2), ``zoom`` (T,), ``expressions`` (T, 7), ``times`` (T,)
        seconds, ``fps``, plus ``identity_id`` / ``identity``. Render at a high ``fps`` and average
        frames for motion blur; ``motion_scale`` > 1 moves faster; ``drift`` > 0 adds straight-line
        head motion (head units per second, within ``drift_angle`` degrees of the horizontal)."""
        _, idn, rec = self._base(index)
        out = render_sequence_full(
            idn, num_frames, fps, seed=self.sequence_seed(index), size=self._size(size), motion_scale=motion_scale,
            start_time=start_time, supersample=self.supersample, drift=drift, drift_angle=drift_angle,
        )
        rec.update(out)
        rec["fps"] = np.asarray(fps, np.float32)
        return rec

    def voice(
        self, index: int, duration_s: float = 1.0, sample_rate: int = 16000, *, start_time: float = 0.0
    ) -> dict[str, np.ndarray]:
        """Audio record ``waveform`` float32 (N,), ``sample_rate``, ``voice_pitch`` (Hz), identity labels.
        Lip-synchronised with :meth:`sequence` of the same index and ``start_time``."""
        _, idn, rec = self._base(index)
        rec["waveform"] = synthesize_voice(idn, duration_s, sample_rate, self.sequence_seed(index), start_time=start_time)
        rec["sample_rate"] = np.asarray(sample_rate, np.int64)
        rec["voice_pitch"] = np.asarray(idn.voice_pitch, np.float32)
        return rec

    def talking(
        self, index: int, num_frames: int = 16, fps: float = 25.0, sample_rate: int = 16000, *, size=None
    ) -> dict[str, np.ndarray]:
        """Audio-visual record: :meth:`sequence` plus the matching ``waveform`` of the same span."""
        rec = self.sequence(index, num_frames, fps, size=size)
        rec["waveform"] = self.voice(index, num_frames / fps, sample_rate)["waveform"]
        rec["sample_rate"] = np.asarray(sample_rate, np.int64)
        return rec

    def views(
        self, index: int, num_views: int = 3, *, max_yaw: float = 60.0, size: int | Sequence[int] | None = None
    ) -> dict[str, np.ndarray]:
        """Multi-view record of one moment: ``images`` (V, H, W, 3), ``landmarks`` (V, 68, 2),
        ``visibility`` (V, 68), ``poses`` (V, 3) (view 0 is the most frontal), ``expression`` (7,)."""
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        rng = self._rng(index, _TAG_VIEWS)
        _, idn, rec = self._base(index)
        yaws = np.linspace(-max_yaw, max_yaw, num_views) if num_views > 1 else np.zeros(1)
        yaws = yaws[np.argsort(np.abs(yaws), kind="stable")] + rng.normal(0, 3, num_views)
        poses = np.stack([yaws, rng.normal(0, 6, num_views), rng.normal(0, 3, num_views)], 1)
        ex = sample_expression(rng)
        images, landmarks, visibility = render_views(idn, poses, ex, self._size(size), supersample=self.supersample)
        rec.update(
            images=images, landmarks=landmarks, visibility=visibility, poses=poses.astype(np.float32), expression=ex.to_vector()
        )
        return rec

    def identity_set(self, index: int, k: int = 4, *, size: int | Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """``k`` images of the person at ``index`` in varied pose/expression/lighting:
        ``images`` (k, H, W, 3), ``landmarks`` (k, 68, 2), ``poses`` (k, 3), ``expressions`` (k, 7)."""
        seed = int(self._rng(index, _TAG_SET).integers(0, 2**31 - 1))
        _, idn, rec = self._base(index)
        images, landmarks, poses, exprs = render_identity_set(
            idn, k, seed, self._size(size), supersample=self.supersample, max_yaw=self.max_yaw
        )
        rec.update(images=images, landmarks=landmarks, poses=poses, expressions=exprs)
        return rec
