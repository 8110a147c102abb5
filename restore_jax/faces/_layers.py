"""Small NHWC building blocks shared by the face-api re-statements (weights come from a dict).

Padding strings follow TensorFlow's (and ``jax.lax``'s) rule: ``"SAME"`` pads ``total =
max((ceil(n / s) - 1) * s + k - n, 0)`` with ``total // 2`` before and the rest after, which is
what the TF.js graphs these weights were trained/exported with. All convolutions run at
``Precision.HIGHEST`` so results do not depend on TF32/bf16 matmul passes on accelerators.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_DN = ("NHWC", "HWIO", "NHWC")
_HIGHEST = jax.lax.Precision.HIGHEST


def dense(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray | None = None) -> jnp.ndarray:
    """``x @ kernel (+ bias)`` at ``Precision.HIGHEST`` (no TF32 / bf16 passes on accelerators)."""
    y = jnp.matmul(x, kernel, precision=_HIGHEST)
    return y if bias is None else y + bias


def take(weights: Mapping[str, np.ndarray], name: str, shape: Sequence[int], model: str) -> jnp.ndarray:
    """``weights[name]`` as float32 after checking it exists with the expected shape."""
    if name not in weights:
        raise KeyError(f"{model}: tensor {name!r} missing from the weights dict (wrong manifest?)")
    value = np.asarray(weights[name], dtype=np.float32)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{model}: tensor {name!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return jnp.asarray(value)


def random_weights(shapes: Mapping[str, Sequence[int]], seed: int) -> dict[str, np.ndarray]:
    """He-scaled random tensors for the given name -> shape table (tests, shape checks)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        shape = tuple(shape)
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1])) if shape[-1] != 1 else int(np.prod(shape[:2]))
            out[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        elif name.endswith("scale/weights"):
            out[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    return out


def conv2d(x: jnp.ndarray, kernel: jnp.ndarray, stride: int, padding: str) -> jnp.ndarray:
    """Plain 2-D convolution (cross-correlation), NHWC x HWIO."""
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), padding, dimension_numbers=_DN, precision=_HIGHEST
    )


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def depthwise_conv2d(x: jnp.ndarray, kernel: jnp.ndarray, stride: int, padding) -> jnp.ndarray:
    """Depthwise convolution with a TF-layout kernel ``[kh, kw, C, 1]`` (channel multiplier 1).

    Written as a sum of ``kh * kw`` shifted, strided slices times per-channel weights: XLA's CPU
    backend runs grouped convolutions (``feature_group_count=C``) about 20x slower than this, and
    on accelerators the elementwise form fuses well. ``padding``: ``"SAME"``, ``"VALID"`` or
    ``((top, bottom), (left, right))``.
    """
    kh, kw, c, mult = kernel.shape
    if mult != 1:
        raise ValueError(f"depthwise kernels with channel multiplier {mult} are not supported")
    _, h, w, _ = x.shape
    if padding == "SAME":
        pads = (_same_pads(h, kh, stride), _same_pads(w, kw, stride))
    elif padding == "VALID":
        pads = ((0, 0), (0, 0))
    else:
        pads = tuple(tuple(p) for p in padding)
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    oh = (h + sum(pads[0]) - kh) // stride + 1
    ow = (w + sum(pads[1]) - kw) // stride + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + (oh - 1) * stride + 1, stride)
            cols = slice(j, j + (ow - 1) * stride + 1, stride)
            tap = xp[:, rows, cols] * kernel[i, j, :, 0]
            out = tap if out is None else out + tap
    return out


def max_pool(x: jnp.ndarray, window: int, stride: int, padding: str) -> jnp.ndarray:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), padding)


def avg_pool_valid(x: jnp.ndarray, window: int, stride: int) -> jnp.ndarray:
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, window, window, 1), (1, stride, stride, 1), "VALID")
    return summed / float(window * window)


def leaky_relu(x: jnp.ndarray, slope: float = 0.1) -> jnp.ndarray:
    return jnp.where(x >= 0, x, slope * x)


class Conv(nnx.Module):
    """Convolution + bias from stored ``filters`` [kh, kw, in, out] and ``bias`` [out]."""

    def __init__(self, kernel: jnp.ndarray, bias: jnp.ndarray | None, *, stride: int = 1, padding: str = "SAME"):
        self.kernel = nnx.Param(kernel)
        self.bias = nnx.Param(bias) if bias is not None else None
        self.stride = stride
        self.padding = padding

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = conv2d(x, self.kernel[...], self.stride, self.padding)
        return y + self.bias[...] if self.bias is not None else y


class SeparableConv(nnx.Module):
    """Depthwise 3x3 (``depthwise_filter`` [3,3,C,1]) -> pointwise 1x1 (``pointwise_filter``) -> + bias.

    Same as TF's ``separableConv2d`` followed by a bias add: the stride and padding apply to the
    depthwise step; the pointwise step is a 1x1 convolution with stride 1.
    """

    def __init__(self, depthwise: jnp.ndarray, pointwise: jnp.ndarray, bias: jnp.ndarray, *, stride: int = 1,
                 padding: str = "SAME"):
        self.depthwise = nnx.Param(depthwise)
        self.pointwise = nnx.Param(pointwise)
        self.bias = nnx.Param(bias)
        self.stride = stride
        self.padding = padding

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = depthwise_conv2d(x, self.depthwise[...], self.stride, self.padding)
        return conv2d(y, self.pointwise[...], 1, "VALID") + self.bias[...]


def separable(weights: Mapping[str, np.ndarray], prefix: str, cin: int, cout: int, model: str, **kw) -> SeparableConv:
    """Build a :class:`SeparableConv` from ``{prefix}/depthwise_filter``, ``pointwise_filter``, ``bias``."""
    return SeparableConv(
        take(weights, f"{prefix}/depthwise_filter", (3, 3, cin, 1), model),
        take(weights, f"{prefix}/pointwise_filter", (1, 1, cin, cout), model),
        take(weights, f"{prefix}/bias", (cout,), model),
        **kw,
    )


class Jitted:
    """Compile ``module(x)`` once per input shape, with the module's state as a traced argument.

    ``nnx.split`` happens at construction, so later calls cost one dispatch. Used by the
    convenience (host-side) entry points of the face nets.
    """

    def __init__(self, module: nnx.Module, method: str = "__call__"):
        graphdef, self._state = nnx.split(module)

        def apply(state, *args):
            return getattr(nnx.merge(graphdef, state), method)(*args)

        self._apply = jax.jit(apply)

    def __call__(self, *args):
        return self._apply(self._state, *args)


_JIT_CACHE: "weakref.WeakKeyDictionary[nnx.Module, dict[str, Jitted]]" = weakref.WeakKeyDictionary()


def jitted(module: nnx.Module, method: str = "__call__") -> Jitted:
    """A cached :class:`Jitted` wrapper of ``module.method`` (one per module instance and method)."""
    per_module = _JIT_CACHE.setdefault(module, {})
    if method not in per_module:
        per_module[method] = Jitted(module, method)
    return per_module[method]
