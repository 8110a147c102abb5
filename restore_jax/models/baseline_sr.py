"""``baseline_sr``: a small residual x4 face super-resolution network, the engine's reference method.

Architecture (NHWC, EDSR-baseline style, no normalisation):

    lr -> conv3x3 (head, C) -> N x ResidualBlock(C) -> conv3x3 (+ head features)
       -> PixelShuffleUpsampler(C, scale) -> conv3x3 (3, zero-initialised) -> + skip(lr)

``skip`` is the global image skip: MATLAB-bicubic upsampling of the input (``'bicubic'``, the
protocol's own bicubic baseline), bilinear, or none. The last convolution starts at zero, so an
untrained model outputs exactly the skip: training starts at bicubic and only has to learn the
residual detail.

Recipe: supervised step with an L1 / Charbonnier / MSE pixel loss between ``G(lr)`` and ``hr``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from restore_jax.losses.pixel import pixel_loss
from restore_jax.nn.blocks import PixelShuffleUpsampler, ResidualBlock, conv
from restore_jax.ops.resize import imresize_up_integer
from restore_jax.train.errors import ConfigError
from restore_jax.train.recipe import Recipe

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


def make_recipe(config) -> Recipe:
    """Supervised recipe: ``loss(G(batch[input]), batch[target])``."""
    lr_key, hr_key = config.model.input_key, config.model.target_key
    kind, eps = config.loss.kind, config.loss.get("eps", 1e-3)

    def loss_fn(models, batch, rng):
        del rng
        pred = models["G"](batch[lr_key])
        kwargs = {"eps": eps} if kind == "charbonnier" else {}
        loss = pixel_loss(kind, pred, batch[hr_key], **kwargs)
        return loss, {f"loss/{kind}": loss}

    def predict(models, batch):
        return models["G"](batch[lr_key])

    return Recipe(
        networks={"G": functools.partial(build_model, config.model)},
        losses={"G": loss_fn},
        step_kind="supervised",
        primary="G",
        input_keys=(lr_key,),
        batch_keys=(lr_key, hr_key),
        predict=predict,
        image_keys=(lr_key, hr_key),
        evaluators=tuple(config.eval.protocols),
    )


def validate(config, *, num_devices=None, process_count=1) -> None:
    """Method checks: known loss/skip, a scale the upsampler supports."""
    m = config.model
    if m.scale not in (2, 3, 4, 8):
        raise ConfigError(f"model.scale must be 2, 3, 4 or 8, got {m.scale}")
    if m.skip not in SKIPS:
        raise ConfigError(f"model.skip={m.skip!r} is not one of {SKIPS}")
    if config.loss.kind not in ("l1", "mse", "charbonnier"):
        raise ConfigError(f"loss.kind={config.loss.kind!r} is not one of 'l1', 'mse', 'charbonnier'")
    if config.train.step_kind != "supervised":
        raise ConfigError("baseline_sr trains with train.step_kind='supervised'")
    hr = config.data.builder.kwargs.get("hr_size", None)
    for side in (hr,) if isinstance(hr, int) else tuple(hr or ()):
        if side % m.scale:
            raise ConfigError(
                f"data.builder.kwargs.hr_size={hr} is not divisible by model.scale={m.scale}; "
                f"use a multiple of {m.scale}"
            )
    if num_devices is not None and "sr_psnr_ssim" in config.eval.protocols:
        from configs.common import mesh_sizes

        sizes = mesh_sizes(config, num_devices)
        shards = sizes["data"] * sizes["fsdp"]
        bs = config.eval.sr_psnr_ssim.batch_size or config.train.global_batch_size
        if bs % shards or bs % process_count:
            raise ConfigError(
                f"eval.sr_psnr_ssim.batch_size={bs} must be divisible by the data-parallel size {shards} "
                f"and the process count {process_count}"
            )
