"""``baseline_sr`` recipe: a supervised step with an L1 / Charbonnier / MSE pixel loss between
``G(lr)`` and ``hr``, and the method's config checks."""

from __future__ import annotations

import functools

from restore_jax.config.schema import check_eval_batch
from restore_jax.errors import ConfigError
from restore_jax.losses.pixel import pixel_loss
from restore_jax.methods.baseline_sr.model import SKIPS, build_model
from restore_jax.train.recipe import Recipe


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
    )


def validate(config, *, num_devices=None, process_count=1) -> None:
    """Method checks: known loss/skip, a scale the upsampler supports, positive widths."""
    m = config.model
    if m.scale not in (2, 3, 4, 8):
        raise ConfigError(f"model.scale must be 2, 3, 4 or 8, got {m.scale}")
    for key, minimum in (("channels", 1), ("num_blocks", 0)):
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"model.{key} must be an integer >= {minimum}, got {value!r}")
    if not float(m.get("res_scale", 1.0)) > 0:
        raise ConfigError(f"model.res_scale must be > 0, got {m.res_scale}")
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
    if "sr_psnr_ssim" in config.eval.protocols:
        bs = int(config.eval.sr_psnr_ssim.batch_size or config.train.global_batch_size)
        check_eval_batch(config, "sr_psnr_ssim.batch_size", bs, num_devices=num_devices, process_count=process_count)
