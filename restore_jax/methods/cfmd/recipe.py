"""``cfmd``: the CFMD-GAN training recipe (losses, GAN step, prediction, inference hooks).

Re-stated from the engineering spec ``seed_002_003`` Part A, §A4-A5 (networks: :mod:`restore_jax.methods.cfmd.model`).
One training example is ``(blurred b, sharp target s(u), control u)`` from the ``frame_average_blur``
builder (``u = i / N`` for the ``i``-th frame of the FMR-re-ordered window, 0-based).

Generator loss (``λ_pix = 1``, ``λ_per = 0.01``, ``λ_adv = 0.1``, ``λ_ar = 0.05``)::

    L_pix = sum_{n in 1/4, 1/2, 1} mean sqrt((G(b,u)_n - s_n)^2 + eps^2)     eps = 1e-3
            s_n: the target resized bilinearly (half-pixel centres, no antialiasing, as PyTorch's
            F.interpolate(bilinear, align_corners=False)) to each output's size
    L_per = mean_B LPIPS(G(b,u)_1, s)                                        (full resolution only)
    L_adv = BCE(D_enc(b, G), 1) + mean_hw BCE(D_dec(b, G), 1)                 (non-saturating)
    L_ar  = mean_hw (Q(b, G) - u)^2
    L_G   = λ_pix L_pix + λ_per L_per + λ_adv L_adv + λ_ar L_ar

Discriminator loss (``λ_Q = 0.05``; the spec's corrected signs: BCE on logits)::

    L_D = BCE(D_enc(b,s),1) + BCE(D_enc(b,G),0) + mean_hw[BCE(D_dec(b,s),1) + BCE(D_dec(b,G),0)]
          + λ_Q (mean_hw (Q(b,s) - u)^2 + mean_hw (Q(b,G) - u)^2)

``gan.loss='hinge'`` swaps the BCE terms for hinge ones. The engine's ``gan`` step alternates one D
update (G fixed) and one G update (against the updated D). D is called once per update on the
batch-concatenated real and fake pairs, so its spectral-norm vectors (``extras['model_state']``)
advance by one power iteration per D call, as PyTorch's training-mode ``spectral_norm`` would.

``model.controllable=False`` gives the plain (non-controllable) deblurring baseline: the same
generator with ``u`` fixed at 0.5, trained with the supervised step on ``L_pix`` (+ ``L_per``) only,
against the middle frame of the re-ordered window.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from restore_jax.losses.adversarial import gan_losses
from restore_jax.losses.pixel import charbonnier_loss
from restore_jax.methods.cfmd.model import (
    CFMDDiscriminator,
    CFMDDiscriminatorConfig,
    CFMDGenerator,
    CFMDGeneratorConfig,
    resize_bilinear,
)
from restore_jax.config.schema import check_eval_batch
from restore_jax.errors import ConfigError
from restore_jax.inference.export import ControlSpec
from restore_jax.methods.api import InferenceSpec
from restore_jax.train.recipe import Recipe

BUILDER_NAMES = ("frame_average_blur", "cfmd_blur")
ABLATIONS = ("none", "no_cadc", "no_caca", "no_fmr")
FIXED_U = 0.5  # the plain baseline's (and the default) control value


# --------------------------------------------------------------------------------------------
# Loss terms (pure functions, float32 reductions; tested against NumPy re-statements).


def multiscale_charbonnier(outputs: Sequence[jax.Array], target: jax.Array, eps: float = 1e-3) -> jax.Array:
    """``sum_n mean(sqrt((out_n - resize(target)_n)^2 + eps^2))`` over the generator's outputs."""
    target = target.astype(jnp.float32)
    total = jnp.zeros((), jnp.float32)
    for out in outputs:
        _, h, w, _ = out.shape
        t = target if (h, w) == target.shape[1:3] else resize_bilinear(target, h, w)
        total = total + charbonnier_loss(out, t, eps)
    return total


def u_regression(u_map: jax.Array, u: jax.Array) -> jax.Array:
    """``mean_{b,h,w} (u_map[b,h,w] - u[b])^2``: the auxiliary regressor's loss against ``u_2D``."""
    u = jnp.asarray(u, jnp.float32).reshape(-1, 1, 1)
    return jnp.mean(jnp.square(u_map.astype(jnp.float32) - u))


def adversarial_terms(kind: str, real, fake) -> tuple[jax.Array, jax.Array]:
    """``(L_D, L_G)`` summed over the global and the per-pixel heads for one GAN loss kind.

    ``real`` / ``fake``: ``(global_logits [B], pixel_logits [B, H, W])``; ``real`` may be ``None``
    (generator side only, ``L_D`` is then 0). Per-pixel terms are means over ``B, H, W``.
    """
    d_fn, g_fn = gan_losses(kind)
    g = g_fn(fake[0]) + g_fn(fake[1])
    if real is None:
        return jnp.zeros((), jnp.float32), g
    d = d_fn(real[0], fake[0]) + d_fn(real[1], fake[1])
    return d, g


@functools.lru_cache(maxsize=4)
def lpips_module(net: str = "alex"):
    """The LPIPS loss network for images in [0, 1] (built once, eagerly: safe to call inside ``jit``)."""
    from restore_jax.metrics.lpips import LPIPS

    with jax.ensure_compile_time_eval():
        return LPIPS(net, input_range="[0,1]", precision=None)


def perceptual_loss(pred: jax.Array, target: jax.Array, net: str = "alex") -> jax.Array:
    """Mean LPIPS (``net`` trunk, images in [0, 1]) between ``pred`` and ``target``; float32 scalar."""
    lp = lpips_module(net)
    return jnp.mean(lp(pred.astype(jnp.float32), target.astype(jnp.float32)))


def gather_frame(frames: jax.Array, index: jax.Array) -> jax.Array:
    """``frames [B, M, H, W, C]``, ``index [B]`` -> ``frames[b, index[b]]`` ``[B, H, W, C]``."""
    idx = jnp.asarray(index, jnp.int32).reshape(-1, 1, 1, 1, 1)
    return jnp.take_along_axis(frames, idx, axis=1)[:, 0]


# --------------------------------------------------------------------------------------------
# Networks from the config.


def generator_config(m) -> CFMDGeneratorConfig:
    """``CFMDGeneratorConfig`` from ``config.model`` (ablation switches included)."""
    return CFMDGeneratorConfig(
        widths=tuple(int(w) for w in m.widths),
        blocks_per_stage=int(m.blocks_per_stage),
        mapping_layers=int(m.mapping_layers),
        mapping_width=int(m.mapping_width),
        control_features=int(m.control_features),
        use_deformable=bool(m.use_deformable),
        use_channel_attention=bool(m.use_channel_attention),
        attention_reduction=int(m.attention_reduction),
        remat_blocks=bool(m.remat_blocks),
        unroll_blocks=bool(m.get("unroll_blocks", False)),
        input_pyramid=str(m.get("input_pyramid", "nearest")),
        zero_init_outputs=bool(m.get("zero_init_outputs", False)),
    )


def discriminator_config(m) -> CFMDDiscriminatorConfig:
    """``CFMDDiscriminatorConfig`` from ``config.model.d_*``."""
    return CFMDDiscriminatorConfig(
        base_features=int(m.d_base_features),
        channel_multipliers=tuple(int(x) for x in m.d_channel_multipliers),
        spectral_norm=bool(m.d_spectral_norm),
        n_power_iterations=int(m.d_power_iterations),
    )


def _build_generator(m, rngs):
    return CFMDGenerator(generator_config(m), rngs=rngs)


def _build_discriminator(m, rngs):
    return CFMDDiscriminator(discriminator_config(m), rngs=rngs)


# --------------------------------------------------------------------------------------------
# The recipe.


def _control(batch: Mapping[str, jax.Array], controllable: bool, control_key: str, batch_size: int) -> jax.Array:
    """The ``u [B]`` a forward pass uses: ``batch['u']`` (inference) when it is ``[B]``, else the
    training target's ``batch[control_key]``; always 0.5 for the plain baseline."""
    if not controllable:
        return jnp.full((batch_size,), FIXED_U, jnp.float32)
    u = batch.get("u")
    if u is None or jnp.ndim(u) != 1:
        u = batch.get(control_key)
    if u is None:
        u = jnp.full((batch_size,), FIXED_U, jnp.float32)
    u = jnp.asarray(u, jnp.float32)
    return jnp.broadcast_to(u, (batch_size,)) if u.ndim == 0 else u


def make_recipe(config) -> Recipe:
    """GAN recipe (``model.controllable``) or the supervised plain-baseline recipe."""
    m, lc = config.model, config.loss
    in_key, tgt_key, u_key = m.input_key, m.target_key, m.control_key
    controllable = bool(m.controllable)
    eps = float(lc.charbonnier_eps)
    w_pix, w_per = float(lc.pixel_weight), float(lc.perceptual_weight)
    w_adv, w_ar, w_q = float(lc.adversarial_weight), float(lc.regression_weight), float(lc.q_weight)
    per_net = str(lc.perceptual_net)
    gan_kind = str(config.gan.loss)
    if w_per > 0:
        lpips_module(per_net)  # build the loss network now, outside the traced step

    def reconstruction(outs, target, metrics):
        l_pix = multiscale_charbonnier(outs, target, eps)
        metrics["loss/pixel"] = l_pix
        loss = w_pix * l_pix
        if w_per > 0:
            l_per = perceptual_loss(outs[-1], target, per_net)
            metrics["loss/perceptual"] = l_per
            loss = loss + w_per * l_per
        return loss

    def g_loss(models, batch, rng):
        del rng
        b, s = batch[in_key], batch[tgt_key]
        u = _control(batch, True, u_key, b.shape[0])
        outs = models["G"](b, u)
        metrics: dict[str, jax.Array] = {}
        loss = reconstruction(outs, s, metrics)
        d = models["D"](b, outs[-1])
        _, l_adv = adversarial_terms(gan_kind, None, (d.global_logits, d.pixel_logits))
        l_ar = u_regression(d.u_map, u)
        metrics.update({"loss/adversarial_G": l_adv, "loss/u_regression_G": l_ar})
        return loss + w_adv * l_adv + w_ar * l_ar, metrics

    def d_loss(models, batch, rng):
        del rng
        b, s = batch[in_key], batch[tgt_key]
        n = b.shape[0]
        u = _control(batch, True, u_key, n)
        fake = jax.lax.stop_gradient(models["G"](b, u)[-1]).astype(s.dtype)
        d = models["D"](jnp.concatenate([b, b]), jnp.concatenate([s.astype(b.dtype), fake.astype(b.dtype)]))
        g, p, q = d.global_logits, d.pixel_logits, d.u_map
        l_adv, _ = adversarial_terms(gan_kind, (g[:n], p[:n]), (g[n:], p[n:]))
        l_q_real, l_q_fake = u_regression(q[:n], u), u_regression(q[n:], u)
        metrics = {
            "loss/adversarial_D": l_adv,
            "loss/u_regression_real": l_q_real,
            "loss/u_regression_fake": l_q_fake,
            "D/real_global_logit": jnp.mean(g[:n].astype(jnp.float32)),
            "D/fake_global_logit": jnp.mean(g[n:].astype(jnp.float32)),
        }
        return l_adv + w_q * (l_q_real + l_q_fake), metrics

    def plain_loss(models, batch, rng):
        del rng
        b = batch[in_key]
        n = b.shape[0]
        target = gather_frame(batch["sharp"], batch["num_frames"] // 2)  # middle re-ordered frame
        outs = models["G"](b, jnp.full((n,), FIXED_U, jnp.float32))
        metrics: dict[str, jax.Array] = {}
        return reconstruction(outs, target, metrics), metrics

    def predict(models, batch):
        b = batch[in_key]
        return models["G"](b, _control(batch, controllable, u_key, b.shape[0]))[-1]

    gen = functools.partial(_build_generator, m)
    if controllable:
        return Recipe(
            networks={"G": gen, "D": functools.partial(_build_discriminator, m)},
            losses={"D": d_loss, "G": g_loss},
            step_kind="gan",
            primary="G",
            input_keys=(in_key,),
            batch_keys=(in_key, tgt_key, u_key),
            predict=predict,
            image_keys=(in_key, tgt_key),
        )
    return Recipe(
        networks={"G": gen},
        losses={"G": plain_loss},
        step_kind="supervised",
        primary="G",
        input_keys=(in_key,),
        batch_keys=(in_key, tgt_key, "sharp", "num_frames"),
        predict=predict,
        image_keys=(in_key, tgt_key),
    )


# --------------------------------------------------------------------------------------------
# Config checks and inference hooks.


def _crop_size(config) -> tuple[int, int] | None:
    cs = config.data.builder.kwargs.get("crop_size", None)
    if cs is None:
        return None
    return (int(cs), int(cs)) if isinstance(cs, int) else tuple(int(v) for v in cs)


def validate(config, *, num_devices=None, process_count=1) -> None:
    """Method checks: builder, crop sizes the networks accept, loss weights, step kind, eval batches."""
    m, lc = config.model, config.loss
    if config.data.builder.name not in BUILDER_NAMES:
        raise ConfigError(f"cfmd needs data.builder.name in {BUILDER_NAMES}, got {config.data.builder.name!r}")
    reorder = config.data.builder.kwargs.get("reorder", "fmr")
    if reorder not in ("fmr", "none"):
        raise ConfigError(f"data.builder.kwargs.reorder must be 'fmr' or 'none', got {reorder!r}")
    if m.get("ablation", "none") not in ABLATIONS:
        raise ConfigError(f"model.ablation={m.ablation!r} is not one of {ABLATIONS}")
    try:
        generator_config(m)
        discriminator_config(m)
    except ValueError as e:
        raise ConfigError(f"config.model: {e}") from None
    for key in ("pixel_weight", "perceptual_weight", "adversarial_weight", "regression_weight", "q_weight"):
        if float(lc[key]) < 0:
            raise ConfigError(f"loss.{key} must be >= 0, got {lc[key]}")
    if lc.perceptual_net not in ("alex", "vgg"):
        raise ConfigError(f"loss.perceptual_net must be 'alex' or 'vgg', got {lc.perceptual_net!r}")
    want = "gan" if m.controllable else "supervised"
    if config.train.step_kind != want:
        raise ConfigError(
            f"cfmd with model.controllable={bool(m.controllable)} trains with train.step_kind={want!r}, "
            f"got {config.train.step_kind!r}"
        )
    crop = _crop_size(config)
    if crop is not None:
        levels = len(m.d_channel_multipliers) if m.controllable else 0
        multiple = max(4, 2**levels)
        if crop[0] % multiple or crop[1] % multiple:
            raise ConfigError(
                f"data.builder.kwargs.crop_size={crop} must be a multiple of {multiple} (the generator needs 4, "
                f"the {levels}-level discriminator 2^{levels}); use e.g. {multiple * max(1, round(crop[0] / multiple))}"
            )
        min_side = 31 if lc.perceptual_net == "alex" else 16
        if float(lc.perceptual_weight) > 0 and min(crop) < min_side:
            raise ConfigError(
                f"LPIPS ({lc.perceptual_net}) needs crops of at least {min_side} px, crop_size={crop}; "
                "set --config.loss.perceptual_weight=0 or a larger crop"
            )
    for name in config.eval.protocols:
        if name in ("cfmd_s2s", "cfmd_s2v"):
            bs = int(config.eval[name].batch_size or config.train.global_batch_size)
            check_eval_batch(config, f"{name}.batch_size", bs, num_devices=num_devices, process_count=process_count)


def inference_controls(config) -> dict:
    """``{'u': ControlSpec}``: the moment control in [0, 1] (default 0.5, the centre); none for the plain baseline."""
    if not bool(config.model.get("controllable", True)):
        return {}
    return {
        "u": ControlSpec(
            default=FIXED_U,
            min=0.0,
            max=1.0,
            description=(
                "moment in the facial-motion (FMR) order: 0 = left eye at its left/top-most position, "
                "-> 1 its right/bottom-most; the i-th of K frames is u = i / K"
            ),
        )
    }


def inference(config) -> InferenceSpec:
    """An image model of the same size (deblurring) with the moment control ``u``; inputs are
    multiples of 4 (the generator pads to 4 itself; 4 keeps inputs unpadded)."""
    return InferenceSpec(input_kind="image", scale=1, multiple=4, controls=inference_controls(config))

