"""CFMD evaluation protocols ``cfmd_s2s`` and ``cfmd_s2v`` (spec seed_002_003 §A6).

Both run on held-out windows blurred by averaging ``N`` frames, for every ``N`` in
``frame_counts`` (default 5, 7, 9, 11, 13; each window is built once per ``N`` with the evaluation
seed), frames in FMR order (``reorder``; the model's control ``u`` follows that order):

* ``cfmd_s2s`` (single-to-single): the model at ``u = 0.5`` against the **middle re-ordered GT frame**
  ``sharp[N // 2]``; pooled over all ``N`` (the paper's s2s test set contains every ``N``).
* ``cfmd_s2v`` (single-to-video): ``N`` outputs at ``u = i / N`` (``i = 0 .. N-1``, the paper's
  ``(i - 1) / N`` with 1-based ``i``) against the re-ordered GT frames ``sharp[i]``; per ``N`` and
  ``ALL`` (every frame of every ``N`` pooled, as the paper's Table 4).

Metrics (outputs clipped to [0, 1] and rounded to 8 bits): PSNR and SSIM on RGB, LPIPS (AlexNet),
and, when the face-api weights exist, the identity distance (Euclidean between face-recognition
descriptors, :func:`restore_jax.metrics.identity_distance`; not ArcFace, so not comparable with the
paper's numbers). The **blurred input** is scored against the same GT in the same table.

Held-out sets: every part of ``config.data.source`` on the ``split`` (a ``mixture`` is split into its
parts: e.g. synthetic sequences of unseen identities and the held-out face-video clip), plus the
held-out shared face-video clip (``face_video_dir``) when the training data has no face-video part.

Result keys: ``s2s/<set>/<metric>`` and ``s2s/<set>/<metric>_blurred``;
``s2v/<set>/N<n>/<metric>`` (and ``..._blurred``) and ``s2v/<set>/ALL/...``; ``.../n`` counts.
"""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from restore_jax.methods.cfmd.data import BUILDERS, SOURCES
from restore_jax.metrics import psnr, ssim
from restore_jax.ops import quantize_8bit
from restore_jax.train.evaluation import EvalContext, Evaluator, gather_to_host, local_eval_batch
from restore_jax.train.mesh import make_global_batch
from restore_jax.train.tables import Column, format_table as text_table

METRICS = ("psnr", "ssim", "lpips", "identity")
FRAME_COUNTS = (5, 7, 9, 11, 13)


def cfmd_eval_config(**overrides: Any):
    """Default settings of ``config.eval.cfmd_s2s`` / ``config.eval.cfmd_s2v``."""
    from ml_collections import ConfigDict

    c = ConfigDict()
    c.split = "val"
    c.batch_size = 0  # global; 0: train.global_batch_size
    c.num_examples = 0  # windows per set and frame count (0: all of the split)
    c.frame_counts = FRAME_COUNTS
    c.reorder = "fmr"  # order of the GT frames ('fmr' | 'none')
    c.crop_size = 0  # 0: data.builder.kwargs.crop_size
    c.face_video_dir = ""  # '' = ../shared/data/face_video; 'none' disables the extra face-video set
    c.face_video_stride = 13  # start step of held-out face-video windows (13: disjoint windows)
    c.lpips = True
    c.identity = "auto"  # 'auto' (when the face-api weights exist) | 'on' | 'off'
    c.update(overrides)
    return c


# --------------------------------------------------------------------------------------------
# Held-out sets.


def _plain(x: Any) -> Any:
    return x.to_dict() if hasattr(x, "to_dict") else copy.deepcopy(x)


def _face_video_dir(setting: str) -> pathlib.Path | None:
    from restore_jax.methods.cfmd.data import default_face_video_dir

    if setting.lower() == "none":
        return None
    return pathlib.Path(setting).expanduser() if setting else default_face_video_dir()


def eval_sets(config, settings) -> list[tuple[str, dict]]:
    """``[(name, source config)]``: the data source's parts, plus the held-out face-video clip."""
    src = _plain(config.data.source)
    parts = [dict(p) for p in src["kwargs"]["parts"]] if src["name"] == "mixture" else [src]
    out, names = [], []
    for p in parts:
        p.pop("repeat", None)
        name = p["name"]
        if p["name"] == "face_video":
            p = copy.deepcopy(p)
            p.setdefault("kwargs", {})["stride"] = int(settings.face_video_stride)
        k = 2
        while name in names:
            name, k = f"{p['name']}{k}", k + 1
        names.append(name)
        out.append((name, p))
    fv = _face_video_dir(settings.face_video_dir)
    if "face_video" not in [p["name"] for p in parts] and fv is not None and fv.is_dir():
        out.append(
            ("face_video", {"name": "face_video", "kwargs": {"paths": str(fv), "window": 13, "stride": int(settings.face_video_stride)}})
        )
    return out


def _eval_data_config(config, source: Mapping[str, Any], settings, n: int) -> dict:
    data = _plain(config.data)
    data["source"] = copy.deepcopy(dict(source))
    kwargs = dict(data["builder"].get("kwargs") or {})
    kwargs.update(num_frames=int(n), scale_range=(1.0, 1.0), reorder=str(settings.reorder))
    if int(settings.crop_size):
        kwargs["crop_size"] = int(settings.crop_size)
    data["builder"] = {"name": "cfmd_blur", "kwargs": kwargs}
    data["num_workers"] = 0
    return data


def _eval_batches(config, source, settings, n: int, local_bs: int, split: str) -> Iterator[dict]:
    from input_pipelines.pipeline import Catalog, build_eval

    catalog = Catalog(sources=SOURCES, builders=BUILDERS)
    it = build_eval(_eval_data_config(config, source, settings, n), split, local_bs, catalog=catalog)
    try:
        yield from it
    finally:
        if hasattr(it, "close"):
            it.close()


# --------------------------------------------------------------------------------------------
# Metrics.


def _identity_enabled(setting: str) -> bool:
    if setting == "off":
        return False
    if setting == "on":
        return True
    from restore_jax.methods.cfmd.data import face_api_available

    if not face_api_available():
        return False
    from restore_jax.faces.weights import MODEL_FILES, _needed_files, resolve_weights_dir

    folder = resolve_weights_dir()
    return all((folder / f).is_file() for f in _needed_files(MODEL_FILES["face_recognition"]))


def image_metrics(out: jax.Array, gt: jax.Array, *, lpips_net=None, identity_net=None) -> dict[str, jax.Array]:
    """Per-image ``{psnr, ssim[, lpips][, identity]}`` of 8-bit-rounded ``out`` vs ``gt`` (RGB, [0, 1]).

    ``lpips_net``: a :class:`restore_jax.metrics.LPIPS` built for ``[0,1]`` inputs; ``identity_net``: a
    :class:`restore_jax.faces.FaceRecognitionNet` (Euclidean descriptor distance). Build both outside
    ``jax.jit`` (their weights become constants of the compiled function).
    """
    out, gt = quantize_8bit(out), quantize_8bit(gt)
    m = {"psnr": psnr(out, gt, data_range=1.0), "ssim": ssim(out, gt, data_range=1.0)}
    if lpips_net is not None:
        m["lpips"] = lpips_net(out, gt)
    if identity_net is not None:
        from restore_jax.metrics.face import identity_distance

        m["identity"] = identity_distance(out, gt, net=identity_net)["euclidean"]
    return m


def metric_nets(*, use_lpips: bool, use_identity: bool):
    """``(lpips_net, identity_net)`` (each ``None`` when off), built eagerly outside any trace."""
    with jax.ensure_compile_time_eval():
        lp = None
        if use_lpips:
            from restore_jax.metrics.lpips import LPIPS

            lp = LPIPS("alex", input_range="[0,1]")
        ident = None
        if use_identity:
            from restore_jax.faces.recognition import FaceRecognitionNet

            ident = FaceRecognitionNet.from_face_api()
    return lp, ident


def _frame_fn(predict_fn, *, use_lpips: bool, use_identity: bool):
    """Jitted ``(params, batch, i, n, s2s) -> per-example metrics [B]`` of one output frame.

    ``batch``: ``blurred [B, S, S, 3]``, ``sharp [B, M, S, S, 3]`` (re-ordered GT, zero-padded past
    ``n``). ``s2s=True``: the output at ``u = 0.5`` vs ``sharp[n // 2]`` (``i`` ignored); ``False``
    (s2v): the output at ``u = i / n`` vs ``sharp[i]``. ``i``, ``n`` and ``s2s`` are traced, so one
    compilation serves every frame and protocol; the host loops over frames (a compiled loop would
    put the network inside a while loop, which XLA:CPU runs far slower). The model sees
    ``{'blurred', 'u', 'frame_index', 'sharp'}``.
    """
    lpips_net, identity_net = metric_nets(use_lpips=use_lpips, use_identity=use_identity)

    def one(params, batch, i, n, s2s):
        b, sharp = batch["blurred"], batch["sharp"]
        bs = b.shape[0]
        i = jnp.where(s2s, n // 2, i)
        idx = jnp.full((bs,), i, jnp.int32)
        u = jnp.where(s2s, jnp.float32(0.5), i.astype(jnp.float32) / n.astype(jnp.float32))
        u = jnp.full((bs,), u, jnp.float32)
        gt = jnp.take_along_axis(sharp, idx.reshape(-1, 1, 1, 1, 1), axis=1)[:, 0]
        out = predict_fn(params, {"blurred": b, "u": u, "frame_index": idx, "sharp": sharp})
        model = image_metrics(out, gt, lpips_net=lpips_net, identity_net=identity_net)
        base = image_metrics(b, gt, lpips_net=lpips_net, identity_net=identity_net)
        return {**model, **{f"{k}_blurred": v for k, v in base.items()}}

    return jax.jit(one)


def _run(ctx: EvalContext, settings, mode: str) -> tuple[dict[str, float], str]:
    """Evaluate every set and frame count; returns the result dict and a printed table."""
    use_lpips = bool(settings.lpips)
    use_identity = _identity_enabled(str(settings.identity))
    key = ("cfmd_frames", use_lpips, use_identity)
    if key not in ctx.cache:
        ctx.cache[key] = _frame_fn(ctx.predict_fn, use_lpips=use_lpips, use_identity=use_identity)
    fn = ctx.cache[key]
    counts = tuple(int(n) for n in settings.frame_counts)
    m_max = max(counts)
    local_bs = local_eval_batch(ctx, int(settings.batch_size or ctx.config.train.global_batch_size))
    results: dict[str, float] = {}
    rows: list[tuple[str, str, dict[str, float]]] = []
    for set_name, source in eval_sets(ctx.config, settings):
        pooled: dict[str, float] = {}
        pooled_n = 0
        for n in counts:
            sums: dict[str, float] = {}
            frames = 0
            examples = 0
            for local in _eval_batches(ctx.config, source, settings, n, local_bs, str(settings.split)):
                sharp = local["sharp"]
                if sharp.shape[1] < m_max:  # pad to one shape for every n: one compilation
                    pad = np.zeros((sharp.shape[0], m_max - sharp.shape[1]) + sharp.shape[2:], sharp.dtype)
                    sharp = np.concatenate([sharp, pad], axis=1)
                mask = np.asarray(local.get("mask", np.ones(len(sharp), np.float32)), np.float32)
                batch = make_global_batch({"blurred": local["blurred"], "sharp": sharp, "mask": mask}, ctx.mesh)
                acc: dict[str, jax.Array] = {}
                for i in range(1 if mode == "s2s" else n):
                    out = fn(ctx.params, batch, np.int32(i), np.int32(n), np.bool_(mode == "s2s"))
                    acc = out if not acc else jax.tree.map(jnp.add, acc, out)
                per_example = {k: gather_to_host(v) for k, v in acc.items()}
                keep = gather_to_host(batch["mask"]) > 0
                if settings.num_examples:
                    idx = np.flatnonzero(keep)[: max(0, int(settings.num_examples) - examples)]
                    keep = np.zeros_like(keep)
                    keep[idx] = True
                for k, v in per_example.items():
                    sums[k] = sums.get(k, 0.0) + float(np.sum(np.where(keep, v.astype(np.float64), 0.0)))
                examples += int(keep.sum())
                frames += int(keep.sum()) * (1 if mode == "s2s" else n)
                if settings.num_examples and examples >= int(settings.num_examples):
                    break
            if frames == 0:
                raise ValueError(f"cfmd eval: the {set_name!r} set (split {settings.split!r}) is empty")
            for k, v in sums.items():
                pooled[k] = pooled.get(k, 0.0) + v
            pooled_n += frames
            if mode == "s2v":
                r = {k: v / frames for k, v in sums.items()}
                r["n"] = float(frames)
                results.update({f"s2v/{set_name}/N{n}/{k}": v for k, v in r.items()})
                rows.append((set_name, f"N={n}", r))
        r = {k: v / pooled_n for k, v in pooled.items()}
        r["n"] = float(pooled_n)
        label = "ALL" if mode == "s2v" else "centre"
        prefix = f"s2v/{set_name}/ALL" if mode == "s2v" else f"s2s/{set_name}"
        results.update({f"{prefix}/{k}": v for k, v in r.items()})
        rows.append((set_name, label, r))
    title = (
        f"cfmd_{mode} at step {ctx.step}: "
        + ("model at u=0.5 vs the middle re-ordered GT frame" if mode == "s2s" else "N outputs at u=i/N vs the re-ordered GT")
        + f" ({settings.reorder} order; RGB, 8-bit; blurred input as baseline)"
    )
    return results, format_table(title, rows)


def format_table(title: str, rows: list[tuple[str, str, Mapping[str, float]]]) -> str:
    """The printed result table (model | blurred input for every metric present)."""
    metrics = [m for m in METRICS if any(m in r for _, _, r in rows)]
    columns = [Column("set", 16, align="<"), Column("frames", 7, align="<"), Column("n", 6)]
    for m in metrics:
        columns += [Column(m + " model", 14, ".4f"), Column(m + " blurred", 15, ".4f")]
    cells = [
        [name, label, int(r["n"])] + [v for m in metrics for v in (r[m], r[m + "_blurred"])]
        for name, label, r in rows
    ]
    return text_table(title, columns, cells)


def cfmd_s2s(ctx: EvalContext) -> dict[str, float]:
    """Single-to-single: the centre moment (u = 0.5) vs the middle re-ordered GT frame."""
    results, table = _run(ctx, ctx.config.eval.cfmd_s2s, "s2s")
    ctx.tables.append(table)
    return results


def cfmd_s2v(ctx: EvalContext) -> dict[str, float]:
    """Single-to-video: N outputs at u = i / N vs the N re-ordered GT frames, per N and ALL."""
    results, table = _run(ctx, ctx.config.eval.cfmd_s2v, "s2v")
    ctx.tables.append(table)
    return results


#: The protocols CFMD adds to the engine's (``Method.evaluators``).
EVALUATORS: dict[str, Evaluator] = {
    "cfmd_s2s": Evaluator(cfmd_s2s, cfmd_eval_config),
    "cfmd_s2v": Evaluator(cfmd_s2v, cfmd_eval_config),
}
