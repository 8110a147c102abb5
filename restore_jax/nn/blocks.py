"""Shared Flax NNX building blocks (NHWC).

- :func:`conv` — a ``nnx.Conv`` with "SAME" padding and a scaled He-normal init;
- :class:`ResidualBlock` — ``x + s * conv(act(conv(x)))`` (EDSR-style, no normalisation);
- :class:`PixelShuffleUpsampler` — ``(conv -> pixel_shuffle(2) -> act)`` repeated for a power-of-two
  factor, or one ``conv -> pixel_shuffle(3)`` for x3.

The blocks hold float32 parameters; the training step casts them to the compute dtype before
merging, so no dtype is fixed here.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from restore_jax.ops import pixel_shuffle


def conv(
    in_ch: int,
    out_ch: int,
    *,
    kernel: int = 3,
    rngs: nnx.Rngs,
    init_scale: float = 1.0,
    zero_init: bool = False,
) -> nnx.Conv:
    """3x3 (by default) "SAME" convolution; ``init_scale`` scales a He-normal init, ``zero_init`` zeros it."""
    if zero_init:
        kinit = nnx.initializers.zeros_init()
    else:
        kinit = nnx.initializers.variance_scaling(2.0 * init_scale**2, "fan_in", "normal")
    return nnx.Conv(in_ch, out_ch, (kernel, kernel), padding="SAME", kernel_init=kinit, rngs=rngs)


class ResidualBlock(nnx.Module):
    """``x + res_scale * conv2(relu(conv1(x)))`` with constant channel count."""

    def __init__(self, channels: int, *, res_scale: float = 1.0, rngs: nnx.Rngs):
        self.conv1 = conv(channels, channels, rngs=rngs)
        self.conv2 = conv(channels, channels, rngs=rngs, init_scale=0.1)
        self.res_scale = res_scale

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.res_scale * self.conv2(jax.nn.relu(self.conv1(x)))


class PixelShuffleUpsampler(nnx.Module):
    """Sub-pixel upsampling by ``scale`` (a power of two, or 3) keeping ``channels`` features."""

    def __init__(self, channels: int, scale: int, *, rngs: nnx.Rngs):
        if scale == 3:
            factors = [3]
        elif scale >= 2 and (scale & (scale - 1)) == 0:
            factors = [2] * int(math.log2(scale))
        else:
            raise ValueError(f"PixelShuffleUpsampler supports scale 2^k or 3, got {scale}")
        self.factors = tuple(factors)
        self.convs = nnx.List([conv(channels, channels * f * f, rngs=rngs) for f in factors])

    def __call__(self, x: jax.Array) -> jax.Array:
        for f, c in zip(self.factors, self.convs):
            x = jax.nn.leaky_relu(pixel_shuffle(c(x), f), 0.1)
        return x
