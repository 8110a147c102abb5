"""MATLAB-compatible bicubic ``imresize`` (NumPy on the host, JAX on the accelerator).

Why: most super-resolution papers build their low-resolution inputs (and compute PSNR/SSIM on
outputs) with MATLAB's ``imresize(img, scale, 'bicubic')``. MATLAB's bicubic differs from the
resizers in PIL, OpenCV, ``jax.image.resize`` and torch: it uses the Keys cubic with ``a = -0.5``,
*widens the kernel when downscaling* (built-in antialiasing), mirrors the border symmetrically and
renormalises the weights. Models trained on LR images from another resizer lose a noticeable
fraction of a dB when evaluated on MATLAB-made LR images, so the data pipeline has to match.

What MATLAB does, per axis (1-based coordinates, input length ``n``, output length ``m``):

* output length ``m = ceil(scale * n)`` when a scale is given; when an output size is given the
  per-axis scale is ``m / n``;
* kernel ``k(x)`` = Keys cubic (``a = -0.5``), support ``[-2, 2]``, width 4. When ``scale < 1`` and
  antialiasing is on, the kernel is stretched: ``h(x) = scale * k(scale * x)``, width ``4 / scale``;
* output pixel ``x = 1..m`` maps to input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``;
  taps are ``left + 0 .. left + P - 1`` with ``left = floor(u - width / 2)`` and
  ``P = ceil(width) + 2``; weights ``h(u - tap)`` are normalised to sum to 1 per output pixel;
* out-of-range taps are mirrored symmetrically, edge sample included (``0 -> 1``, ``-1 -> 2``,
  ``n + 1 -> n``), i.e. indexing into ``[1..n, n..1]`` periodically; all-zero tap columns are dropped
  (an efficiency step with no effect on the result);
* the two axes are resized one after the other, the axis with the smaller scale first (ties: rows
  first).

Matrix formulation: each axis is a linear map, so the per-output weights and (mirrored) indices are
folded into a dense ``[m, n]`` matrix (weights of taps that mirror onto the same input sample are
added). The resize is then ``R_h @ X @ R_w^T`` per channel: two matmuls, which is fast on
accelerators, trivially differentiable and identical to MATLAB's gather-and-weight loop up to
floating-point summation order. The matrices are built once per (length, size, scale) in float64
NumPy at trace time and cached; ``imresize_np`` and ``imresize`` share them.

Notes:

* dtypes: ``imresize_np`` computes in float64 and returns the input's float dtype. For ``uint8``
  input it mimics MATLAB, whose intermediate image keeps the input class: after *each* axis pass
  the result is rounded half away from zero and saturated to ``[0, 255]``; the output is ``uint8``.
* ``imresize`` (JAX) takes floating inputs only; float32 / bfloat16 / float16 are computed in
  float32 at ``HIGHEST`` matmul precision (no TF32/bf16 passes) and cast back to the input dtype.
  Values are not clipped: bicubic overshoot outside ``[0, 1]`` is kept, as MATLAB does for floats.
* Only the ``'bicubic'`` method is provided (the one SR papers use).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["imresize", "imresize_np", "imresize_up_integer", "resize_matrix"]

_KERNEL_WIDTH = 4.0  # support of the Keys cubic: [-2, 2]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return near + far


def _contributions(
    in_len: int, out_len: int, scale: float, antialiasing: bool
) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's per-output weights ``[out_len, P]`` and 0-based mirrored input indices ``[out_len, P]``."""
    if scale < 1.0 and antialiasing:

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)

        width = _KERNEL_WIDTH / scale
    else:
        kernel = _cubic
        width = _KERNEL_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based output coordinates
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may be out of range
    weights = kernel(u[:, None] - idx)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric padding: periodic indexing into [1..n, n..1] (0-based here).
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    idx0 = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0.0, axis=0)
    return weights[:, keep], idx0[:, keep]


@functools.lru_cache(maxsize=256)
def _resize_matrix_cached(in_len: int, out_len: int, scale: float, antialiasing: bool) -> np.ndarray:
    weights, idx = _contributions(in_len, out_len, scale, antialiasing)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], idx.shape)
    np.add.at(mat, (rows, idx), weights)  # taps mirrored onto the same sample add up
    mat.flags.writeable = False
    return mat


def resize_matrix(in_len: int, out_len: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """Dense float64 ``[out_len, in_len]`` matrix of MATLAB's bicubic resize along one axis.

    ``scale`` is the factor MATLAB uses for the weights (the given scale, or ``out_len / in_len``
    when an output size was given). The returned array is cached and read-only.
    """
    return _resize_matrix_cached(int(in_len), int(out_len), float(scale), bool(antialiasing))


def _pair(value, name: str) -> tuple:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (value, value)
    if (isinstance(value, Sequence) and not isinstance(value, str)) or isinstance(value, np.ndarray):
        if np.ndim(value) == 1 and len(value) == 2:
            return tuple(v.item() if isinstance(v, np.generic) else v for v in value)
    raise ValueError(f"imresize: {name} must be a number or a pair of numbers (rows, cols), got {value!r}")


def _plan(
    in_hw: tuple[int, int],
    scale: float | tuple[float, float] | None,
    size: tuple[int, int] | None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output size and per-axis scale, following MATLAB's rules; validates the arguments."""
    if (scale is None) == (size is None):
        raise ValueError(
            "imresize: give exactly one of `scale` (e.g. scale=0.25) or `size` (e.g. size=(32, 32)), "
            f"got scale={scale!r}, size={size!r}"
        )
    if any(n < 1 for n in in_hw):
        raise ValueError(f"imresize: input spatial size must be positive, got {in_hw}")
    if scale is not None:
        scales = tuple(float(s) for s in _pair(scale, "scale"))
        if not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"imresize: scale must be positive and finite, got {scale!r}")
        out_hw = tuple(int(math.ceil(s * n)) for s, n in zip(scales, in_hw))
    else:
        sz = _pair(size, "size")
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in sz):
            raise ValueError(f"imresize: size must be a pair of positive integers (rows, cols), got {size!r}")
        out_hw = tuple(int(v) for v in sz)
        if not all(v > 0 for v in out_hw):
            raise ValueError(f"imresize: size must be positive, got {size!r}")
        scales = tuple(o / n for o, n in zip(out_hw, in_hw))
    return out_hw, scales  # type: ignore[return-value]


def _axis_order(scales: tuple[float, float]) -> tuple[int, int]:
    """MATLAB resizes the axis with the smaller scale first (stable: rows first on ties)."""
    return (1, 0) if scales[1] < scales[0] else (0, 1)


def _spatial_axes(ndim: int, fn: str) -> tuple[int, int]:
    if ndim == 2:
        return (0, 1)
    if ndim >= 3:
        return (ndim - 3, ndim - 2)
    raise ValueError(f"{fn}: expected an HW, HWC or [..., H, W, C] array, got rank {ndim}")


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8 conversion: saturate, round half away from zero."""
    return np.floor(np.clip(x, 0.0, 255.0) + 0.5)


def imresize_np(
    x: np.ndarray,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    *,
    antialiasing: bool = True,
) -> np.ndarray:
    """MATLAB ``imresize(x, scale | size, 'bicubic')`` on the host (NumPy).

    ``x``: HW, HWC or [..., H, W, C] (channel last). Float input keeps its dtype (computed in
    float64); uint8 input is rounded/saturated after each axis pass like MATLAB and stays uint8.
    """
    x = np.asarray(x)
    axes = _spatial_axes(x.ndim, "imresize_np")
    is_uint8 = x.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"imresize_np: expected a float or uint8 array, got dtype {x.dtype}; cast it first")
    out_hw, scales = _plan((x.shape[axes[0]], x.shape[axes[1]]), scale, size)
    y = x.astype(np.float64)
    for k in _axis_order(scales):
        ax = axes[k]
        mat = resize_matrix(y.shape[ax], out_hw[k], scales[k], antialiasing)
        y = np.moveaxis(np.tensordot(mat, y, axes=([1], [ax])), 0, ax)
        if is_uint8:
            y = _round_uint8(y)
    return y.astype(x.dtype)


def imresize(
    x: jax.Array,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    *,
    antialiasing: bool = True,
) -> jax.Array:
    """MATLAB ``imresize(x, scale | size, 'bicubic')`` in JAX, as two matmuls.

    ``x``: [..., H, W, C] floating (NHWC or HWC; a 2-D array is taken as HW). ``scale`` / ``size``
    / ``antialiasing`` must be static Python values (e.g. ``jax.jit(partial(imresize, scale=0.25))``).
    Computed in float32 (or float64 if given and x64 is on) and returned in the input dtype.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"imresize: expected a floating array, got dtype {x.dtype}; convert it (e.g. x / 255.0), "
            "or use imresize_np for MATLAB's uint8 rounding"
        )
    axes = _spatial_axes(x.ndim, "imresize")
    out_hw, scales = _plan((x.shape[axes[0]], x.shape[axes[1]]), scale, size)
    compute = jnp.promote_types(x.dtype, jnp.float32)
    y = x.astype(compute)
    for k in _axis_order(scales):
        ax = axes[k]
        mat = jnp.asarray(resize_matrix(y.shape[ax], out_hw[k], scales[k], antialiasing), dtype=compute)
        y = jnp.tensordot(mat, y, axes=([1], [ax]), precision=jax.lax.Precision.HIGHEST)
        y = jnp.moveaxis(y, 0, ax)
    return y.astype(x.dtype)


def _upscale_phase_taps(scale: int) -> np.ndarray:
    """``[scale, 5]`` float64 weights: output phase ``p`` of MATLAB's x``scale`` bicubic, taps ``-2..2``.

    Output pixel ``o = scale * i + p`` (0-based) sits at input coordinate ``i + d_p`` with
    ``d_p = (p + 0.5) / scale - 0.5`` (MATLAB's ``u = x / s + 0.5 (1 - 1 / s)`` in 0-based form);
    its weights are ``cubic(d_p - t)`` for taps ``i + t``, ``|d_p| < 1/2`` so taps ``-2..2`` cover
    the support, renormalised to sum to 1 as MATLAB does (the Keys cubic already sums to 1).
    """
    d = (np.arange(scale, dtype=np.float64) + 0.5) / scale - 0.5
    w = _cubic(d[:, None] - np.arange(-2, 3, dtype=np.float64)[None, :])
    return w / w.sum(axis=1, keepdims=True)


def _pad_symmetric2(x: jax.Array, axis: int) -> jax.Array:
    """Two samples of MATLAB's symmetric border on each side (``-1 -> 0``, ``-2 -> 1``, ``n -> n-1``).

    A gather with mirrored indices (clipped, so a length-1 axis repeats its sample as MATLAB does):
    unlike ``jnp.pad(mode='symmetric')`` it also traces with symbolic sizes (``jax.export``), where
    the axis length is not known to be at least 2.
    """
    n = x.shape[axis]
    i = jnp.arange(n + 4, dtype=jnp.int32) - 2
    i = jnp.where(i < 0, -1 - i, jnp.where(i >= n, 2 * n - 1 - i, i))
    return jnp.take(x, jnp.clip(i, 0, n - 1), axis=axis, mode="clip")


def imresize_up_integer(x: jax.Array, scale: int) -> jax.Array:
    """MATLAB ``imresize(x, scale, 'bicubic')`` for an integer up-scaling ``scale >= 1``, shape-agnostic.

    For an integer up-scaling every output phase ``p`` (``o = scale * i + p``) uses one fixed 4-tap
    Keys filter (written with 5 taps ``-2..2``, the unused one zero), so the resize is: pad two
    samples symmetrically (MATLAB's border rule), one depthwise 5x5 convolution with
    ``scale * scale`` phase kernels per channel (outer products of the 1-D phase filters), and a
    :func:`~restore_jax.ops.pixel.pixel_shuffle` interleaving the phases. Unlike :func:`imresize`
    it needs no concrete height / width, so it traces with ``jax.export``'s symbolic sizes.
    ``x``: NHWC floating; computed in float32 at ``HIGHEST`` precision, returned in ``x``'s dtype.
    Equal to :func:`imresize` ``(x, scale=scale)`` up to float rounding.
    """
    from restore_jax.ops.pixel import pixel_shuffle

    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"imresize_up_integer: scale must be an integer >= 1, got {scale!r}; use imresize otherwise")
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"imresize_up_integer expects an NHWC array, got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"imresize_up_integer: expected a floating array, got dtype {x.dtype}")
    scale = int(scale)
    if scale == 1:
        return x
    compute = jnp.promote_types(x.dtype, jnp.float32)
    c = x.shape[-1]
    y = _pad_symmetric2(_pad_symmetric2(x.astype(compute), 1), 2)
    taps = _upscale_phase_taps(scale)  # [s, 5]
    # kernel [5, 5, 1, C*s*s]; output channel ch*s*s + p*s + q holds taps[p] (rows) x taps[q] (cols),
    # the channel order pixel_shuffle expects.
    k2 = np.einsum("pa,qb->abpq", taps, taps).reshape(5, 5, 1, scale * scale)
    kernel = jnp.asarray(np.tile(k2, (1, 1, 1, c)), compute)
    y = jax.lax.conv_general_dilated(
        y,
        kernel,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
        precision=jax.lax.Precision.HIGHEST,
    )
    return pixel_shuffle(y, scale).astype(x.dtype)
