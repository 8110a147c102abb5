"""Identity attributes of a synthetic face: a seed goes in, a frozen record of numbers comes out.

An :class:`Identity` fixes everything about a person and their capture set-up that does not change
from frame to frame: head shape, colours, feature sizes, hair, glasses, clothing, background,
studio lighting, and the two voice parameters (pitch and formant scale). Pose and expression are
*not* part of the identity; they are arguments of the renderer.

All fields are plain floats or ints, so an identity is hashable, picklable and can be stored as a
fixed-length float vector (:meth:`Identity.to_vector` / :meth:`Identity.from_vector`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence, Union

import numpy as np

HAIR_STYLES = ("short", "long", "bald", "fringe")
BACKGROUND_KINDS = ("gradient", "noise", "stripes", "bokeh")

SeedLike = Union[int, Sequence[int], np.random.Generator, np.random.SeedSequence]


@dataclasses.dataclass(frozen=True)
class Identity:
    """Per-person attributes (units: multipliers of the base model unless stated otherwise)."""

    # Head shape.
    head_width: float  # cranium width multiplier, ~0.9..1.1
    head_height: float  # cranium height multiplier
    jaw_width: float  # jaw width relative to the cranium width, ~0.7..0.95
    chin_length: float  # vertical extent of the jaw
    # Skin.
    skin_r: float
    skin_g: float
    skin_b: float
    # Eyes.
    eye_width: float
    eye_height: float
    eye_spacing: float
    eye_tilt: float  # canthal tilt in degrees (outer corner up when positive)
    iris_r: float
    iris_g: float
    iris_b: float
    iris_size: float
    pupil_size: float  # pupil radius as a fraction of the iris radius
    # Brows.
    brow_thickness: float
    brow_arch: float  # 0 = straight, 1 = strongly arched
    brow_length: float
    brow_r: float
    brow_g: float
    brow_b: float
    # Nose and mouth.
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    lip_r: float
    lip_g: float
    lip_b: float
    # Hair.
    hair_style: int  # index into HAIR_STYLES
    hair_volume: float  # 0..1
    hair_r: float
    hair_g: float
    hair_b: float
    # Accessories and clothing.
    glasses: int  # 0 or 1
    frame_r: float
    frame_g: float
    frame_b: float
    shirt_r: float
    shirt_g: float
    shirt_b: float
    # Background.
    background_kind: int  # index into BACKGROUND_KINDS
    bg1_r: float
    bg1_g: float
    bg1_b: float
    bg2_r: float
    bg2_g: float
    bg2_b: float
    background_angle: float  # degrees; direction of gradients and stripes
    background_freq: float  # stripes per image width / noise detail
    background_seed: int  # < 2**24, seeds the procedural texture
    # Studio lighting (camera frame).
    light_azimuth: float  # degrees, positive = light from the image right
    light_elevation: float  # degrees, positive = light from above
    ambient: float  # 0..1
    # Voice (tied to head shape: bigger heads speak lower).
    voice_pitch: float  # mean fundamental frequency in Hz
    formant_scale: float  # multiplies the formant frequencies (shorter vocal tract -> higher)

    # --- conversions -------------------------------------------------------------------------

    def to_vector(self) -> np.ndarray:
        """All fields in declaration order as a float32 vector of length :data:`IDENTITY_DIM`."""
        return np.array([float(getattr(self, f.name)) for f in dataclasses.fields(self)], np.float32)

    @classmethod
    def from_vector(cls, vector: Sequence[float] | np.ndarray) -> "Identity":
        """Inverse of :meth:`to_vector` (integer fields are rounded)."""
        vector = np.asarray(vector, np.float64).reshape(-1)
        fields = dataclasses.fields(cls)
        if vector.shape[0] != len(fields):
            raise ValueError(
                f"identity vector has {vector.shape[0]} entries, expected {len(fields)} "
                "(use Identity.to_vector() to produce one)"
            )
        values = {}
        for f, x in zip(fields, vector):
            values[f.name] = int(round(float(x))) if f.type in ("int", int) else float(x)
        return cls(**values)

    # --- convenient colour accessors ----------------------------------------------------------

    def rgb(self, prefix: str) -> np.ndarray:
        """Colour attribute ``prefix`` (e.g. ``"skin"``, ``"hair"``, ``"bg1"``) as float32 RGB."""
        return np.array(
            [getattr(self, f"{prefix}_r"), getattr(self, f"{prefix}_g"), getattr(self, f"{prefix}_b")],
            np.float32,
        )

    @property
    def hair_style_name(self) -> str:
        return HAIR_STYLES[self.hair_style]

    @property
    def background_kind_name(self) -> str:
        return BACKGROUND_KINDS[self.background_kind]


IDENTITY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Identity))
IDENTITY_DIM: int = len(IDENTITY_FIELDS)


def as_rng(seed_or_rng: SeedLike) -> np.random.Generator:
    """A NumPy Generator from an int, a sequence of ints, a SeedSequence or a Generator."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if isinstance(seed_or_rng, np.random.SeedSequence):
        return np.random.default_rng(seed_or_rng)
    if isinstance(seed_or_rng, (int, np.integer)):
        if seed_or_rng < 0:
            raise ValueError(f"seed must be non-negative, got {seed_or_rng}")
        return np.random.default_rng(int(seed_or_rng))
    if isinstance(seed_or_rng, (tuple, list)):
        return np.random.default_rng([int(s) for s in seed_or_rng])
    raise TypeError(
        f"expected an int seed, a sequence of ints, a SeedSequence or a numpy Generator, "
        f"got {type(seed_or_rng).__name__}"
    )


# Colour palettes (RGB in [0, 1]); sampled with small per-channel jitter.
_SKIN_STOPS = np.array(
    [
        [0.98, 0.85, 0.76],
        [0.94, 0.76, 0.63],
        [0.84, 0.62, 0.47],
        [0.68, 0.47, 0.33],
        [0.50, 0.33, 0.22],
        [0.36, 0.23, 0.15],
    ]
)
_HAIR_COLOURS = np.array(
    [
        [0.06, 0.05, 0.05],  # black
        [0.19, 0.12, 0.07],  # dark brown
        [0.36, 0.23, 0.13],  # brown
        [0.52, 0.25, 0.11],  # auburn
        [0.82, 0.68, 0.42],  # blonde
        [0.70, 0.32, 0.12],  # red
        [0.58, 0.57, 0.55],  # grey
        [0.86, 0.85, 0.82],  # white
    ]
)
_HAIR_PROBS_LIGHT = np.array([0.14, 0.22, 0.2, 0.08, 0.18, 0.06, 0.08, 0.04])
_HAIR_PROBS_DARK = np.array([0.55, 0.28, 0.08, 0.02, 0.01, 0.0, 0.04, 0.02])
_IRIS_COLOURS = np.array(
    [
        [0.36, 0.20, 0.09],  # brown
        [0.17, 0.10, 0.06],  # dark brown
        [0.46, 0.36, 0.16],  # hazel
        [0.30, 0.46, 0.26],  # green
        [0.30, 0.50, 0.76],  # blue
        [0.50, 0.56, 0.62],  # grey
    ]
)
_FRAME_COLOURS = np.array(
    [
        [0.04, 0.04, 0.05],  # black
        [0.30, 0.17, 0.08],  # tortoise brown
        [0.78, 0.62, 0.28],  # gold
        [0.70, 0.72, 0.75],  # silver
        [0.60, 0.08, 0.10],  # red
        [0.10, 0.16, 0.40],  # navy
    ]
)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    """Scalar HSV (all in [0, 1]) to RGB."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _choice(u: float, probs: Sequence[float]) -> int:
    """Index drawn with probabilities ``probs`` from one uniform ``u``."""
    total = sum(probs)
    acc = 0.0
    for i, p in enumerate(probs):
        acc += p / total
        if u < acc:
            return i
    return len(probs) - 1


_NUM_UNIFORMS = 72


def sample_identity(seed_or_rng: SeedLike) -> Identity:
    """Draw one identity. Deterministic: the same seed always gives the same identity.

    ``seed_or_rng`` is an int, a sequence of ints (e.g. ``(dataset_seed, identity_id)``), a
    ``numpy.random.SeedSequence`` or a ``numpy.random.Generator`` (which is advanced by a fixed
    number of draws).
    """
    rng = as_rng(seed_or_rng)
    draws = rng.random(_NUM_UNIFORMS).tolist()
    normals = rng.standard_normal(2).tolist()
    u = iter(draws).__next__  # every draw below happens in a fixed order

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * u()

    def jitter(c: Sequence[float], amount: float) -> tuple[float, float, float]:
        return tuple(min(max(x + (u() - 0.5) * 2 * amount, 0.0), 1.0) for x in c)

    def pick(palette: np.ndarray, probs: Sequence[float]) -> list[float]:
        return palette[_choice(u(), probs)].tolist()

    head_width = uniform(0.9, 1.1)
    head_height = uniform(0.93, 1.07)
    jaw_width = uniform(0.72, 0.95)
    chin_length = uniform(0.9, 1.1)

    tone = u()
    pos = tone * (len(_SKIN_STOPS) - 1)
    k = min(int(pos), len(_SKIN_STOPS) - 2)
    skin = jitter((_SKIN_STOPS[k] + (pos - k) * (_SKIN_STOPS[k + 1] - _SKIN_STOPS[k])).tolist(), 0.025)

    eye_width = uniform(0.88, 1.12)
    eye_height = uniform(0.8, 1.2)
    eye_spacing = uniform(0.92, 1.08)
    eye_tilt = uniform(-5.0, 8.0)
    if tone > 0.55:  # darker skin: mostly brown eyes
        iris = jitter(pick(_IRIS_COLOURS, [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]), 0.03)
    else:
        iris = jitter(pick(_IRIS_COLOURS, [0.3, 0.2, 0.15, 0.1, 0.15, 0.1]), 0.04)
    iris_size = uniform(0.88, 1.1)
    pupil_size = uniform(0.32, 0.5)

    brow_thickness = uniform(0.7, 1.4)
    brow_arch = uniform(0.0, 1.0)
    brow_length = uniform(0.85, 1.12)

    nose_length = uniform(0.85, 1.2)
    nose_width = uniform(0.8, 1.25)
    mouth_width = uniform(0.82, 1.18)
    lip_thickness = uniform(0.7, 1.35)
    lip = jitter([0.55 * skin[0] + 0.45 * 0.72, 0.33 * skin[1] + 0.45 * 0.28, 0.33 * skin[2] + 0.45 * 0.30], 0.04)

    hair_style = _choice(u(), [0.4, 0.3, 0.1, 0.2])
    hair_volume = u()
    hair = jitter(pick(_HAIR_COLOURS, _HAIR_PROBS_DARK if tone > 0.6 else _HAIR_PROBS_LIGHT), 0.03)
    if sum(hair) / 3 > 0.55:  # light hair: brows a little darker than the hair
        brow = [min(c * 0.6, 1.0) for c in hair]
    else:
        brow = [min(c * 0.75 + 0.03, 1.0) for c in hair]
    brow = jitter(brow, 0.02)

    glasses = int(u() < 0.25)
    frame = jitter(pick(_FRAME_COLOURS, [1.0] * len(_FRAME_COLOURS)), 0.03)
    shirt = _hsv_to_rgb(u(), uniform(0.2, 0.8), uniform(0.2, 0.9))

    background_kind = min(int(u() * len(BACKGROUND_KINDS)), len(BACKGROUND_KINDS) - 1)
    h1 = u()
    bg1 = _hsv_to_rgb(h1, uniform(0.1, 0.6), uniform(0.35, 0.95))
    bg2 = _hsv_to_rgb((h1 + uniform(-0.2, 0.2)) % 1.0, uniform(0.1, 0.7), uniform(0.2, 0.9))
    background_angle = uniform(0.0, 180.0)
    background_freq = uniform(3.0, 12.0)
    background_seed = min(int(u() * 2**24), 2**24 - 1)

    light_azimuth = uniform(-55.0, 55.0)
    light_elevation = uniform(-5.0, 50.0)
    ambient = uniform(0.3, 0.55)

    # Voice: larger heads and wider jaws speak lower; the rest is individual variation.
    size_z = ((head_width * head_height) - 1.0) / 0.07
    jaw_z = (jaw_width - 0.835) / 0.066
    log_pitch = math.log(150.0) - 0.16 * size_z - 0.12 * jaw_z + 0.22 * normals[0]
    voice_pitch = min(max(math.exp(log_pitch), 85.0), 260.0)
    formant_scale = min(max(1.0 - 0.05 * size_z + 0.03 * normals[1], 0.85), 1.15)

    return Identity(
        head_width=head_width,
        head_height=head_height,
        jaw_width=jaw_width,
        chin_length=chin_length,
        skin_r=float(skin[0]),
        skin_g=float(skin[1]),
        skin_b=float(skin[2]),
        eye_width=eye_width,
        eye_height=eye_height,
        eye_spacing=eye_spacing,
        eye_tilt=eye_tilt,
        iris_r=float(iris[0]),
        iris_g=float(iris[1]),
        iris_b=float(iris[2]),
        iris_size=iris_size,
        pupil_size=pupil_size,
        brow_thickness=brow_thickness,
        brow_arch=brow_arch,
        brow_length=brow_length,
        brow_r=float(brow[0]),
        brow_g=float(brow[1]),
        brow_b=float(brow[2]),
        nose_length=nose_length,
        nose_width=nose_width,
        mouth_width=mouth_width,
        lip_thickness=lip_thickness,
        lip_r=float(lip[0]),
        lip_g=float(lip[1]),
        lip_b=float(lip[2]),
        hair_style=hair_style,
        hair_volume=hair_volume,
        hair_r=float(hair[0]),
        hair_g=float(hair[1]),
        hair_b=float(hair[2]),
        glasses=glasses,
        frame_r=float(frame[0]),
        frame_g=float(frame[1]),
        frame_b=float(frame[2]),
        shirt_r=float(shirt[0]),
        shirt_g=float(shirt[1]),
        shirt_b=float(shirt[2]),
        background_kind=background_kind,
        bg1_r=float(bg1[0]),
        bg1_g=float(bg1[1]),
        bg1_b=float(bg1[2]),
        bg2_r=float(bg2[0]),
        bg2_g=float(bg2[1]),
        bg2_b=float(bg2[2]),
        background_angle=background_angle,
        background_freq=background_freq,
        background_seed=background_seed,
        light_azimuth=light_azimuth,
        light_elevation=light_elevation,
        ambient=ambient,
        voice_pitch=voice_pitch,
        formant_scale=formant_scale,
    )
