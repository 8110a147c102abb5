"""``baseline_sr``: a small residual x4 face super-resolution network, the engine's reference method.

Architecture (NHWC, EDSR-baseline style, no normalisation):

    lr -> conv3x3 (head, C) -> N x ResidualBlock(C) -> conv3x3 (+ head features)
       -> PixelShuffleUpsampler(C, scale) -> conv3x3 (3, zero-initialised) -> + skip(lr)

``skip`` is the global image skip: MATLAB-bicubic upsampling of the input (``'bicubic'``, the
protocol's own bicubic baseline), bilinear, or none. The last convolution starts at zero, so an
untrained model outputs exactly the skip: training starts at bicubic and only has to learn the
residual detail.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from restore_jax.nn.blocks import PixelShuffleUpsampler, ResidualBlock, conv
from restore_jax.ops.resize import imresize_up_integer

SKIPS = ("bicubic", "bilinear", "none")


def upsample_skip(x: jax.Array, scale: int, kind: str) -> jax.Array:
    """The global skip: ``kind`` upsampling of ``x`` by ``scale`` (``'none'`` gives zeros)."""
    if kind == "bicubic":  # MATLAB bicubic as a fixed polyphase filter: exportable with symbolic sizes
        return imresize_up_integer(x, scale)
    if kind == "bilinear":
        b, h, w, c = x.shape
        return jax.image.resize(x, (b, h * scale, w * scale, c), "bilinear").astype(x.dtype)
    if kind == "none":
        b, h, w, c = x.shape
        return jnp.zeros((b, h * scale, w * scale, c), x.dtype)
    raise ValueError(f"unknown skip {kind!r}; choose one of {SKIPS}")


class BaselineSR(nnx.Module):
    """Residual SR network (see the module docstring)."""

    def __init__(
        self,
        *,
        scale: int = 4,
        channels: int = 32,
        num_blocks: int = 8,
        in_channels: int = 3,
        res_scale: float = 1.0,
        skip: str = "bicubic",
        rngs: nnx.Rngs,
    ):
        if skip not in SKIPS:
            raise ValueError(f"unknown skip {skip!r}; choose one of {SKIPS}")
        self.scale, self.skip = scale, skip
        self.head = conv(in_channels, channels, rngs=rngs)
        self.blocks = nnx.List(
            [ResidualBlock(channels, res_scale=res_scale, rngs=rngs) for _ in range(num_blocks)]
        )
        self.body_tail = conv(channels, channels, rngs=rngs)
        self.upsampler = PixelShuffleUpsampler(channels, scale, rngs=rngs)
        self.tail = conv(channels, in_channels, rngs=rngs, zero_init=True)

    def __call__(self, lr: jax.Array) -> jax.Array:
        if lr.ndim != 4:
            raise ValueError(f"BaselineSR expects NHWC input, got shape {tuple(lr.shape)}")
        feat = self.head(lr)
        x = feat
        for block in self.blocks:
            x = block(x)
        x = self.body_tail(x) + feat
        x = self.tail(self.upsampler(x))
        return x + upsample_skip(lr, self.scale, self.skip).astype(x.dtype)


def build_model(model_config, rngs: nnx.Rngs) -> BaselineSR:
    """``BaselineSR`` from ``config.model``."""
    m = model_config
    return BaselineSR(
        scale=m.scale,
        channels=m.channels,
        num_blocks=m.num_blocks,
        res_scale=m.get("res_scale", 1.0),
        skip=m.skip,
        rngs=rngs,
    )
