"""Shared helpers for the host-side degradation samplers: input checks, range draws, param arrays.

Conventions used by every sampler in this package:

* images are float32 ``[H, W, C]`` in ``[0, 1]``; sequences are ``[T, H, W, C]``;
* a *range* argument is either a fixed number, a ``(low, high)`` **tuple** (uniform draw; for
  integer quantities both ends are inclusive) or a **list** of explicit choices (uniform pick);
* params are flat ``dict[str, np.ndarray]`` of 0-d / 1-d float32 or int32 arrays whose keys and
  shapes never depend on the random draw, so a batch of params stacks with ``np.stack``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

Range = Union[float, int, tuple, list]
Params = dict[str, np.ndarray]

# Tolerance when checking that inputs lie in [0, 1] (float rounding of upstream ops).
_RANGE_TOL = 1e-3


def check_image(
    x: Any,
    fn: str,
    *,
    allow_image: bool = True,
    allow_sequence: bool = True,
    channels: Sequence[int] | None = None,
) -> np.ndarray:
    """Validate ``x`` and return it as a C-contiguous float32 array.

    Accepts float arrays (float64/float16 are converted to float32) with values in ``[0, 1]``.
    Integer images (e.g. uint8) are rejected on purpose: silently rescaling hides 0-255 / 0-1
    mix-ups, so the caller converts explicitly (``x.astype(np.float32) / 255``).
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    allowed = []
    if allow_image:
        allowed.append("an image [H, W, C]")
    if allow_sequence:
        allowed.append("a sequence [T, H, W, C]")
    what = " or ".join(allowed)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{fn}: expected a float image in [0, 1] ({what}), got dtype {x.dtype}. "
            "Convert integer images first, e.g. x.astype(np.float32) / 255."
        )
    ok_ndim = (allow_image and x.ndim == 3) or (allow_sequence and x.ndim == 4)
    if not ok_ndim:
        raise ValueError(
            f"{fn}: expected {what} (channel last), got an array of shape {x.shape}. "
            "Add a trailing channel axis to grayscale images (x[..., None])."
        )
    if min(x.shape) < 1:
        raise ValueError(f"{fn}: got an empty array of shape {x.shape}")
    if channels is not None and x.shape[-1] not in channels:
        raise ValueError(
            f"{fn}: expected {' or '.join(str(c) for c in channels)} channels (last axis), "
            f"got shape {x.shape}"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{fn}: input contains NaN or Inf values")
    if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
        hint = " It looks like a 0-255 image: divide by 255." if hi > 2.0 else ""
        raise ValueError(f"{fn}: expected values in [0, 1], got min {lo:.4g}, max {hi:.4g}.{hint}")
    return x


def is_sequence(x: np.ndarray) -> bool:
    """True for ``[T, H, W, C]`` arrays."""
    return x.ndim == 4


def check_rng(rng: Any, fn: str) -> np.random.Generator:
    """Samplers draw only from an explicit ``numpy.random.Generator`` (reproducibility)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"{fn}: rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_range(spec: Range, name: str, fn: str, *, low: float | None = None, high: float | None = None) -> None:
    """Validate a range argument (number, ``(low, high)`` tuple or list of choices) and its bounds."""
    if _is_number(spec):
        values = [float(spec)]
    elif isinstance(spec, tuple):
        if len(spec) != 2 or not all(_is_number(v) for v in spec):
            raise ValueError(f"{fn}: {name} range must be a (low, high) tuple of numbers, got {spec!r}")
        if spec[0] > spec[1]:
            raise ValueError(f"{fn}: {name} range must have low <= high, got {spec!r}")
        values = [float(v) for v in spec]
    elif isinstance(spec, list):
        if not spec or not all(_is_number(v) for v in spec):
            raise ValueError(f"{fn}: {name} choices must be a non-empty list of numbers, got {spec!r}")
        values = [float(v) for v in spec]
    else:
        raise ValueError(
            f"{fn}: {name} must be a number, a (low, high) tuple or a list of choices, got {spec!r}"
        )
    for v in values:
        if (low is not None and v < low) or (high is not None and v > high):
            raise ValueError(f"{fn}: {name} must lie in [{low}, {high}], got {spec!r}")


def draw_float(rng: np.random.Generator, spec: Range, name: str, fn: str, **bounds: float) -> float:
    """Draw a float from a number / ``(low, high)`` tuple (uniform) / list (uniform choice).

    Always consumes exactly one draw from ``rng`` (also for fixed values) so that changing a range
    into a constant does not shift the random stream of later draws.
    """
    check_range(spec, name, fn, **bounds)
    u = rng.random()
    if _is_number(spec):
        return float(spec)
    if isinstance(spec, tuple):
        return float(spec[0] + (spec[1] - spec[0]) * u)
    return float(spec[min(int(u * len(spec)), len(spec) - 1)])


def draw_log_float(rng: np.random.Generator, spec: Range, name: str, fn: str, **bounds: float) -> float:
    """Like :func:`draw_float` but log-uniform for ``(low, high)`` tuples (both ends > 0)."""
    check_range(spec, name, fn, **bounds)
    u = rng.random()
    if _is_number(spec):
        return float(spec)
    if isinstance(spec, tuple):
        lo, hi = np.log(spec[0]), np.log(spec[1])
        return float(np.exp(lo + (hi - lo) * u))
    return float(spec[min(int(u * len(spec)), len(spec) - 1)])


def draw_int(rng: np.random.Generator, spec: Range, name: str, fn: str, **bounds: float) -> int:
    """Draw an int: number, inclusive ``(low, high)`` tuple, or list of choices. One draw consumed."""
    check_range(spec, name, fn, **bounds)
    u = rng.random()
    if _is_number(spec):
        if int(spec) != spec:
            raise ValueError(f"{fn}: {name} must be an integer, got {spec!r}")
        return int(spec)
    if isinstance(spec, tuple):
        lo, hi = int(np.ceil(spec[0])), int(np.floor(spec[1]))
        if lo > hi:
            raise ValueError(f"{fn}: {name} range {spec!r} contains no integer")
        return lo + min(int(u * (hi - lo + 1)), hi - lo)
    if any(int(v) != v for v in spec):
        raise ValueError(f"{fn}: {name} choices must be integers, got {spec!r}")
    return int(spec[min(int(u * len(spec)), len(spec) - 1)])


def range_max(spec: Range) -> float:
    """Largest value a range argument can produce (for fixed-size padding of recorded arrays)."""
    if _is_number(spec):
        return float(spec)
    return float(max(spec))


def check_prob(p: float, name: str, fn: str) -> float:
    if not _is_number(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{fn}: {name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def f32(v: Any) -> np.ndarray:
    """0-d (or n-d) float32 param array."""
    return np.asarray(v, dtype=np.float32)


def i32(v: Any) -> np.ndarray:
    """0-d (or n-d) int32 param array."""
    return np.asarray(v, dtype=np.int32)


def prefix_params(params: Mapping[str, np.ndarray], prefix: str) -> Params:
    """``{"sigma": a}`` -> ``{"prefix/sigma": a}``."""
    return {f"{prefix}/{k}": v for k, v in params.items()}
