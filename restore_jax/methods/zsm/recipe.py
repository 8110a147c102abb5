"""Method ``zsm`` (Zooming Slow-Mo): the engine recipe, config checks and inference hooks.

The network is :class:`restore_jax.methods.zsm.model.ZoomingSlowMo`; this module says how the shared
engine trains, evaluates and runs it (see ``restore_jax/methods/zsm/README.md``).

Recipe (``make_recipe``): supervised step, one network ``G``. The batch (``septuplet`` builder)
gives ``lr [B, 4, h, w, 3]`` (frames 1, 3, 5, 7 of a septuplet, degraded) and ``hr [B, 7, 4h,
4w, 3]`` (all seven frames); ``predict`` returns ``G(lr)``, ``[B, 7, 4h, 4w, 3]``.

Loss: Charbonnier ``sqrt(d^2 + eps^2)`` with ``eps = 1e-3`` (``loss.eps``), i.e. ``sqrt(d^2 +
1e-6)`` per element as the reference code, **summed** over batch, frames, pixels and channels
(``loss.reduction='sum'``, the reference's choice) or averaged (``'mean'``). With Adam the two
reductions give the same updates up to Adam's epsilon (a constant loss scale cancels in
``m / sqrt(v)``): ``'mean'`` acts like ``'sum'`` with ``optim.eps`` multiplied by the number of
elements, and a ``grad_clip_norm`` threshold means something else. With a non-adaptive optimizer
(plain SGD) ``'mean'`` would need the learning rate multiplied by that number (B * 7 * H * W * 3,
5.5 M at the paper's batch 16 and 128x128 patches) to match.

GFI (``model.gfi=True``): the auxiliary LR-synthesis losses of the thesis (Eq. 6.8-6.10),
``loss.gfi_first_weight * C(rho(F_2t), LR_2t) + loss.gfi_second_weight * C(rho(F_2t+1), LR_2t+1)``
with the same Charbonnier and reduction. The LR targets are the clean MATLAB-bicubic x1/4 images of
the HR frames (1-based frames 2, 4, 6 for the first order, 3, 5 for the second), computed on the
device from ``hr``, so they are right for every degradation variant. The thesis gives no weights;
the default 1.0 each is our choice.

Offset monitoring: every step logs ``monitor/offset_abs_mean`` and ``monitor/offset_abs_max``, the
mean and the maximum over the 18 DCN layers of each layer's mean absolute predicted offset (LR
pixels; :meth:`ZoomingSlowMo.forward_with_aux`). The offset convs start at zero, so both start at
0. Growing offsets are the usual sign of a diverging deformable alignment (the DCNv2 reference
warns above 100 per layer); :func:`offset_warning` turns a logged value above
``model.offset_warn`` (default 50) into a console line at every log point (the engine calls
:attr:`Recipe.metric_warnings` with the logged values).

Per-module learning rates: ``optim.lr_multipliers`` regexes are searched in parameter paths such as
``interp_pcd/forward_dir/l1/dcn/conv_offset_mask/kernel`` and
``lstm_cell/pcd_h/pcd/backward_dir/l3/dcn/conv_offset_mask/bias``. :data:`OFFSET_CONV_REGEX`
(``'dcn/conv_offset_mask/'``) matches the 18 zero-initialised offset/mask convs and nothing else;
``'offset_conv\\d/'`` matches the convs that compute the offset features feeding them. The paper
uses no multiplier; e.g. ``--config.optim.lr_multipliers="(('dcn/conv_offset_mask/', 0.1),)"``.

Inference hooks (used by :mod:`restore_jax.inference.restorer`):

* ``size_multiple(config) -> 4``: the network pads LR frames to a multiple of 4 itself, but
  fixed-shape windows stay compile-friendly when the caller pads;
* ``output_scale(config) -> 4``;
* ``video_mode(config) -> {'window': 4, 'stride': 3, 'temporal_scale': 2}``: the network maps a
  window of ``N = 4`` LR frames ``[B, N, h, w, 3]`` to ``[B, 2N - 1, 4h, 4w, 3]`` (the inputs plus
  one synthesised frame between each pair); consecutive windows share one input frame
  (stride 3), so a video of ``T`` LR frames becomes ``2T - 1`` HR frames, each produced once
  (:func:`restore_jax.inference.chunking.plan_windows`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from restore_jax.methods.zsm.model import RESIDUALS, ZoomingSlowMo, ZSMConfig
from restore_jax.losses.pixel import REDUCTIONS, charbonnier_loss
from restore_jax.ops import imresize
from restore_jax.errors import ConfigError
from restore_jax.methods.api import InferenceSpec
from restore_jax.train.recipe import Recipe

#: Regex (``optim.lr_multipliers``) matching exactly the DCN offset/mask convs.
OFFSET_CONV_REGEX = "dcn/conv_offset_mask/"
#: Default threshold of the offset warning (LR pixels).
OFFSET_WARN = 50.0
#: Window of the inference layer: 4 LR frames in, 7 HR frames out, windows share one input frame.
VIDEO_WINDOW = 4
VIDEO_STRIDE = 3
TEMPORAL_SCALE = 2


# ------------------------------------------------------------------------------------------------
# model


def zsm_config(model_config) -> ZSMConfig:
    """:class:`ZSMConfig` from ``config.model``."""
    m = model_config
    return ZSMConfig(
        nf=int(m.nf),
        groups=int(m.groups),
        front_blocks=int(m.front_blocks),
        back_blocks=int(m.back_blocks),
        scale=int(m.scale),
        gfi=bool(m.gfi),
        gfi_blocks=int(m.gfi_blocks),
        unroll=bool(m.get("unroll", True)),
        residual=str(m.get("residual", "none")),
    )


def build_model(model_config, rngs: nnx.Rngs) -> ZoomingSlowMo:
    """``ZoomingSlowMo`` from ``config.model``."""
    return ZoomingSlowMo(zsm_config(model_config), rngs=rngs)


# ------------------------------------------------------------------------------------------------
# loss


def lr_targets(hr: jax.Array, scale: int) -> jax.Array:
    """Clean LR frames ``[B, T, H/scale, W/scale, 3]``: MATLAB bicubic x(1/scale) of ``hr [B, T, H, W, 3]``."""
    b, t, h, w, c = hr.shape
    lr = imresize(hr.astype(jnp.float32).reshape(b * t, h, w, c), scale=1.0 / scale)
    return lr.reshape(b, t, *lr.shape[1:])


def make_loss_fn(config):
    """``loss_fn(models, batch, rng) -> (loss, metrics)`` of the recipe (see the module docstring)."""
    lr_key, hr_key = config.model.input_key, config.model.target_key
    eps, reduction = float(config.loss.eps), str(config.loss.reduction)
    pixel_weight = float(config.loss.pixel_weight)
    gfi = bool(config.model.gfi)
    w1, w2 = float(config.loss.gfi_first_weight), float(config.loss.gfi_second_weight)
    scale = int(config.model.scale)

    def loss_fn(models, batch, rng):
        del rng
        hr = batch[hr_key]
        pred, aux = models["G"].forward_with_aux(batch[lr_key], monitor_offsets=True)
        rec = charbonnier_loss(pred, hr, eps=eps, reduction=reduction)
        loss = pixel_weight * rec
        metrics = {
            "loss/rec": rec,
            "loss/rec_per_element": rec / pred.size if reduction == "sum" else rec,
            "monitor/offset_abs_mean": aux["offset_abs_mean"],
            "monitor/offset_abs_max": aux["offset_abs_max"],
        }
        if gfi:
            targets = lr_targets(hr, scale)  # frames 0..6 (0-based)
            first = charbonnier_loss(aux["gfi_first"], targets[:, 1::2], eps=eps, reduction=reduction)
            loss = loss + w1 * first
            metrics["loss/gfi_first"] = first
            if "gfi_second" in aux:
                second = charbonnier_loss(aux["gfi_second"], targets[:, 2:-1:2], eps=eps, reduction=reduction)
                loss = loss + w2 * second
                metrics["loss/gfi_second"] = second
        return loss, metrics

    return loss_fn


def make_recipe(config) -> Recipe:
    """Supervised recipe: Charbonnier(G(lr), hr) (+ GFI terms)."""
    lr_key, hr_key = config.model.input_key, config.model.target_key

    def predict(models, batch):
        return models["G"](batch[lr_key])

    return Recipe(
        networks={"G": functools.partial(build_model, config.model)},
        losses={"G": make_loss_fn(config)},
        step_kind="supervised",
        primary="G",
        input_keys=(lr_key,),
        batch_keys=(lr_key, hr_key),
        predict=predict,
        image_keys=(lr_key, hr_key),
        metric_warnings=make_metric_warnings(config),
    )


# ------------------------------------------------------------------------------------------------
# offset warning


def offset_warning(metrics: Mapping[str, float], threshold: float = OFFSET_WARN) -> str | None:
    """A warning line when the logged mean |offset| exceeds ``threshold`` (LR pixels), else ``None``."""
    value = metrics.get("monitor/offset_abs_mean")
    if value is None or not value > threshold:  # also False for NaN: the NaN guard reports that
        return None
    worst = metrics.get("monitor/offset_abs_max", float("nan"))
    return (
        f"WARNING zsm: mean |deformable offset| is {value:.1f} LR pixels (largest layer mean {worst:.1f}), "
        f"above {threshold:g}: the deformable alignment may be diverging. Consider a lower learning rate, "
        f"a smaller lr multiplier on the offset convs (--config.optim.lr_multipliers="
        f"\"(('{OFFSET_CONV_REGEX}', 0.1),)\") or gradient clipping (--config.optim.grad_clip_norm)."
    )


def make_metric_warnings(config):
    """``warnings(step, logged_metrics) -> [lines]`` for :attr:`Recipe.metric_warnings` (offset monitor)."""
    threshold = float(config.model.get("offset_warn", OFFSET_WARN))

    def warnings(step: int, metrics: Mapping[str, float]) -> list[str]:
        msg = offset_warning(metrics, threshold)
        return [f"step {step}: {msg}"] if msg else []

    return warnings


# ------------------------------------------------------------------------------------------------
# inference hooks


def inference(config) -> InferenceSpec:
    """A window model: ``[B, 4, h, w, 3] -> [B, 7, 4h, 4w, 3]``, windows 3 LR frames apart; LR height
    and width multiples of 4 (the 3-level feature pyramid halves twice)."""
    return InferenceSpec(
        input_kind="window",
        scale=int(config.model.scale),
        multiple=4,
        window=VIDEO_WINDOW,
        stride=VIDEO_STRIDE,
        temporal_scale=TEMPORAL_SCALE,
    )


# ------------------------------------------------------------------------------------------------
# validation


def _source_window(source) -> int | None:
    """Frames per record the data source gives (``None`` when the source does not say)."""
    name, kw = source.name, source.get("kwargs", {})
    if name in ("video", "frame_folder"):
        return int(kw.get("window", 1))
    if name == "synthetic_faces":
        return int(kw.get("num_frames", 7)) if kw.get("mode", "image") == "sequence" else 1
    if name == "vimeo_septuplet":
        return int(kw.get("num_frames", 7))
    return None


def _side(size) -> tuple[int, ...]:
    if size is None:
        return ()
    return (int(size),) if isinstance(size, int) else tuple(int(v) for v in size)


def validate(config, *, num_devices=None, process_count=1) -> None:
    """``zsm`` checks: architecture, loss, a septuplet data layout the network can take."""
    m, loss = config.model, config.loss
    if int(m.scale) != 4:
        raise ConfigError(f"model.scale must be 4 (two pixel-shuffle x2 stages), got {m.scale}")
    for key in ("nf", "groups"):
        if int(m[key]) < 1:
            raise ConfigError(f"model.{key} must be >= 1, got {m[key]}")
    if int(m.nf) % int(m.groups):
        raise ConfigError(
            f"model.nf={m.nf} is not divisible by model.groups={m.groups} (deformable groups split the channels)"
        )
    for key in ("front_blocks", "back_blocks", "gfi_blocks"):
        if int(m[key]) < 0:
            raise ConfigError(f"model.{key} must be >= 0, got {m[key]}")
    if str(m.get("residual", "none")) not in RESIDUALS:
        raise ConfigError(f"model.residual={m.residual!r} is not one of {RESIDUALS}")
    if config.train.step_kind != "supervised":
        raise ConfigError("zsm trains with train.step_kind='supervised'")
    if loss.reduction not in REDUCTIONS:
        raise ConfigError(f"loss.reduction={loss.reduction!r} is not one of {REDUCTIONS}")
    if not float(loss.eps) > 0:
        raise ConfigError(f"loss.eps must be > 0 (Charbonnier sqrt(d^2 + eps^2)), got {loss.eps}")
    for key in ("pixel_weight", "gfi_first_weight", "gfi_second_weight"):
        if float(loss[key]) < 0:
            raise ConfigError(f"loss.{key} must be >= 0, got {loss[key]}")

    data = config.data
    if data.builder.name != "septuplet":
        raise ConfigError(
            f"zsm needs data.builder.name='septuplet' (LR frames 1,3,5,7 + HR 1..7), got {data.builder.name!r}"
        )
    kw = data.builder.kwargs
    idx = tuple(int(i) for i in kw.get("lr_indices", (0, 2, 4, 6)))
    n = len(idx)
    if n < 2 or idx != tuple(range(0, 2 * n - 1, 2)):
        raise ConfigError(
            f"data.builder.kwargs.lr_indices={idx}: the network interpolates one frame between consecutive "
            f"inputs, so the LR frames must be every other frame from 0, e.g. (0, 2, 4, 6)"
        )
    window = _source_window(data.source)
    if window is not None and window != 2 * n - 1:
        raise ConfigError(
            f"data.source {data.source.name!r} gives {window} frames per record but lr_indices={idx} needs "
            f"{2 * n - 1} (set the source's window / num_frames to {2 * n - 1})"
        )
    if float(kw.get("scale", 4)) != float(m.scale):
        raise ConfigError(f"data.builder.kwargs.scale={kw.get('scale')} must equal model.scale={m.scale}")
    for side in _side(kw.get("hr_size", None)):
        if side % (4 * int(m.scale)):
            raise ConfigError(
                f"data.builder.kwargs.hr_size={kw.get('hr_size')} must be a multiple of {4 * int(m.scale)} "
                f"(LR = HR / {m.scale}, and the feature pyramid needs LR sides divisible by 4)"
            )
    if bool(m.gfi) and n < 2:
        raise ConfigError("model.gfi needs at least 2 LR frames")

    for pattern, _ in tuple(config.optim.lr_multipliers):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"optim.lr_multipliers: {pattern!r} is not a valid regex ({exc})") from None
    if config.optim.lr_multipliers:
        paths = param_paths(config)
        for pattern, _ in tuple(config.optim.lr_multipliers):
            if not any(re.search(pattern, p) for p in paths):
                raise ConfigError(
                    f"optim.lr_multipliers: {pattern!r} matches no parameter of the network; parameter paths "
                    f"look like {paths[0]!r}; the offset/mask convs match {OFFSET_CONV_REGEX!r}"
                )
    if not float(m.get("offset_warn", OFFSET_WARN)) > 0:
        raise ConfigError(f"model.offset_warn must be > 0 (LR pixels), got {m.offset_warn}")
    from restore_jax.methods.zsm.eval import validate_eval_settings

    validate_eval_settings(config, num_devices=num_devices, process_count=process_count)


def param_paths(config) -> list[str]:
    """'/'-joined paths of the network's parameters as the optimizer sees them (no arrays allocated)."""
    from restore_jax.train.paths import tree_paths

    abstract = nnx.eval_shape(lambda: build_model(config.model, nnx.Rngs(0)))
    return tree_paths(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))
