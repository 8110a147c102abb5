"""Chain samplers by name: ``Compose([("blur", {...}), ("downsample", {...}), ...])``.

A :class:`Compose` is a picklable callable ``(rng, x) -> (y, params)`` (Grain runs it in worker
processes): it stores sampler *names*, their keyword ranges and the resolved module-level sampler
functions, nothing else. Params of each step are prefixed with the step's label
(``"blur/sigma1"``); ``params["order"]`` (int32 ``[n_steps]``) lists the step indices in the order
they were applied (``0..n-1`` unless ``random_order=True``, in which case a permutation is drawn
first from ``rng``). Steps run in sequence on the same generator, so the whole chain is a pure
function of the generator state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from restore_jax.degradations import blur, color, compression, film, geometry, multiframe, noise, resampling, temporal
from restore_jax.degradations._common import Params, check_rng, i32, prefix_params

__all__ = ["SAMPLERS", "Compose", "register_sampler"]

Sampler = Callable[..., tuple[np.ndarray, Params]]

#: Name -> sampler registry used by :class:`Compose`.
SAMPLERS: dict[str, Sampler] = {
    "blur": blur.random_blur,
    "gaussian_blur": blur.gaussian_blur,
    "generalized_gaussian_blur": blur.generalized_gaussian_blur,
    "motion_blur": blur.motion_blur,
    "downsample": resampling.downsample,
    "noise": noise.gaussian_noise,
    "gaussian_noise": noise.gaussian_noise,
    "poisson_noise": noise.poisson_noise,
    "salt_pepper_noise": noise.salt_pepper_noise,
    "mixed_noise": noise.mixed_noise,
    "jpeg": compression.jpeg,
    "scratches": film.scratches,
    "color_jitter": color.color_jitter,
    "flip_rotate": geometry.random_flip_rotate,
    "frame_average": temporal.frame_average,
    "temporal_subsample": temporal.temporal_subsample,
    "burst": multiframe.burst,
}


def register_sampler(name: str, fn: Sampler) -> None:
    """Add a sampler ``fn(rng, x, **ranges) -> (y, params)`` under ``name``.

    Use a module-level function (not a lambda or closure) so that Compose objects stay picklable.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"register_sampler: name must be a non-empty string without '/', got {name!r}")
    if not callable(fn):
        raise ValueError(f"register_sampler: {name!r} is not callable")
    SAMPLERS[name] = fn


class Compose:
    """Apply a chain of named samplers and merge their params with ``label/`` prefixes.

    ``steps``: sequence of ``(name, kwargs)`` or ``(name, kwargs, label)``; ``label`` defaults to
    ``name`` and must be unique (give one when a sampler appears twice). Keyword arguments are
    checked against the sampler's signature at construction time.
    """

    def __init__(self, steps: Sequence[tuple], random_order: bool = False):
        parsed: list[tuple[str, dict[str, Any], str]] = []
        for i, step in enumerate(steps):
            if not isinstance(step, (tuple, list)) or len(step) not in (2, 3):
                raise ValueError(f"Compose: step {i} must be (name, kwargs) or (name, kwargs, label), got {step!r}")
            name, kwargs = step[0], step[1]
            label = step[2] if len(step) == 3 else name
            if name not in SAMPLERS:
                raise ValueError(f"Compose: unknown sampler {name!r}; known: {sorted(SAMPLERS)}")
            if not isinstance(kwargs, Mapping):
                raise ValueError(f"Compose: kwargs of step {i} ({name!r}) must be a dict, got {kwargs!r}")
            if not isinstance(label, str) or not label or "/" in label or label == "order":
                raise ValueError(f"Compose: label of step {i} must be a string without '/' (not 'order'), got {label!r}")
            try:
                inspect.signature(SAMPLERS[name]).bind(None, None, **kwargs)
            except TypeError as err:
                raise ValueError(f"Compose: bad arguments for sampler {name!r}: {err}") from None
            parsed.append((name, dict(kwargs), label))
        labels = [p[2] for p in parsed]
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dup:
            raise ValueError(f"Compose: duplicate step labels {dup}; pass (name, kwargs, label) with unique labels")
        self.steps = parsed
        self.random_order = bool(random_order)
        self._fns = [SAMPLERS[name] for name, _, _ in parsed]

    def __call__(self, rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, Params]:
        check_rng(rng, "Compose")
        n = len(self.steps)
        order = rng.permutation(n) if self.random_order else np.arange(n)
        params: Params = {"order": i32(order)}
        y = x
        for idx in order:
            name, kwargs, label = self.steps[int(idx)]
            y, p = self._fns[int(idx)](rng, y, **kwargs)
            params.update(prefix_params(p, label))
        return y, params

    def __repr__(self) -> str:
        inner = ", ".join(f"({n!r}, {k!r}, {lab!r})" for n, k, lab in self.steps)
        return f"Compose([{inner}], random_order={self.random_order})"
