"""Kernel blur: per-sample 2-D convolution with reflect padding, plus random-kernel samplers.

``convolve(x, kernel)`` is a true convolution (the kernel is flipped, ``y = x * k``), applied per
channel, with the border padded by whole-sample reflection (``np.pad(mode="reflect")``, i.e.
``d c b | a b c d``, OpenCV's ``BORDER_REFLECT_101``). It accepts an image ``[H, W, C]`` or a
sequence ``[T, H, W, C]``; a sequence is blurred with the *same* kernel in every frame (the
thesis' "constant degradation over the clip", seed_000 §4.2). It runs as an FFT convolution over
the padded image (``scipy.signal.fftconvolve``); the result is clipped to ``[0, 1]`` (removes
float round-off; a non-negative normalised kernel cannot leave the range otherwise).

Samplers (``f(rng, x, **ranges) -> (y, params)``): :func:`gaussian_blur`,
:func:`generalized_gaussian_blur`, :func:`motion_blur`, and :func:`random_blur` (a mixture of the
kernel families). Params always hold the kernel parameters *and* the kernel itself, zero-padded to
the largest allowed size (key ``kernel``), so controllable models can be conditioned on either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.signal

from restore_jax.degradations import kernels as K
from restore_jax.degradations._common import (
    Params,
    Range,
    check_image,
    check_rng,
    draw_float,
    f32,
    i32,
    range_max,
)

__all__ = [
    "KERNEL_KINDS",
    "convolve",
    "gaussian_blur",
    "generalized_gaussian_blur",
    "motion_blur",
    "random_blur",
    "sample_kernel",
]

#: Kernel family codes recorded in ``params["kind"]``.
KERNEL_KINDS = {"isotropic": 0, "anisotropic": 1, "generalized": 2, "motion": 3}

_PI = math.pi


def convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur an image ``[H, W, C]`` or sequence ``[T, H, W, C]`` with one 2-D kernel (see module doc)."""
    x = check_image(x, "convolve")
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"convolve: expected a 2-D kernel with odd sides, got shape {kernel.shape}")
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    pad = [(0, 0)] * x.ndim
    pad[-3], pad[-2] = (ry, ry), (rx, rx)
    xp = np.pad(x, pad, mode="reflect") if (ry or rx) else x
    k = kernel.reshape((1,) * (x.ndim - 3) + kernel.shape + (1,))
    y = scipy.signal.fftconvolve(xp, k, mode="valid", axes=(-3, -2))
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def _sizes(size: int | list, fn: str) -> list[int]:
    sizes = size if isinstance(size, list) else [size]
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 or s % 2 == 0:
            raise ValueError(f"{fn}: size must be an odd positive int or a list of them, got {size!r}")
    return [int(s) for s in sizes]


def sample_kernel(
    rng: np.random.Generator,
    kinds: Sequence[str] = ("isotropic", "anisotropic", "generalized", "motion"),
    probs: Sequence[float] | None = None,
    *,
    sigma1: Range = (0.2, 4.0),
    sigma2: Range = (0.2, 4.0),
    theta: Range = (0.0, _PI),
    beta: Range = (0.5, 4.0),
    length: Range = (3.0, 15.0),
    angle: Range = (0.0, 2 * _PI),
    curvature: Range = (-1.0, 1.0),
    size: int | list = 21,
    fn: str = "sample_kernel",
) -> tuple[np.ndarray, Params]:
    """Draw a kernel family and its parameters; returns ``(kernel [S, S], params)``.

    The random stream is fixed: the family and *every* parameter are drawn each call (unused ones
    are recorded as neutral values), so the draw count does not depend on the outcome.
    Params: ``kind`` (int32, see :data:`KERNEL_KINDS`), ``sigma1``, ``sigma2``, ``theta``,
    ``beta``, ``length``, ``angle``, ``curvature`` (float32), ``size`` (int32) and ``kernel``
    (float32 ``[S_max, S_max]``, zero-padded to the largest allowed size).
    """
    check_rng(rng, fn)
    kinds = list(kinds)
    bad = [k for k in kinds if k not in KERNEL_KINDS]
    if not kinds or bad:
        raise ValueError(f"{fn}: kinds must be a non-empty subset of {sorted(KERNEL_KINDS)}, got {kinds!r}")
    if probs is None:
        probs = [1.0 / len(kinds)] * len(kinds)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(kinds),) or np.any(probs < 0) or not probs.sum() > 0:
        raise ValueError(f"{fn}: probs must be {len(kinds)} non-negative weights, got {probs!r}")
    sizes = _sizes(size, fn)
    if "motion" in kinds and range_max(length) > min(sizes) - 1:
        raise ValueError(
            f"{fn}: motion length range {length!r} does not fit kernel size {min(sizes)} "
            f"(need length <= size - 1)"
        )
    cdf = np.cumsum(probs / probs.sum())
    kind = kinds[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(kinds) - 1)]
    s = sizes[min(int(rng.random() * len(sizes)), len(sizes) - 1)]
    s1 = draw_float(rng, sigma1, "sigma1", fn, low=1e-3)
    s2 = draw_float(rng, sigma2, "sigma2", fn, low=1e-3)
    th = draw_float(rng, theta, "theta", fn)
    b = draw_float(rng, beta, "beta", fn, low=1e-3)
    ln = draw_float(rng, length, "length", fn, low=0.0)
    an = draw_float(rng, angle, "angle", fn)
    cu = draw_float(rng, curvature, "curvature", fn)

    if kind == "isotropic":
        s2, th, b, ln, an, cu = s1, 0.0, 1.0, 0.0, 0.0, 0.0
        k = K.gaussian_kernel(s1, s1, 0.0, s)
    elif kind == "anisotropic":
        b, ln, an, cu = 1.0, 0.0, 0.0, 0.0
        k = K.gaussian_kernel(s1, s2, th, s)
    elif kind == "generalized":
        ln, an, cu = 0.0, 0.0, 0.0
        k = K.generalized_gaussian_kernel(s1, s2, th, b, s)
    else:
        s1, s2, th, b = 0.0, 0.0, 0.0, 1.0
        k = K.motion_kernel(ln, an, cu, s)
    params: Params = {
        "kind": i32(KERNEL_KINDS[kind]),
        "sigma1": f32(s1),
        "sigma2": f32(s2),
        "theta": f32(th),
        "beta": f32(b),
        "length": f32(ln),
        "angle": f32(an),
        "curvature": f32(cu),
        "size": i32(s),
        "kernel": K.pad_kernel(k, max(sizes)),
    }
    return k, params


def random_blur(
    rng: np.random.Generator,
    x: np.ndarray,
    kinds: Sequence[str] = ("isotropic", "anisotropic", "generalized", "motion"),
    probs: Sequence[float] | None = None,
    *,
    sigma1: Range = (0.2, 4.0),
    sigma2: Range = (0.2, 4.0),
    theta: Range = (0.0, _PI),
    beta: Range = (0.5, 4.0),
    length: Range = (3.0, 15.0),
    angle: Range = (0.0, 2 * _PI),
    curvature: Range = (-1.0, 1.0),
    size: int | list = 21,
) -> tuple[np.ndarray, Params]:
    """Blur with a kernel drawn from a mixture of families (ranges and params as in
    :func:`sample_kernel`). Accepts images and sequences (same kernel for all frames)."""
    check_rng(rng, "random_blur")
    x = check_image(x, "random_blur")
    k, params = sample_kernel(
        rng, kinds, probs, sigma1=sigma1, sigma2=sigma2, theta=theta, beta=beta, length=length,
        angle=angle, curvature=curvature, size=size, fn="random_blur",
    )
    return convolve(x, k), params


def _subset(params: Params, keys: Sequence[str]) -> Params:
    return {k: params[k] for k in keys}


def gaussian_blur(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    sigma1: Range = (0.2, 4.0),
    sigma2: Range = (0.2, 4.0),
    theta: Range = (0.0, _PI),
    size: int | list = 21,
    isotropic: bool = False,
) -> tuple[np.ndarray, Params]:
    """Anisotropic (or, with ``isotropic=True``, isotropic) Gaussian blur.

    Defaults follow the DASR anisotropic setting suggested for the blind video restoration model
    (seed_000 §4.2): 21x21 kernels, sigma1, sigma2 in [0.2, 4], theta in [0, pi).
    Params: ``sigma1``, ``sigma2``, ``theta`` (float32), ``size`` (int32), ``kernel``.
    """
    x = check_image(x, "gaussian_blur")
    kind = "isotropic" if isotropic else "anisotropic"
    k, p = sample_kernel(rng, (kind,), sigma1=sigma1, sigma2=sigma2, theta=theta, size=size, fn="gaussian_blur")
    return convolve(x, k), _subset(p, ("sigma1", "sigma2", "theta", "size", "kernel"))


def generalized_gaussian_blur(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    sigma1: Range = (0.2, 4.0),
    sigma2: Range = (0.2, 4.0),
    theta: Range = (0.0, _PI),
    beta: Range = (0.5, 4.0),
    size: int | list = 21,
) -> tuple[np.ndarray, Params]:
    """Generalized-Gaussian blur (shape ``beta``). Params: sigma1, sigma2, theta, beta, size, kernel."""
    x = check_image(x, "generalized_gaussian_blur")
    k, p = sample_kernel(
        rng, ("generalized",), sigma1=sigma1, sigma2=sigma2, theta=theta, beta=beta, size=size,
        fn="generalized_gaussian_blur",
    )
    return convolve(x, k), _subset(p, ("sigma1", "sigma2", "theta", "beta", "size", "kernel"))


def motion_blur(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    length: Range = (3.0, 15.0),
    angle: Range = (0.0, 2 * _PI),
    curvature: Range = (-1.0, 1.0),
    size: int | list = 21,
) -> tuple[np.ndarray, Params]:
    """Blur along a random circular-arc camera path (:func:`kernels.motion_kernel`).

    ``length`` in pixels (must fit: ``<= size - 1``), ``angle`` in radians, ``curvature`` = total
    turning angle in radians. For the FFHQ 9x9 motion kernels of seed_002_003 Part B use
    ``size=9, length=(2.0, 8.0)``. Params: length, angle, curvature, size, kernel.
    """
    x = check_image(x, "motion_blur")
    k, p = sample_kernel(rng, ("motion",), length=length, angle=angle, curvature=curvature, size=size, fn="motion_blur")
    return convolve(x, k), _subset(p, ("length", "angle", "curvature", "size", "kernel"))
