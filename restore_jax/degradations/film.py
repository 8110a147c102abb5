"""Procedural film scratches: thin, mostly vertical bright (or dark) curves.

The blind video restoration model (seed_000 §4.2, eq. 6.1) ends its degradation with a scratch
mask ``S`` that "sets pixel values to 1"; the thesis borrows scratch *images* from Wan et al., which
are not available, so this module draws a procedural substitute:

* ``count`` scratches, each a near-vertical curve ``c(y) = x0 + tan(angle) (y - y_mid) +
  amp sin(2 pi freq (y - y0) / (y1 - y0) + phase)`` spanning rows ``[y0, y1]`` (a random fraction
  ``length`` of the height), of horizontal width ``width / cos(angle)`` pixels;
* each row of a scratch is anti-aliased by exact box coverage of the pixel by the scratch's
  horizontal cross-section; the scratch's opacity is ``coverage * intensity``;
* bright scratches pull pixels towards 1, dark ones (probability ``dark_prob``) towards 0:
  ``y = x (1 - a_bright) + a_bright`` then ``y = y (1 - a_dark)``, where ``a_*`` combine
  overlapping scratches as ``1 - prod(1 - a_i)``. With the defaults (``intensity=1``,
  ``dark_prob=0``) fully covered pixels become exactly 1, as in the thesis.

Sequences ``[T, H, W, C]``: the same scratches persist in every frame and drift sideways by a
Gaussian random walk (``drift`` pixels std per frame, starting at 0 in frame 0), like a scratch on
a moving film strip.

The mask (combined opacity ``1 - prod(1 - a_i)``, float32 ``[H, W, 1]`` or ``[T, H, W, 1]``) is not
stored in params (only summary statistics are); get it with :func:`scratch_mask`, which makes the
same draws as :func:`scratches` — call both with generators in the same state to get the mask of
a degraded sample — or render it from an explicit :class:`ScratchGeometry`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from restore_jax.degradations._common import (
    Params,
    Range,
    check_image,
    check_prob,
    check_rng,
    draw_float,
    draw_int,
    f32,
    i32,
)

__all__ = [
    "ScratchGeometry",
    "sample_scratch_geometry",
    "render_scratch_alpha",
    "apply_scratches",
    "scratch_mask",
    "scratches",
]


@dataclasses.dataclass(frozen=True)
class ScratchGeometry:
    """Explicit description of ``K`` scratches over ``T`` frames (arrays of length ``K``).

    ``offsets`` is ``[T, K]``: the sideways drift (pixels) of each scratch in each frame.
    """

    x0: np.ndarray
    y0: np.ndarray
    y1: np.ndarray
    angle: np.ndarray
    width: np.ndarray
    amp: np.ndarray
    freq: np.ndarray
    phase: np.ndarray
    intensity: np.ndarray
    dark: np.ndarray
    offsets: np.ndarray

    @property
    def count(self) -> int:
        return int(self.x0.shape[0])


def sample_scratch_geometry(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_frames: int = 1,
    *,
    count: Range = (1, 4),
    line_width: Range = (0.5, 1.5),
    angle: Range = (-0.15, 0.15),
    length: Range = (0.3, 1.0),
    bend: Range = (0.0, 1.5),
    intensity: Range = 1.0,
    dark_prob: float = 0.0,
    drift: Range = 0.5,
) -> ScratchGeometry:
    """Draw scratch geometry. Ranges: ``count`` (inclusive ints), ``line_width`` (pixels),
    ``angle`` (radians from vertical), ``length`` (fraction of the height), ``bend`` (sideways
    wiggle amplitude, pixels), ``intensity`` (opacity in [0, 1]), ``drift`` (pixels per frame)."""
    fn = "sample_scratch_geometry"
    check_rng(rng, fn)
    dark_prob = check_prob(dark_prob, "dark_prob", fn)
    k = draw_int(rng, count, "count", fn, low=0)
    d = draw_float(rng, drift, "drift", fn, low=0.0)
    cols = {name: np.zeros(k, np.float64) for name in ("x0", "y0", "y1", "angle", "width", "amp", "freq", "phase", "intensity")}
    dark = np.zeros(k, bool)
    for i in range(k):
        frac = draw_float(rng, length, "length", fn, low=0.0, high=1.0)
        span = frac * height
        start = rng.random() * (height - span)
        cols["y0"][i], cols["y1"][i] = start, start + span
        cols["x0"][i] = rng.random() * width
        cols["angle"][i] = draw_float(rng, angle, "angle", fn, low=-1.2, high=1.2)
        cols["width"][i] = draw_float(rng, line_width, "line_width", fn, low=0.0)
        cols["amp"][i] = draw_float(rng, bend, "bend", fn, low=0.0)
        cols["freq"][i] = 0.25 + 0.75 * rng.random()
        cols["phase"][i] = 2 * np.pi * rng.random()
        cols["intensity"][i] = draw_float(rng, intensity, "intensity", fn, low=0.0, high=1.0)
        dark[i] = rng.random() < dark_prob
    steps = rng.standard_normal((max(num_frames - 1, 0), k)) * d
    offsets = np.concatenate([np.zeros((1, k)), np.cumsum(steps, axis=0)], axis=0)
    return ScratchGeometry(dark=dark, offsets=offsets, **cols)


def _alpha_one(geom: ScratchGeometry, i: int, t: int, height: int, width: int) -> np.ndarray:
    """Opacity ``[H, W]`` of scratch ``i`` in frame ``t`` (box-filtered horizontal coverage)."""
    y = np.arange(height, dtype=np.float64)
    x = np.arange(width, dtype=np.float64)
    y0, y1 = geom.y0[i], geom.y1[i]
    span = max(y1 - y0, 1e-6)
    ang = geom.angle[i]
    centre = (
        geom.x0[i]
        + geom.offsets[t, i]
        + np.tan(ang) * (y - 0.5 * (y0 + y1))
        + geom.amp[i] * np.sin(2 * np.pi * geom.freq[i] * (y - y0) / span + geom.phase[i])
    )
    half = 0.5 * geom.width[i] / np.cos(ang)
    lo = np.maximum(x[None, :] - 0.5, (centre - half)[:, None])
    hi = np.minimum(x[None, :] + 0.5, (centre + half)[:, None])
    cov = np.clip(hi - lo, 0.0, 1.0)
    rows = (y + 0.5 > y0) & (y - 0.5 < y1)
    return cov * rows[:, None] * geom.intensity[i]


def render_scratch_alpha(geom: ScratchGeometry, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Combined opacities ``(bright, dark)``, each float32 ``[T, H, W]``."""
    t_count = geom.offsets.shape[0]
    keep_b = np.ones((t_count, height, width))
    keep_d = np.ones((t_count, height, width))
    for t in range(t_count):
        for i in range(geom.count):
            a = _alpha_one(geom, i, t, height, width)
            if geom.dark[i]:
                keep_d[t] *= 1.0 - a
            else:
                keep_b[t] *= 1.0 - a
    return (1.0 - keep_b).astype(np.float32), (1.0 - keep_d).astype(np.float32)


def _frames(x_shape: tuple[int, ...]) -> int:
    return x_shape[0] if len(x_shape) == 4 else 1


def _alphas(geom: ScratchGeometry, shape: tuple[int, ...], fn: str) -> tuple[np.ndarray, np.ndarray]:
    """Bright/dark opacities shaped like the input with one channel (``[..., H, W, 1]``)."""
    t_count = _frames(shape)
    if geom.offsets.shape[0] != t_count:
        raise ValueError(f"{fn}: geometry has {geom.offsets.shape[0]} frame(s) but the input has {t_count}")
    a_b, a_d = render_scratch_alpha(geom, shape[-3], shape[-2])
    a_b, a_d = a_b[..., None], a_d[..., None]
    return (a_b, a_d) if len(shape) == 4 else (a_b[0], a_d[0])


def _composite(x: np.ndarray, a_b: np.ndarray, a_d: np.ndarray) -> np.ndarray:
    y = (x * (1.0 - a_b) + a_b) * (1.0 - a_d)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def _combined(a_b: np.ndarray, a_d: np.ndarray) -> np.ndarray:
    return (1.0 - (1.0 - a_b) * (1.0 - a_d)).astype(np.float32)


def apply_scratches(x: np.ndarray, geom: ScratchGeometry) -> np.ndarray:
    """Draw the scratches of ``geom`` onto an image or sequence (``geom`` must have ``T`` frames)."""
    x = check_image(x, "apply_scratches")
    a_b, a_d = _alphas(geom, x.shape, "apply_scratches")
    return _composite(x, a_b, a_d)


def _summary(geom: ScratchGeometry, mask: np.ndarray) -> Params:
    k = geom.count
    return {
        "count": i32(k),
        "width_mean": f32(geom.width.mean() if k else 0.0),
        "angle_mean": f32(geom.angle.mean() if k else 0.0),
        "intensity_mean": f32(geom.intensity.mean() if k else 0.0),
        "dark_fraction": f32(geom.dark.mean() if k else 0.0),
        "coverage": f32(mask.mean()),
    }


def scratch_mask(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    *,
    count: Range = (1, 4),
    line_width: Range = (0.5, 1.5),
    angle: Range = (-0.15, 0.15),
    length: Range = (0.3, 1.0),
    bend: Range = (0.0, 1.5),
    intensity: Range = 1.0,
    dark_prob: float = 0.0,
    drift: Range = 0.5,
) -> tuple[np.ndarray, Params]:
    """The mask (``[H, W, 1]`` / ``[T, H, W, 1]`` combined opacity) and params that
    :func:`scratches` would produce for an input of ``shape`` from a generator in the same state
    with the same ranges."""
    check_rng(rng, "scratch_mask")
    if len(shape) not in (3, 4):
        raise ValueError(f"scratch_mask: shape must be (H, W, C) or (T, H, W, C), got {shape!r}")
    shape = tuple(int(v) for v in shape)
    geom = sample_scratch_geometry(
        rng, shape[-3], shape[-2], _frames(shape), count=count, line_width=line_width, angle=angle,
        length=length, bend=bend, intensity=intensity, dark_prob=dark_prob, drift=drift,
    )
    mask = _combined(*_alphas(geom, shape, "scratch_mask"))
    return mask, _summary(geom, mask)


def scratches(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    count: Range = (1, 4),
    line_width: Range = (0.5, 1.5),
    angle: Range = (-0.15, 0.15),
    length: Range = (0.3, 1.0),
    bend: Range = (0.0, 1.5),
    intensity: Range = 1.0,
    dark_prob: float = 0.0,
    drift: Range = 0.5,
) -> tuple[np.ndarray, Params]:
    """Film-scratch sampler (see module doc; ranges as in :func:`sample_scratch_geometry`).

    Accepts images and sequences (persistent scratches with drift). Params: ``count`` (int32),
    ``width_mean``, ``angle_mean``, ``intensity_mean``, ``dark_fraction``, ``coverage`` (mean
    mask opacity) — float32 summary statistics; the mask itself via :func:`scratch_mask`.
    """
    check_rng(rng, "scratches")
    x = check_image(x, "scratches")
    geom = sample_scratch_geometry(
        rng, x.shape[-3], x.shape[-2], _frames(x.shape), count=count, line_width=line_width, angle=angle,
        length=length, bend=bend, intensity=intensity, dark_prob=dark_prob, drift=drift,
    )
    a_b, a_d = _alphas(geom, x.shape, "scratches")
    return _composite(x, a_b, a_d), _summary(geom, _combined(a_b, a_d))
