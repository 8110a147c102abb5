"""Deformable convolution layers (NNX) on top of :func:`restore_jax.ops.deform_conv2d`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from restore_jax.ops.deform_conv import deform_conv2d


class ModulatedDeformConv(nnx.Module):
    """DCNv2 whose offsets and mask are predicted from a separate *offset feature*.

    This is the layer the EDVR family (and Zooming Slow-Mo) call ``DCN_sep``: a zero-initialised
    ``kernel_size`` conv maps the offset feature to ``3*G*kh*kw`` channels, split into two offset
    halves and a mask half; ``offset = concat(o1, o2)`` (torchvision's interleaved (dy, dx) per tap and
    group) and ``mask = sigmoid(m)``. With zero init, training starts from a plain convolution with
    mask 0.5. :meth:`offsets` exposes the predicted offsets, e.g. to monitor their magnitude.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        offset_features: int | None = None,
        kernel_size: int = 3,
        deformable_groups: int = 8,
        rngs: nnx.Rngs,
    ):
        if in_features % deformable_groups:
            raise ValueError(f"in_features={in_features} is not divisible by deformable_groups={deformable_groups}")
        k = kernel_size
        self.kernel_size = k
        self.deformable_groups = deformable_groups
        bound = 1.0 / math.sqrt(in_features * k * k)
        self.kernel = nnx.Param(
            jax.random.uniform(rngs.params(), (k, k, in_features, out_features), jnp.float32, -bound, bound)
        )
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        self.conv_offset_mask = nnx.Conv(
            offset_features or in_features,
            3 * deformable_groups * k * k,
            (k, k),
            padding=k // 2,
            kernel_init=nnx.initializers.zeros,
            bias_init=nnx.initializers.zeros,
            rngs=rngs,
        )

    def offsets(self, offset_feature: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(offset [B,H,W,2*G*k*k], mask [B,H,W,G*k*k])`` predicted from ``offset_feature``."""
        o1, o2, m = jnp.split(self.conv_offset_mask(offset_feature), 3, axis=-1)
        return jnp.concatenate([o1, o2], axis=-1), jax.nn.sigmoid(m)

    def __call__(self, x: jnp.ndarray, offset_feature: jnp.ndarray) -> jnp.ndarray:
        offset, mask = self.offsets(offset_feature)
        kernel = self.kernel[...].astype(x.dtype)
        return deform_conv2d(
            # Offsets and mask keep their own precision: in bfloat16 an offset of ~5 px resolves to
            # only ~0.03 px, so they are not cast down to x's dtype.
            x, offset, mask, kernel, self.bias[...].astype(x.dtype),
            padding=self.kernel_size // 2, deformable_groups=self.deformable_groups,
        )
