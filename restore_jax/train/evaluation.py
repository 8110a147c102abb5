"""Evaluation protocols: named evaluators run during training and by ``restore-jax eval``.

An :class:`Evaluator` is ``fn(ctx: EvalContext) -> dict[str, float]`` with the default settings
section it reads (``config.eval.<name>``). The engine's built-in protocols are
:data:`BUILTIN_EVALUATORS`; a method adds its own through ``Method.evaluators`` (nothing registers
on import). ``config.eval.protocols`` lists the ones a run uses. Results of a run at step ``s`` are written to
``<workdir>/eval/<s>.json`` (process 0) and logged to TensorBoard as ``eval/<key>``.

Built-in protocol ``sr_psnr_ssim`` (single-image SR): PSNR/SSIM of the model output and of the
MATLAB-bicubic upsampling of the same input against the ground truth, on the BT.601 Y channel
with ``crop_border`` pixels (default: the scale) removed, outputs clipped to [0, 1] and rounded to
8 bits (the usual protocol). Data: the method's held-out split (synthetic faces by default) and,
when present, a folder of real faces (``../shared/data/faces128/val`` by default) whose LR inputs
are made with MATLAB bicubic downsampling. On the real faces it also reports the identity distance
(face-api descriptors, :func:`face_identity_metrics`) of the model output and of bicubic to the
ground truth when the face-api weights are found (``eval.sr_psnr_ssim.identity``).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from restore_jax.locations import resolve_user_path, shared_data
from restore_jax.metrics import psnr, ssim
from restore_jax.ops import imresize, quantize_8bit
from restore_jax.train.mesh import batch_shards, make_global_batch
from restore_jax.train.tables import Column, format_table

@dataclasses.dataclass(frozen=True)
class Evaluator:
    """An evaluation protocol: ``fn(ctx) -> {key: value}`` and its settings section's defaults
    (``default_config() -> ConfigDict``, filled into ``config.eval.<name>``; ``None``: no settings)."""

    fn: Callable[["EvalContext"], dict[str, float]]
    default_config: Callable[[], Any] | None = None


@dataclasses.dataclass
class EvalContext:
    """What an evaluator gets: the config, the mesh, parameters to evaluate and a jitted predictor."""

    config: Any
    mesh: jax.sharding.Mesh
    # {'params': {network: params}, 'model_state': {...}} (EMA params when config.eval.use_ema)
    params: Mapping[str, Any]
    predict_fn: Callable  # jitted (params, batch) -> float32 output (sharded like the batch)
    step: int
    workdir: pathlib.Path
    log: Callable[[str], None] = print
    cache: dict = dataclasses.field(default_factory=dict)  # evaluators may memoise compiled fns here
    tables: list = dataclasses.field(default_factory=list)  # human-readable result tables
    catalog: Any = None  # the method's input_pipelines.Catalog (its own sources / builders)


def run_evaluators(ctx: EvalContext, names: Iterable[str], evaluators: Mapping[str, Evaluator]) -> dict[str, float]:
    """Run the named protocols; returns the merged ``{key: value}`` and writes ``eval/<step>.json``."""
    results: dict[str, float] = {}
    for name in names:
        if name not in evaluators:
            raise KeyError(f"unknown evaluation protocol {name!r}; known: {', '.join(sorted(evaluators))}")
        out = evaluators[name].fn(ctx)
        results.update({k: float(v) for k, v in out.items()})
    write_results(ctx.workdir, ctx.step, results, ctx.tables)
    return results


def write_results(workdir: str | pathlib.Path, step: int, results: Mapping[str, float], tables=()) -> pathlib.Path | None:
    """``<workdir>/eval/<step>.json`` with the scalar results (process 0 only)."""
    if jax.process_index() != 0:
        return None
    path = pathlib.Path(workdir) / "eval" / f"{int(step)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"step": int(step), "results": dict(results), "tables": list(tables)}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


# --------------------------------------------------------------------------------------------
# sr_psnr_ssim


def _sr_metrics_fn(predict_fn, *, scale: int, crop: int, y_channel: bool, lr_key: str, hr_key: str, images: bool = False):
    """Jitted ``(params, batch) -> per-example {psnr, ssim, bicubic_psnr, bicubic_ssim}``.

    ``images=True`` also returns the 8-bit-rounded ``out``/``bicubic``/``hr`` images (for host-side
    metrics such as identity distance).
    """

    def fn(params, batch):
        out = quantize_8bit(predict_fn(params, batch))
        bic = quantize_8bit(imresize(batch[lr_key].astype(jnp.float32), scale=scale))
        hr = quantize_8bit(batch[hr_key].astype(jnp.float32))
        kw = dict(crop_border=crop, y_channel=y_channel, data_range=1.0)
        metrics = {
            "psnr": psnr(out, hr, **kw),
            "ssim": ssim(out, hr, **kw),
            "bicubic_psnr": psnr(bic, hr, **kw),
            "bicubic_ssim": ssim(bic, hr, **kw),
        }
        if images:
            metrics.update({"_out": out, "_bicubic": bic, "_hr": hr})
        return metrics

    return jax.jit(fn)


_IDENTITY_NOTICE_SHOWN = False


def face_identity_metrics(restored: np.ndarray, target: np.ndarray, *, framing: str = "chip", log=print) -> dict[str, np.ndarray] | None:
    """Per-image identity distance ``{'id_cos', 'id_l2'}`` between restored and target face crops.

    Uses :func:`restore_jax.metrics.identity_distance` (face-api recognition weights). Returns
    ``None`` after a one-time notice when the weights cannot be found, so evaluation protocols skip
    the identity columns instead of failing.
    """
    global _IDENTITY_NOTICE_SHOWN
    from restore_jax.metrics import identity_distance

    try:
        d = identity_distance(jnp.asarray(restored), jnp.asarray(target), framing=framing)
    except FileNotFoundError as exc:
        if not _IDENTITY_NOTICE_SHOWN:
            log(f"[eval] identity distance skipped: {str(exc).splitlines()[0]}")
            _IDENTITY_NOTICE_SHOWN = True
        return None
    return {"id_cos": np.asarray(d["cosine"]), "id_l2": np.asarray(d["euclidean"])}


def gather_to_host(x: jax.Array) -> np.ndarray:
    """A global (sharded, possibly multi-process) array as one host NumPy array on every process."""
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def evaluate_sr_batches(
    ctx: EvalContext,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    max_examples: int,
    identity_framing: str | None = None,
) -> dict[str, float]:
    """Mean metrics over local batches (with optional ``mask`` key) of an SR evaluation set.

    ``identity_framing`` ('chip' | 'ffhq'): also average the identity distance of the model output
    and of bicubic to the ground truth (``id_cos``, ``id_l2``, ``bicubic_id_cos``, ``bicubic_id_l2``),
    when the face-api weights are available (a notice otherwise).
    """
    cfg = ctx.config
    settings = cfg.eval.sr_psnr_ssim
    scale = int(cfg.model.scale)
    crop = scale if settings.crop_border < 0 else int(settings.crop_border)
    want_images = identity_framing is not None
    key = ("sr_metrics", crop, bool(settings.y_channel), want_images)
    if key not in ctx.cache:
        ctx.cache[key] = _sr_metrics_fn(
            ctx.predict_fn,
            scale=scale,
            crop=crop,
            y_channel=bool(settings.y_channel),
            lr_key=cfg.model.input_key,
            hr_key=cfg.model.target_key,
            images=want_images,
        )
    fn = ctx.cache[key]
    sums: dict[str, float] = {}
    count = 0
    for local in batches:
        batch = make_global_batch(
            {k: local[k] for k in (cfg.model.input_key, cfg.model.target_key, "mask") if k in local}, ctx.mesh
        )
        mask = gather_to_host(batch["mask"]) if "mask" in batch else None
        per_example = {k: gather_to_host(v) for k, v in fn(ctx.params, batch).items()}
        images = {k: per_example.pop(k) for k in [k for k in per_example if k.startswith("_")]}
        if want_images:
            for prefix, name in (("", "_out"), ("bicubic_", "_bicubic")):
                ident = face_identity_metrics(images[name], images["_hr"], framing=identity_framing, log=ctx.log)
                if ident is None:
                    want_images = False
                    break
                per_example.update({prefix + k: v for k, v in ident.items()})
        if mask is None:
            mask = np.ones_like(next(iter(per_example.values())))
        remaining = max_examples - count if max_examples > 0 else None
        keep = mask > 0
        if remaining is not None:
            idx = np.flatnonzero(keep)[:remaining]
            keep = np.zeros_like(keep)
            keep[idx] = True
        for k, v in per_example.items():
            sums[k] = sums.get(k, 0.0) + float(np.sum(np.where(keep, v.astype(np.float64), 0.0)))
        count += int(keep.sum())
        if not want_images:  # identity unavailable (or turned off mid-way): drop partial columns
            sums = {k: v for k, v in sums.items() if "id_" not in k}
        if max_examples > 0 and count >= max_examples:
            break
    if count == 0:
        raise ValueError("the evaluation set is empty")
    out = {k: v / count for k, v in sums.items()}
    out["n"] = float(count)
    return out


def local_eval_batch(ctx: EvalContext, global_batch: int) -> int:
    """This process's share of a global evaluation batch (checked against the mesh and processes)."""
    shards = batch_shards(ctx.mesh)
    if global_batch % shards or global_batch % jax.process_count():
        raise ValueError(
            f"eval batch size {global_batch} must be divisible by the data-parallel size {shards} "
            f"and the process count {jax.process_count()}"
        )
    return global_batch // jax.process_count()


def default_real_faces_dir() -> pathlib.Path:
    """``<shared>/data/faces128/val`` (the shared real-face validation set)."""
    return shared_data("faces128", "val")


def resolve_real_dir(setting: str) -> pathlib.Path | None:
    """``''`` -> the default shared folder; ``'none'`` -> disabled; relative paths from the repo root."""
    if setting.lower() == "none":
        return None
    if not setting:
        return default_real_faces_dir()
    return resolve_user_path(setting)


def _real_faces_data_config(data_config, root: pathlib.Path, scale: int):
    cfg = data_config.to_dict() if hasattr(data_config, "to_dict") else dict(data_config)
    cfg["source"] = {"name": "image_folder", "kwargs": {"root": str(root), "on_error": "skip"}, "splits": {}}
    cfg["builder"] = {"name": "sr_pair", "kwargs": {"hr_size": None, "scale": scale}}
    cfg["num_workers"] = 0
    return cfg


_SR_COLUMNS = (
    Column("dataset", 18, align="<"),
    Column("n", 5),
    Column("PSNR model", 11, ".2f"),
    Column("PSNR bicubic", 13, ".2f"),
    Column("SSIM model", 11, ".4f"),
    Column("SSIM bicubic", 13, ".4f"),
)
_ID_COLUMNS = (Column("ID-L2 model", 12, ".4f"), Column("ID-L2 bicubic", 14, ".4f"))


def _table(title: str, rows: list[tuple[str, Mapping[str, float]]]) -> str:
    with_id = any("id_l2" in r for _, r in rows)
    columns = _SR_COLUMNS + (_ID_COLUMNS if with_id else ())
    cells = []
    for name, r in rows:
        row = [name, int(r["n"]), r["psnr"], r["bicubic_psnr"], r["ssim"], r["bicubic_ssim"]]
        if with_id:
            row += [r["id_l2"], r["bicubic_id_l2"]] if "id_l2" in r else ["-", "-"]
        cells.append(row)
    return format_table(title, columns, cells)


def sr_psnr_ssim(ctx: EvalContext) -> dict[str, float]:
    """Model vs bicubic PSNR/SSIM (Y, crop = scale, 8-bit) on held-out synthetic faces and real faces."""
    from input_pipelines.pipeline import build_eval  # the data package (Grain); imported lazily

    cfg = ctx.config
    s = cfg.eval.sr_psnr_ssim
    if s.identity not in ("auto", "off"):
        raise ValueError(f"eval.sr_psnr_ssim.identity must be 'auto' or 'off', got {s.identity!r}")
    scale = int(cfg.model.scale)
    local_bs = local_eval_batch(ctx, int(s.batch_size or cfg.train.global_batch_size))
    results: dict[str, float] = {}
    rows = []
    it = build_eval(cfg.data, s.split, local_bs, catalog=ctx.catalog)
    try:
        r = evaluate_sr_batches(ctx, it, max_examples=int(s.num_examples))
    finally:
        if hasattr(it, "close"):
            it.close()
    results.update({f"{s.name}/{k}": v for k, v in r.items()})
    rows.append((s.name, r))
    real = resolve_real_dir(s.real_dir)
    if real is not None and real.is_dir():
        data = _real_faces_data_config(cfg.data, real, scale)
        it = build_eval(data, "val", local_bs, catalog=ctx.catalog)
        framing = None if s.identity == "off" else s.real_framing
        r = evaluate_sr_batches(ctx, it, max_examples=int(s.real_max_examples), identity_framing=framing)
        results.update({f"{s.real_name}/{k}": v for k, v in r.items()})
        rows.append((s.real_name, r))
    elif real is not None:
        ctx.log(f"[eval] real-face set not found at {real}: skipped (set --config.eval.sr_psnr_ssim.real_dir)")
    crop = scale if s.crop_border < 0 else int(s.crop_border)
    title = (
        f"sr_psnr_ssim at step {ctx.step}: x{scale}, {'Y channel' if s.y_channel else 'RGB'}, "
        f"crop {crop}, 8-bit outputs"
    )
    table = _table(title, rows)
    ctx.tables.append(table)
    return results


def sr_psnr_ssim_config(**overrides: Any):
    """Default settings section ``config.eval.sr_psnr_ssim``."""
    from ml_collections import ConfigDict

    c = ConfigDict()
    c.name = "synthetic"  # result-key prefix for the method's own held-out split
    c.split = "val"
    c.batch_size = 0  # global; 0: train.global_batch_size
    c.num_examples = 0  # 0: the whole split
    c.crop_border = -1  # -1: the scale factor
    c.y_channel = True
    c.real_dir = ""  # '' = ../shared/data/faces128/val next to the repo; 'none' disables
    c.real_name = "faces128_val"
    c.real_max_examples = 0
    # Identity distance (face-api recognition net) on the real-face set: 'auto' adds the columns
    # when the weights are found (a notice otherwise), 'off' never computes them.
    c.identity = "auto"
    c.real_framing = "chip"  # how the real faces are cropped: 'chip' (tight, UTKFace) | 'ffhq'
    c.update(overrides)
    return c


#: The engine's own protocols, available to every method.
BUILTIN_EVALUATORS: dict[str, Evaluator] = {"sr_psnr_ssim": Evaluator(sr_psnr_ssim, sr_psnr_ssim_config)}
