"""Continuous-time head motion and facial expression tracks, and rendered sequences.

Every track is a closed-form function of time (seconds), drawn once from ``(seed, identity)``:

* head pose: a base pose plus a sum of three random low-frequency sinusoids per axis (yaw, pitch,
  roll), a small in-plane translation and zoom, all sped up by ``motion_scale``;
* drift (optional, ``drift > 0``): a constant-velocity in-plane translation ``v * t`` with speed
  uniform in ``[drift / 2, drift]`` head units per second, in a random direction within
  ``drift_angle`` degrees of the horizontal (either way; 180: any direction), for short
  bursts of straight-line head motion (the classic linear motion blur); it grows without bound, so
  use it for short sequences near ``t = 0``;
* talking: a syllable schedule (onset, length, loudness, vowel) generated in fixed 4-second blocks,
  each block from its own random stream, so the schedule never depends on how long a clip is;
  ``mouth_open`` follows the syllable envelope. :mod:`.voice` uses the *same* schedule, so a
  voice and a sequence made with the same ``(identity, seed)`` are lip-synchronised;
* blinks: short closing/opening bumps at random times (also block-generated);
* smile, brow raise and gaze: slow sinusoids.

Because frames are sampled from these functions at ``start_time + i / fps``, rendering at twice the
frame rate reproduces the frames of the lower rate at even indices, and frame averaging over a
high-rate sequence gives physically plausible motion blur.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

from .geometry import EXPRESSION_DIM, Expression, _as_size, build_face_model
from .identity import Identity

BLOCK_SECONDS = 4.0
_TAG_MOTION, _TAG_SYLLABLE, _TAG_BLINK, _TAG_DRIFT = 101, 202, 303, 404
# Vowels of the syllable schedule (indices into voice.VOWEL_FORMANTS).
NUM_VOWELS = 5


def _stream(seed: int, identity: Identity, tag: int, block: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(identity.background_seed), tag, int(block)])


# --------------------------------------------------------------------------------------------
# Event schedules (syllables, blinks), generated per 4-second block.


@dataclasses.dataclass(frozen=True)
class Syllables:
    """Syllable events sorted by onset: onset and length (s), loudness (0..1), vowel index."""

    onset: np.ndarray
    length: np.ndarray
    gain: np.ndarray
    vowel: np.ndarray


def syllables(identity: Identity, seed: int, t_start: float, t_end: float) -> Syllables:
    """All syllables whose onset lies in the blocks covering ``[t_start - 1 s, t_end]``."""
    b0 = max(int(math.floor((t_start - 1.0) / BLOCK_SECONDS)), 0)
    b1 = max(int(math.floor(t_end / BLOCK_SECONDS)), b0)
    on, ln, gn, vw = [], [], [], []
    for b in range(b0, b1 + 1):
        rng = _stream(seed, identity, _TAG_SYLLABLE, b)
        t = b * BLOCK_SECONDS + 0.05 * rng.random()
        end = (b + 1) * BLOCK_SECONDS
        while True:
            r = rng.random(5)
            if r[0] < 0.12:  # a pause between phrases
                t += 0.25 + 0.5 * r[1]
            else:
                length = 0.13 + 0.17 * r[1]
                if t + length > end:  # syllables never straddle blocks
                    break
                on.append(t), ln.append(length), gn.append(0.55 + 0.45 * r[2]), vw.append(int(r[3] * NUM_VOWELS))
                t += length + 0.015 + 0.05 * r[4]
            if t >= end:
                break
    return Syllables(np.array(on), np.array(ln), np.array(gn), np.array(vw, np.int64))


def syllable_envelope(syl: Syllables, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Envelope ``gain * sin^2(pi * phase)`` at ``times``, plus the syllable index and phase."""
    times = np.asarray(times, np.float64)
    if syl.onset.size == 0:
        zeros = np.zeros_like(times)
        return zeros, np.full(times.shape, -1), zeros
    idx = np.searchsorted(syl.onset, times, side="right") - 1
    safe = np.maximum(idx, 0)
    phase = (times - syl.onset[safe]) / syl.length[safe]
    inside = (idx >= 0) & (phase >= 0) & (phase < 1)
    env = np.where(inside, syl.gain[safe] * np.sin(np.pi * np.clip(phase, 0, 1)) ** 2, 0.0)
    return env, np.where(inside, idx, -1), np.where(inside, phase, 0.0)


def _blinks(identity: Identity, seed: int, times: np.ndarray) -> np.ndarray:
    """Blink closure 0..1 at ``times``: fast close (0.08 s), slower open (0.2 s)."""
    t0, t1 = float(times.min()), float(times.max())
    b0 = max(int(math.floor((t0 - 1.0) / BLOCK_SECONDS)), 0)
    b1 = max(int(math.floor(t1 / BLOCK_SECONDS)), b0)
    onsets = []
    for b in range(b0, b1 + 1):
        rng = _stream(seed, identity, _TAG_BLINK, b)
        n = int(rng.choice(3, p=[0.2, 0.5, 0.3]))
        onsets.extend(sorted(b * BLOCK_SECONDS + (BLOCK_SECONDS - 0.3) * rng.random(n)))
    out = np.zeros_like(times)
    for onset in onsets:
        p = (times - onset) / 0.28
        closing = np.clip(p / 0.3, 0, 1)
        opening = np.clip((1 - p) / 0.7, 0, 1)
        s = np.where(p < 0.3, closing, opening)
        s = np.where((p >= 0) & (p < 1), s * s * (3 - 2 * s), 0.0)
        out = np.maximum(out, s)
    return out


# --------------------------------------------------------------------------------------------
# Smooth head motion.


@dataclasses.dataclass(frozen=True)
class Motion:
    """Parameters of the continuous-time motion of one ``(identity, seed, motion_scale)``."""

    identity: Identity
    seed: int
    motion_scale: float
    base: np.ndarray  # (3,) yaw, pitch, roll (degrees)
    amp: np.ndarray  # (6, 3) channels x sinusoids: yaw, pitch, roll, tx, ty, zoom
    freq: np.ndarray  # (6, 3) Hz
    phase: np.ndarray  # (6, 3)
    slow_amp: np.ndarray  # (4,) smile, brow, gaze_x, gaze_y
    slow_freq: np.ndarray
    slow_phase: np.ndarray
    smile_bias: float
    drift_velocity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2))  # (2,) head units / s


def make_motion(
    identity: Identity, seed: int, motion_scale: float = 1.0, drift: float = 0.0, drift_angle: float = 180.0
) -> Motion:
    """Draw the motion parameters (deterministic per ``(identity, seed, motion_scale, drift, drift_angle)``).

    The drift velocity comes from its own random stream: ``drift=0`` gives exactly the motion of
    earlier versions, and changing ``drift`` changes nothing else."""
    if not motion_scale >= 0:
        raise ValueError(f"motion_scale must be >= 0, got {motion_scale}")
    if not drift >= 0:
        raise ValueError(f"drift must be >= 0 (head units per second), got {drift}")
    if not 0 <= drift_angle <= 180:
        raise ValueError(f"drift_angle must be in [0, 180] degrees from the horizontal, got {drift_angle}")
    rng = _stream(seed, identity, _TAG_MOTION)
    base = np.array([np.clip(rng.normal(0, 15), -35, 35), np.clip(rng.normal(0, 6), -15, 15), np.clip(rng.normal(0, 4), -10, 10)])
    # Speed ~ motion_scale: amplitude and frequency both grow with sqrt(motion_scale).
    k = math.sqrt(motion_scale)
    amp_ranges = np.array([[3.0, 12.0], [1.5, 6.0], [1.0, 4.0], [0.01, 0.05], [0.01, 0.04], [0.005, 0.02]])
    amp = amp_ranges[:, :1] + (amp_ranges[:, 1:] - amp_ranges[:, :1]) * rng.random((6, 3))
    amp[:3] *= min(k, 3.0)  # angles saturate: keep |yaw| within a sensible range
    amp[3:] *= min(k, 2.0)
    freq = (0.08 + 0.5 * rng.random((6, 3))) * k
    phase = 2 * np.pi * rng.random((6, 3))
    slow_amp = np.array([0.35, 0.3, 0.35, 0.2]) * (0.5 + rng.random(4))
    slow_freq = (0.04 + 0.16 * rng.random(4)) * max(k, 0.25)
    slow_phase = 2 * np.pi * rng.random(4)
    smile_bias = float(rng.uniform(-0.1, 0.4))
    drift_rng = _stream(seed, identity, _TAG_DRIFT)
    angle = np.deg2rad(drift_rng.uniform(-drift_angle, drift_angle)) + np.pi * drift_rng.integers(0, 2)
    speed = drift * drift_rng.uniform(0.5, 1.0)
    drift_velocity = speed * np.array([np.cos(angle), np.sin(angle)])
    return Motion(
        identity, int(seed), float(motion_scale), base, amp, freq, phase, slow_amp, slow_freq, slow_phase, smile_bias,
        drift_velocity,
    )


def motion_at(motion: Motion, times: Sequence[float] | np.ndarray) -> dict[str, np.ndarray]:
    """Poses (T, 3), translations (T, 2), zoom (T,) and expressions (T, 7) at ``times`` (s)."""
    t = np.asarray(times, np.float64).reshape(-1)
    waves = (motion.amp[None] * np.sin(2 * np.pi * motion.freq[None] * t[:, None, None] + motion.phase[None])).sum(-1)
    poses = motion.base[None] + waves[:, :3]
    poses[:, 0] = np.clip(poses[:, 0], -80, 80)
    poses[:, 1] = np.clip(poses[:, 1], -40, 40)
    poses[:, 2] = np.clip(poses[:, 2], -35, 35)
    translation = waves[:, 3:5] + t[:, None] * motion.drift_velocity[None]
    zoom = 1.0 + waves[:, 5]
    slow = motion.slow_amp[None] * np.sin(2 * np.pi * motion.slow_freq[None] * t[:, None] + motion.slow_phase[None])
    idn, seed = motion.identity, motion.seed
    syl = syllables(idn, seed, float(t.min()) if t.size else 0.0, float(t.max()) if t.size else 0.0)
    env, _, _ = syllable_envelope(syl, t)
    blink = _blinks(idn, seed, t) if t.size else np.zeros(0)
    expr = np.zeros((t.size, EXPRESSION_DIM))
    expr[:, 0] = np.clip(0.85 * env, 0, 1)  # mouth_open
    expr[:, 1] = np.clip(motion.smile_bias + slow[:, 0], -0.6, 1.0)  # smile
    expr[:, 2] = blink  # blink_right
    expr[:, 3] = blink  # blink_left
    expr[:, 4] = np.clip(slow[:, 1] + 0.25 * env, -1, 1)  # brow_raise (emphasis while talking)
    expr[:, 5] = np.clip(slow[:, 2], -1, 1)  # gaze_x
    expr[:, 6] = np.clip(slow[:, 3], -1, 1)  # gaze_y
    return {"poses": poses, "translations": translation, "zoom": zoom, "expressions": expr}


def frame_times(num_frames: Optional[int], fps: float, duration: Optional[float], start_time: float = 0.0) -> np.ndarray:
    """``start_time + i / fps`` for ``i < num_frames`` (or ``round(duration * fps)`` frames)."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if num_frames is None:
        if duration is None:
            raise ValueError("give num_frames or duration (seconds)")
        num_frames = int(round(duration * fps))
    elif duration is not None and int(round(duration * fps)) != int(num_frames):
        raise ValueError(f"num_frames={num_frames} disagrees with duration={duration}s at fps={fps}; give one of them")
    if num_frames < 1:
        raise ValueError(f"a sequence needs at least one frame, got num_frames={num_frames}")
    return start_time + np.arange(int(num_frames)) / float(fps)


def render_sequence_full(
    identity: Identity,
    num_frames: Optional[int] = None,
    fps: float = 30.0,
    *,
    seed: int = 0,
    duration: Optional[float] = None,
    size: int | Sequence[int] = (128, 128),
    motion_scale: float = 1.0,
    start_time: float = 0.0,
    supersample: int = 1,
    drift: float = 0.0,
    drift_angle: float = 180.0,
) -> dict[str, np.ndarray]:
    """Like :func:`render_sequence` but returns a dict with everything (visibility, times, ...)."""
    from .render import render_background, render_model

    times = frame_times(num_frames, fps, duration, start_time)
    mo = motion_at(make_motion(identity, seed, motion_scale, drift, drift_angle), times)
    h, w = _as_size(size)
    k = int(supersample)
    background = render_background(identity, (h * k, w * k))
    frames = np.empty((times.size, h, w, 3), np.float32)
    lms = np.empty((times.size, 68, 2), np.float32)
    vis = np.empty((times.size, 68), bool)
    for i in range(times.size):
        model = build_face_model(identity, Expression.from_vector(mo["expressions"][i]))
        frames[i], lms[i], vis[i] = render_model(
            model, mo["poses"][i], (h, w), translation=mo["translations"][i], scale=float(mo["zoom"][i]),
            supersample=k, background=background,
        )
    return {
        "frames": frames,
        "landmarks": lms,
        "visibility": vis,
        "poses": mo["poses"].astype(np.float32),
        "translations": mo["translations"].astype(np.float32),
        "zoom": mo["zoom"].astype(np.float32),
        "expressions": mo["expressions"].astype(np.float32),
        "times": times,
    }


def render_sequence(
    identity: Identity,
    num_frames: Optional[int] = None,
    fps: float = 30.0,
    *,
    seed: int = 0,
    duration: Optional[float] = None,
    size: int | Sequence[int] = (128, 128),
    motion_scale: float = 1.0,
    start_time: float = 0.0,
    supersample: int = 1,
    drift: float = 0.0,
    drift_angle: float = 180.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render a talking, blinking, moving head.

    Frame ``i`` shows time ``start_time + i / fps`` of the continuous motion of
    ``(identity, seed, motion_scale, drift, drift_angle)``. Give ``num_frames`` or ``duration`` (seconds).

    Returns ``frames`` float32 (T, H, W, 3), ``landmarks`` float32 (T, 68, 2), ``poses`` float32
    (T, 3) (yaw, pitch, roll in degrees) and ``expressions`` float32 (T, 7) (``EXPRESSION_FIELDS``).
    """
    out = render_sequence_full(
        identity, num_frames, fps, seed=seed, duration=duration, size=size, motion_scale=motion_scale,
        start_time=start_time, supersample=supersample, drift=drift, drift_angle=drift_angle,
    )
    return out["frames"], out["landmarks"], out["poses"], out["expressions"]


def sample_expression(rng: np.random.Generator) -> Expression:
    """A random still expression (mostly neutral-ish, sometimes talking, smiling or blinking)."""
    r = rng.random(8)
    mouth = 0.0 if r[0] < 0.5 else float(r[1])
    blink = 0.0 if r[2] < 0.85 else float(r[3])
    wink = r[4] < 0.05
    return Expression(
        mouth_open=mouth,
        smile=float(-0.4 + 1.4 * r[5]),
        blink_right=blink,
        blink_left=float(r[6]) if wink else blink,
        brow_raise=float(np.clip(rng.normal(0, 0.4), -1, 1)),
        gaze_x=float(rng.uniform(-0.6, 0.6)),
        gaze_y=float(rng.uniform(-0.5, 0.5)),
    )


def sample_pose(rng: np.random.Generator, max_yaw: float = 70.0) -> tuple[float, float, float]:
    """A random head pose concentrated around frontal views."""
    return (
        float(np.clip(rng.normal(0, 25), -max_yaw, max_yaw)),
        float(np.clip(rng.normal(0, 10), -30, 30)),
        float(np.clip(rng.normal(0, 8), -25, 25)),
    )


def render_views(
    identity: Identity,
    poses: Sequence[Sequence[float]],
    expression: Expression | Sequence[float] | np.ndarray | None = None,
    size: int | Sequence[int] = (128, 128),
    *,
    lighting: Optional[Sequence[float]] = None,
    supersample: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synchronised captures of one moment from several viewpoints.

    The head, its expression and the light are fixed in the world; each ``(yaw, pitch, roll)`` is
    a camera viewpoint (the light turns with the head relative to each camera). Returns images
    (V, H, W, 3), landmarks (V, 68, 2) and visibility (V, 68).
    """
    from .render import render_background, render_model

    if len(poses) == 0:
        raise ValueError("render_views needs at least one pose")
    h, w = _as_size(size)
    model = build_face_model(identity, expression)
    background = render_background(identity, (h * int(supersample), w * int(supersample)))
    imgs = np.empty((len(poses), h, w, 3), np.float32)
    lms = np.empty((len(poses), 68, 2), np.float32)
    vis = np.empty((len(poses), 68), bool)
    for i, pose in enumerate(poses):
        imgs[i], lms[i], vis[i] = render_model(
            model, pose, (h, w), lighting=lighting, supersample=supersample, light_frame="head", background=background
        )
    return imgs, lms, vis


def render_identity_set(
    identity: Identity,
    k: int,
    seed: int = 0,
    size: int | Sequence[int] = (128, 128),
    *,
    supersample: int = 1,
    max_yaw: float = 70.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``k`` images of one identity with varied pose, expression, lighting and framing.

    Returns images (k, H, W, 3), landmarks (k, 68, 2), poses (k, 3) and expressions (k, 7).
    """
    from .render import render_background, render_model

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    h, w = _as_size(size)
    rng = _stream(seed, identity, 404)
    background = render_background(identity, (h * int(supersample), w * int(supersample)))
    imgs = np.empty((k, h, w, 3), np.float32)
    lms = np.empty((k, 68, 2), np.float32)
    poses = np.empty((k, 3), np.float32)
    exprs = np.empty((k, EXPRESSION_DIM), np.float32)
    for i in range(k):
        pose = sample_pose(rng, max_yaw)
        ex = sample_expression(rng)
        light = (
            float(np.clip(identity.light_azimuth + rng.normal(0, 30), -80, 80)),
            float(np.clip(identity.light_elevation + rng.normal(0, 15), -20, 70)),
            float(np.clip(identity.ambient + rng.normal(0, 0.08), 0.2, 0.7)),
        )
        translation = rng.normal(0, 0.05, 2)
        zoom = float(rng.uniform(0.92, 1.08))
        model = build_face_model(identity, ex)
        imgs[i], lms[i], _ = render_model(
            model, pose, (h, w), lighting=light, translation=translation, scale=zoom, supersample=supersample,
            background=background,
        )
        poses[i], exprs[i] = pose, ex.to_vector()
    return imgs, lms, poses, exprs
