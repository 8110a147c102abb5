"""Evaluation protocols of ``zsm`` (space-time x4 / x2 video SR): ``vid4`` and ``vimeo_septuplet``.

Both score the model next to the two-stage baseline "MATLAB bicubic x4 of every LR frame, missing
frames = average of the two neighbouring bicubic frames", on the same frames, with the Zooming
Slow-Mo conventions (seed_001 §A.7, peer_implementations §1.1 ``test.py``): outputs and ground truth
rounded to 8 bits, PSNR and SSIM on the BT.601 Y channel **without border crop**, plus RGB PSNR;
per-frame scores averaged per clip (septuplet), then over clips.

``vid4`` (settings ``config.eval.vid4``, :func:`vid4_config`): each clip is a video file or a
folder of frames (``clips``, paths relative to the repository root); ``max_frames`` frames from
``start_frame``, centre-cropped to ``crop`` and/or resized to ``resize`` (MATLAB bicubic), cut to a
multiple of 4 and to an odd frame count, rounded to 8 bits: the ground truth ``GT[0..T-1]``. The
input is the LR version of the odd frames (1-based 1, 3, 5, ...; 0-based ``GT[0::2]``), made with
the training degradation (``degradation='data'``: the config's ``septuplet`` chain, default
MATLAB bicubic x1/4) or always clean bicubic (``'clean'``), rounded to 8 bits. The model runs on
sliding windows of 4 LR frames, 3 apart (:func:`restore_jax.inference.chunking.plan_windows` with
``N=4, S=3, k=2``): each window gives 7 frames, consecutive windows share one frame, and every
ground-truth frame is produced (and scored) exactly once. Clips that are missing are skipped with
a notice; when none is left (e.g. no ``../shared``), ``synthetic_clips`` synthetic face sequences
are used instead. Results: ``<name>/psnr_y``, ``ssim_y``, ``psnr_rgb``, ``psnr_y_key`` (frames at
input times), ``psnr_y_interp`` (synthesised frames), the same with ``bicubic_``, and
``n_clips``, ``n_frames``.

``vimeo_septuplet`` (``config.eval.vimeo_septuplet``, :func:`vimeo_septuplet_config`): per
septuplet, the mean over its 7 frames; averaged over septuplets. With ``root`` (a Vimeo-90K
folder or a single ``im1..im7`` folder, read by the ``vimeo_septuplet`` source with ``list_split``)
the LR frames are made from frames 1, 3, 5, 7 as above; with ``root=''`` the septuplets are the
method's own held-out data split (``split``) as the config's ``septuplet`` builder makes them
(its crop, augmentation draw and degradation, with the data config's fixed evaluation seed).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from restore_jax.inference.chunking import Window, plan_windows
from restore_jax.metrics import psnr, ssim
from restore_jax.ops import quantize_8bit
from restore_jax.config.schema import check_eval_batch
from restore_jax.errors import ConfigError
from restore_jax.locations import resolve_user_path
from restore_jax.train.evaluation import EvalContext, Evaluator, gather_to_host
from restore_jax.train.mesh import batch_shards, make_global_batch
from restore_jax.train.tables import Column, format_table

WINDOW, STRIDE, TEMPORAL_SCALE = 4, 3, 2
DEGRADATIONS = ("data", "clean")
METRICS = ("psnr_y", "ssim_y", "psnr_rgb")
#: Held-out shared face videos (kept out of the ``small`` preset's training split).
DEFAULT_CLIPS = ("../shared/data/face_video/d18.mp4", "../shared/data/face_video/d0.mp4")

ApplyFn = Callable[[np.ndarray], np.ndarray]  # [b, 4, h, w, 3] -> [b, 7, 4h, 4w, 3]


# ------------------------------------------------------------------------------------------------
# settings


def vid4_config(**overrides: Any):
    """Default settings section ``config.eval.vid4``."""
    from ml_collections import ConfigDict

    c = ConfigDict()
    c.name = "vid4"  # result-key prefix
    c.clips = DEFAULT_CLIPS  # video files or frame folders, relative to the repository root
    c.start_frame = 0
    c.max_frames = 25  # ground-truth frames per clip (0: all); cut to an odd count
    c.crop = (256, 256)  # centre crop (h, w) before resizing; () keeps the frame
    c.resize = ()  # (h, w) MATLAB-bicubic resize after cropping; () keeps the size
    c.degradation = "data"  # 'data': the config's septuplet chain; 'clean': MATLAB bicubic x1/scale
    c.seed = 0  # degradation draws: one generator per clip, seeded (seed, clip index)
    c.synthetic_clips = 2  # synthetic face sequences used when no listed clip exists
    c.synthetic_frames = 13
    c.synthetic_size = 64
    c.batch_windows = 0  # windows per model call (global); 0: the data-parallel size
    c.update(overrides)
    return c


def vimeo_septuplet_config(**overrides: Any):
    """Default settings section ``config.eval.vimeo_septuplet``."""
    from ml_collections import ConfigDict

    c = ConfigDict()
    c.name = "vimeo"  # result-key prefix
    c.root = ""  # '' = the method's held-out split; else a Vimeo-90K folder (relative: repo root)
    c.list_split = "test"  # which list file of the Vimeo folder (test, test_fast, ...)
    c.split = "val"  # held-out split of config.data when root == ''
    c.degradation = "data"  # LR of a Vimeo folder: 'data' (config's chain) or 'clean' (bicubic)
    c.seed = 0
    c.num_examples = 0  # 0: all
    c.batch_size = 0  # global; 0: train.global_batch_size
    c.update(overrides)
    return c


def validate_eval_settings(config, *, num_devices: int | None = None, process_count: int = 1) -> None:
    """Checks of the ``vid4`` / ``vimeo_septuplet`` sections a config lists in ``eval.protocols``."""
    protocols = tuple(config.eval.protocols)
    for name in ("vid4", "vimeo_septuplet"):
        if name in protocols and name not in config.eval:
            raise ConfigError(f"eval.protocols lists {name!r} but config.eval.{name} is missing; add {name}_config()")
    if "vid4" in protocols:
        s = config.eval.vid4
        if s.degradation not in DEGRADATIONS:
            raise ConfigError(f"eval.vid4.degradation={s.degradation!r} is not one of {DEGRADATIONS}")
        for key in ("crop", "resize"):
            if len(tuple(s[key])) not in (0, 2):
                raise ConfigError(f"eval.vid4.{key} must be () or (height, width), got {s[key]!r}")
        if int(s.max_frames) < 0 or int(s.max_frames) in (1, 2):
            raise ConfigError(f"eval.vid4.max_frames must be 0 (all) or >= 3, got {s.max_frames}")
        if int(s.synthetic_frames) < 3 or int(s.synthetic_size) % 16:
            raise ConfigError("eval.vid4.synthetic_frames must be >= 3 and synthetic_size a multiple of 16")
        bw = int(s.batch_windows)
        if bw < 0:
            raise ConfigError(f"eval.vid4.batch_windows={bw} must be 0 (the data-parallel size) or positive")
        if bw:
            check_eval_batch(config, "vid4.batch_windows", bw, num_devices=num_devices, process_count=process_count)
    if "vimeo_septuplet" in protocols:
        s = config.eval.vimeo_septuplet
        if s.degradation not in DEGRADATIONS:
            raise ConfigError(f"eval.vimeo_septuplet.degradation={s.degradation!r} is not one of {DEGRADATIONS}")
        bs = int(s.batch_size or config.train.global_batch_size)
        check_eval_batch(config, "vimeo_septuplet.batch_size", bs, num_devices=num_devices, process_count=process_count)


# ------------------------------------------------------------------------------------------------
# protocol pieces (host side, NumPy; testable without a model)


def quantize(x: np.ndarray) -> np.ndarray:
    """Round to 8 bits on the host: :func:`restore_jax.ops.quantize_8bit` of ``np.asarray(x)``, so a
    float32 NumPy array whatever ``x`` is (JAX arrays included)."""
    return quantize_8bit(np.asarray(x))


def degradation_chain(config, kind: str) -> list[tuple]:
    """Degradation steps for LR frames: the config's septuplet chain (``'data'``) or clean bicubic."""
    from input_pipelines.builders import DEFAULT_SR_CHAIN, _steps

    scale = float(config.model.scale)
    chain = config.data.builder.kwargs.get("degradation", None) if kind == "data" else None
    return _steps(chain, DEFAULT_SR_CHAIN(scale))


def make_lr(frames: np.ndarray, chain: Sequence[tuple], seed: Sequence[int]) -> np.ndarray:
    """LR frames ``[M, h, w, 3]`` from HR frames ``[M, H, W, 3]``: one draw of ``chain``, 8-bit."""
    from restore_jax.degradations import Compose

    y, _ = Compose(list(chain))(np.random.default_rng(list(seed)), np.ascontiguousarray(frames, np.float32))
    return quantize(y)


def baseline_frames(lr: np.ndarray, scale: int) -> np.ndarray:
    """Two-stage baseline ``[2M-1, H, W, 3]``: MATLAB bicubic x``scale`` of each LR frame, frames in
    between = mean of the two neighbouring bicubic frames; 8-bit."""
    from restore_jax.ops import imresize_np

    lr = np.asarray(lr, np.float32)
    up = np.asarray(imresize_np(lr, scale=float(scale)), np.float32)
    out = np.empty((2 * up.shape[0] - 1,) + up.shape[1:], np.float32)
    out[0::2] = up
    out[1::2] = 0.5 * (up[:-1] + up[1:])
    return quantize(out)


@dataclasses.dataclass
class WindowRun:
    """Output frames assembled from the windows, and which window / local index gave each frame."""

    frames: np.ndarray  # [(M - 1) * 2 + 1, H, W, 3]
    window_of_frame: np.ndarray  # [frames] index into ``plan``
    local_of_frame: np.ndarray  # [frames] index inside that window's output
    plan: list[Window]


def run_windows(apply_fn: ApplyFn, lr: np.ndarray, *, batch: int = 1) -> WindowRun:
    """Run ``apply_fn`` on the 4-frame windows of ``lr [M, h, w, 3]`` and assemble ``2M - 1`` frames.

    Windows come from ``plan_windows(M, 4, 3, 2)``; they are evaluated ``batch`` at a time (the last
    group padded by repeating its last window, so every call has the same shape).
    """
    lr = np.asarray(lr, np.float32)
    m = lr.shape[0]
    plan = plan_windows(m, WINDOW, STRIDE, TEMPORAL_SCALE)
    per_window = (WINDOW - 1) * TEMPORAL_SCALE + 1
    inputs = np.stack([lr[np.minimum(np.arange(w.start, w.start + WINDOW), m - 1)] for w in plan])
    outs = []
    for i in range(0, len(plan), batch):
        group = inputs[i : i + batch]
        if group.shape[0] < batch:
            group = np.concatenate([group, np.repeat(group[-1:], batch - group.shape[0], axis=0)])
        y = np.asarray(apply_fn(group))
        if y.ndim != 5 or y.shape[:2] != (batch, per_window):
            raise ValueError(
                f"the model returned shape {y.shape} for windows {group.shape}; expected [{batch}, {per_window}, H, W, 3]"
            )
        outs.append(y[: min(batch, len(plan) - i)])
    outs = np.concatenate(outs)
    total = (m - 1) * TEMPORAL_SCALE + 1
    frames = np.empty((total,) + outs.shape[2:], np.float32)
    window_of = np.full((total,), -1, np.int64)
    local_of = np.full((total,), -1, np.int64)
    for j, w in enumerate(plan):
        for local in range(w.keep_start, w.keep_stop):
            g = w.out_offset + local
            if g >= total:
                continue  # outputs past the last frame of a short, padded clip
            if window_of[g] >= 0:
                raise AssertionError(f"output frame {g} produced twice (windows {window_of[g]} and {j})")
            frames[g], window_of[g], local_of[g] = outs[j, local], j, local
    missing = np.flatnonzero(window_of < 0)
    if missing.size:
        raise AssertionError(f"output frames {missing.tolist()} were produced by no window")
    return WindowRun(frames, window_of, local_of, plan)


_METRIC_FNS: dict = {}


def frame_scores(pred: np.ndarray, gt: np.ndarray, *, chunk: int = 8) -> dict[str, np.ndarray]:
    """Per-frame ``psnr_y``, ``ssim_y`` (BT.601 Y, no crop) and ``psnr_rgb`` of ``[T, H, W, 3]`` frames."""
    if pred.shape != gt.shape:
        raise ValueError(f"output {pred.shape} and ground truth {gt.shape} differ in shape")
    if "fn" not in _METRIC_FNS:

        def fn(a, b):
            return {
                "psnr_y": psnr(a, b, y_channel=True, data_range=1.0),
                "ssim_y": ssim(a, b, y_channel=True, data_range=1.0),
                "psnr_rgb": psnr(a, b, y_channel=False, data_range=1.0),
            }

        _METRIC_FNS["fn"] = jax.jit(fn)
    fn = _METRIC_FNS["fn"]
    parts: dict[str, list] = {k: [] for k in METRICS}
    t = pred.shape[0]
    for i in range(0, t, chunk):
        a, b = pred[i : i + chunk], gt[i : i + chunk]
        n = a.shape[0]
        if n < chunk and t > chunk:  # keep one shape per clip size: pad the last chunk
            a = np.concatenate([a, np.repeat(a[-1:], chunk - n, 0)])
            b = np.concatenate([b, np.repeat(b[-1:], chunk - n, 0)])
        r = jax.device_get(fn(a, b))
        for k in METRICS:
            parts[k].append(np.asarray(r[k], np.float64)[:n])
    return {k: np.concatenate(v) for k, v in parts.items()}


@dataclasses.dataclass
class ClipResult:
    """Per-frame scores of one clip (model and baseline) and what was scored."""

    name: str
    model: dict[str, np.ndarray]
    baseline: dict[str, np.ndarray]
    output: np.ndarray
    baseline_output: np.ndarray
    run: WindowRun

    @property
    def num_frames(self) -> int:
        return int(self.output.shape[0])

    def summary(self) -> dict[str, float]:
        """Clip means: metrics of all frames, plus Y-PSNR of input-time (key) and synthesised frames."""
        out: dict[str, float] = {}
        for prefix, scores in (("", self.model), ("bicubic_", self.baseline)):
            for k in METRICS:
                out[prefix + k] = float(np.mean(scores[k]))
            out[prefix + "psnr_y_key"] = float(np.mean(scores["psnr_y"][0::2]))
            if self.num_frames > 1:
                out[prefix + "psnr_y_interp"] = float(np.mean(scores["psnr_y"][1::2]))
        return out


def evaluate_clip(
    apply_fn: ApplyFn, gt: np.ndarray, *, chain: Sequence[tuple], seed: Sequence[int], scale: int = 4,
    batch: int = 1, name: str = "clip",
) -> ClipResult:
    """The ``vid4`` protocol on one clip: ``gt [T, H, W, 3]`` (8-bit values, T odd, H, W multiples of
    ``scale``) -> LR of ``gt[0::2]`` -> model windows -> per-frame scores of model and baseline."""
    gt = np.asarray(gt, np.float32)
    if gt.ndim != 4 or gt.shape[0] < 3 or gt.shape[0] % 2 == 0:
        raise ValueError(f"a clip needs an odd number >= 3 of frames [T, H, W, 3], got shape {gt.shape}")
    if gt.shape[1] % scale or gt.shape[2] % scale:
        raise ValueError(f"clip frames {gt.shape[1]}x{gt.shape[2]} are not a multiple of the scale {scale}")
    lr = make_lr(gt[0::2], chain, seed)
    run = run_windows(apply_fn, lr, batch=batch)
    output = quantize(run.frames)
    if output.shape != gt.shape:
        raise ValueError(f"the model produced frames {output.shape[1:]} for ground truth {gt.shape[1:]}")
    base = baseline_frames(lr, scale)
    return ClipResult(name, frame_scores(output, gt), frame_scores(base, gt), output, base, run)


def mean_results(clips: Sequence[ClipResult]) -> dict[str, float]:
    """Average the clip means over clips (each clip weighs the same)."""
    if not clips:
        raise ValueError("no clips were evaluated")
    summaries = [c.summary() for c in clips]
    keys = sorted(set.intersection(*(set(s) for s in summaries)))
    out = {k: float(np.mean([s[k] for s in summaries])) for k in keys}
    out["n_clips"] = float(len(clips))
    out["n_frames"] = float(sum(c.num_frames for c in clips))
    return out


# ------------------------------------------------------------------------------------------------
# clip loading


def _resolve(path: str) -> pathlib.Path:
    return resolve_user_path(path)


def load_clip(path: pathlib.Path, start: int, count: int) -> np.ndarray:
    """Frames ``[start, start + count)`` (``count=0``: to the end) of a video file or frame folder, float [0, 1]."""
    if path.is_dir():
        from input_pipelines.image_io import IMAGE_EXTENSIONS, read_image
        from input_pipelines.sources import natural_key

        files = sorted((f for f in os.listdir(path) if pathlib.Path(f).suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
        if not files:
            raise FileNotFoundError(f"clip folder {path} has no image files")
        stop = len(files) if count <= 0 else min(len(files), start + count)
        return np.stack([read_image(path / f) for f in files[start:stop]]).astype(np.float32)
    from input_pipelines import video_io

    info = video_io.probe_video(path)
    stop = info.num_frames if count <= 0 else min(info.num_frames, start + count)
    if stop - start < 1:
        raise ValueError(f"{path}: start_frame={start} is past the end ({info.num_frames} frames)")
    return video_io.read_frames(path, start, stop - start, info=info).astype(np.float32) / np.float32(255.0)


def prepare_clip(frames: np.ndarray, *, crop: Sequence[int] = (), resize: Sequence[int] = (), scale: int = 4) -> np.ndarray:
    """Centre crop, MATLAB-bicubic resize, cut to a multiple of ``scale`` and an odd count, 8-bit."""
    x = np.asarray(frames, np.float32)
    if len(crop) == 2:
        ch, cw = min(int(crop[0]), x.shape[1]), min(int(crop[1]), x.shape[2])
        y0, x0 = (x.shape[1] - ch) // 2, (x.shape[2] - cw) // 2
        x = x[:, y0 : y0 + ch, x0 : x0 + cw]
    if len(resize) == 2 and tuple(resize) != x.shape[1:3]:
        from restore_jax.ops import imresize_np

        x = np.asarray(imresize_np(x, size=(int(resize[0]), int(resize[1]))), np.float32)
    h, w = x.shape[1] - x.shape[1] % scale, x.shape[2] - x.shape[2] % scale
    t = x.shape[0] if x.shape[0] % 2 else x.shape[0] - 1
    return quantize(x[:t, :h, :w])


def synthetic_clips(settings) -> list[tuple[str, np.ndarray]]:
    """``synthetic_clips`` synthetic face sequences (test split) as ``(name, frames)``."""
    from input_pipelines.sources import SyntheticFacesSource

    src = SyntheticFacesSource(
        size=int(settings.synthetic_size), mode="sequence", num_frames=int(settings.synthetic_frames),
        split="test", num_examples=int(settings.synthetic_clips), seed=int(settings.seed),
    )
    return [(f"synthetic_{i}", np.asarray(src[i]["frames"], np.float32)) for i in range(len(src))]


# ------------------------------------------------------------------------------------------------
# running the model of an EvalContext


def model_apply_fn(ctx: EvalContext, batch: int) -> ApplyFn:
    """``[batch, 4, h, w, 3] -> [batch, 7, 4h, 4w, 3]`` through the context's jitted predictor.

    Every process passes the same full group; each contributes its rows of the global batch and
    gets the gathered outputs back, so all processes compute identical scores.
    """
    pi, pc = jax.process_index(), jax.process_count()
    if batch % pc or batch % batch_shards(ctx.mesh):
        raise ValueError(f"window batch {batch} must be divisible by the data-parallel size and the process count")
    local = batch // pc
    lr_key = ctx.config.model.input_key

    def apply(x: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(x[pi * local : (pi + 1) * local], np.float32)
        out = ctx.predict_fn(ctx.params, make_global_batch({lr_key: rows}, ctx.mesh))
        return gather_to_host(out)

    return apply


_TABLE_COLUMNS = (
    Column("clip", 22, align="<"),
    Column("frames", 6),
    Column("Y-PSNR", 7, ".2f"),
    Column("bicubic", 7, ".2f"),
    Column("Y-SSIM", 7, ".4f"),
    Column("bicubic", 7, ".4f"),
    Column("RGB-PSNR", 8, ".2f"),
    Column("bicubic", 7, ".2f"),
    Column("interp Y-PSNR", 13, ".2f"),
    Column("bicubic", 7, ".2f"),
)


def _table(title: str, rows: Sequence[tuple[str, int, Mapping[str, float]]]) -> str:
    nan = float("nan")
    cells = [
        [
            name[:22], n, r["psnr_y"], r["bicubic_psnr_y"], r["ssim_y"], r["bicubic_ssim_y"], r["psnr_rgb"],
            r["bicubic_psnr_rgb"], r.get("psnr_y_interp", nan), r.get("bicubic_psnr_y_interp", nan),
        ]
        for name, n, r in rows
    ]
    return format_table(title, _TABLE_COLUMNS, cells)


def vid4(ctx: EvalContext) -> dict[str, float]:
    """Sliding-window space-time SR on whole clips (see the module docstring)."""
    cfg = ctx.config
    s = cfg.eval.vid4
    scale = int(cfg.model.scale)
    batch = int(s.batch_windows) or batch_shards(ctx.mesh)
    if batch % jax.process_count():
        batch *= jax.process_count()
    apply = model_apply_fn(ctx, batch)
    chain = degradation_chain(cfg, s.degradation)
    sources: list[tuple[str, Any]] = []
    for path in tuple(s.clips):
        p = _resolve(str(path))
        if p.exists():
            sources.append((p.name, p))
        else:
            ctx.log(f"[eval] vid4: clip {p} not found: skipped")
    if not sources:
        ctx.log(f"[eval] vid4: no listed clip found; using {int(s.synthetic_clips)} synthetic face sequences")
        sources = list(synthetic_clips(s))
    results = []
    for i, (name, src) in enumerate(sources):
        frames = load_clip(src, int(s.start_frame), int(s.max_frames)) if isinstance(src, pathlib.Path) else src
        if isinstance(src, np.ndarray) and int(s.max_frames) > 0:
            frames = frames[int(s.start_frame) : int(s.start_frame) + int(s.max_frames)]
        gt = prepare_clip(frames, crop=tuple(s.crop), resize=tuple(s.resize), scale=scale)
        results.append(evaluate_clip(apply, gt, chain=chain, seed=(int(s.seed), i), scale=scale, batch=batch, name=name))
    mean = mean_results(results)
    rows = [(r.name, r.num_frames, r.summary()) for r in results] + [("mean over clips", int(mean["n_frames"]), mean)]
    gt_shape = results[0].output.shape
    title = (
        f"{s.name} at step {ctx.step}: x{scale} space / x2 time, {len(results)} clip(s) "
        f"(first {gt_shape[1]}x{gt_shape[2]}), LR = {'training degradation' if s.degradation == 'data' else 'bicubic'}; "
        "Y / RGB, no crop, 8-bit; baseline = bicubic + neighbour averaging"
    )
    ctx.tables.append(_table(title, rows))
    return {f"{s.name}/{k}": v for k, v in mean.items()}


# ------------------------------------------------------------------------------------------------
# vimeo_septuplet


def _septuplet_scores(out: np.ndarray, base: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """Per-septuplet means over frames of model and baseline scores (``[B, 7, H, W, 3]`` inputs)."""
    b, t = gt.shape[:2]
    flat = lambda x: x.reshape((b * t,) + x.shape[2:])  # noqa: E731
    res = {}
    for prefix, pred in (("", out), ("bicubic_", base)):
        scores = frame_scores(flat(pred), flat(gt), chunk=b * t)
        for k, v in scores.items():
            res[prefix + k] = v.reshape(b, t).mean(axis=1)
            if k == "psnr_y":
                res[prefix + "psnr_y_interp"] = v.reshape(b, t)[:, 1::2].mean(axis=1)
    return res


def _vimeo_folder_batches(ctx: EvalContext, s, bs: int):
    """Global batches ``{'lr', 'hr', 'mask'}`` (host NumPy) from a Vimeo-90K layout folder."""
    from input_pipelines.sources import VimeoSeptupletSource

    cfg = ctx.config
    scale = int(cfg.model.scale)
    src = VimeoSeptupletSource(_resolve(str(s.root)), split=str(s.list_split))
    chain = degradation_chain(cfg, s.degradation)
    n = len(src) if int(s.num_examples) <= 0 else min(len(src), int(s.num_examples))
    for start in range(0, n, bs):
        idx = list(range(start, min(n, start + bs)))
        hrs, lrs = [], []
        for i in idx:
            hr = prepare_clip(src[i]["frames"], scale=scale)
            if hr.shape[0] != 7:
                raise ValueError(f"{src.describe(i)}: expected 7 frames, got {hr.shape[0]}")
            hrs.append(hr)
            lrs.append(make_lr(hr[0::2], chain, (int(s.seed), i)))
        mask = np.zeros((bs,), np.float32)
        mask[: len(idx)] = 1
        while len(hrs) < bs:
            hrs.append(hrs[-1])
            lrs.append(lrs[-1])
        yield {"lr": np.stack(lrs), "hr": np.stack(hrs), "mask": mask}


def _data_split_batches(ctx: EvalContext, s, bs: int):
    """Global batches of the method's held-out split (every process reads the whole split)."""
    from input_pipelines.pipeline import build_eval

    cfg = ctx.config
    it = build_eval(cfg.data, s.split, bs, process_index=0, process_count=1, catalog=ctx.catalog)
    lr_key, hr_key = cfg.model.input_key, cfg.model.target_key
    try:
        for batch in it:
            mask = np.asarray(batch.get("mask", np.ones((bs,), np.float32)), np.float32)
            # the builder's LR is float; score like stored frames: 8-bit input, 8-bit ground truth
            yield {"lr": quantize(batch[lr_key]), "hr": quantize(batch[hr_key]), "mask": mask}
    finally:
        if hasattr(it, "close"):
            it.close()


def vimeo_septuplet(ctx: EvalContext) -> dict[str, float]:
    """Per-septuplet model vs baseline scores (see the module docstring)."""
    cfg = ctx.config
    s = cfg.eval.vimeo_septuplet
    scale = int(cfg.model.scale)
    bs = int(s.batch_size or cfg.train.global_batch_size)
    apply = model_apply_fn(ctx, bs)
    if str(s.root):
        batches = _vimeo_folder_batches(ctx, s, bs)
        where = str(_resolve(str(s.root)))
    else:
        batches = _data_split_batches(ctx, s, bs)
        where = f"held-out split {s.split!r} of config.data ({cfg.data.source.name})"
    sums: dict[str, float] = {}
    count = 0
    limit = int(s.num_examples)
    shape = None
    for batch in batches:
        out = quantize(apply(batch["lr"]))
        if out.shape != batch["hr"].shape:
            raise ValueError(f"the model produced {out.shape} for ground truth {batch['hr'].shape}")
        shape = out.shape
        base = np.stack([baseline_frames(x, scale) for x in batch["lr"]])
        scores = _septuplet_scores(out, base, batch["hr"])
        keep = batch["mask"] > 0
        if limit > 0:
            idx = np.flatnonzero(keep)[: max(limit - count, 0)]
            keep = np.zeros_like(keep)
            keep[idx] = True
        for k, v in scores.items():
            sums[k] = sums.get(k, 0.0) + float(np.sum(v[keep]))
        count += int(keep.sum())
        if limit > 0 and count >= limit:
            break
    if count == 0:
        raise ValueError(f"vimeo_septuplet: no septuplets in {where}")
    mean = {k: v / count for k, v in sums.items()}
    mean["n"] = float(count)
    title = (
        f"{s.name} at step {ctx.step}: {count} septuplet(s) of {shape[2]}x{shape[3]} from {where}; "
        "per-septuplet means, Y / RGB, no crop, 8-bit; baseline = bicubic + neighbour averaging"
    )
    ctx.tables.append(_table(title, [(s.name, int(count) * 7, mean)]))
    return {f"{s.name}/{k}": v for k, v in mean.items()}


#: The protocols Zooming Slow-Mo adds to the engine's (``Method.evaluators``).
EVALUATORS: dict[str, Evaluator] = {
    "vid4": Evaluator(vid4, vid4_config),
    "vimeo_septuplet": Evaluator(vimeo_septuplet, vimeo_septuplet_config),
}


__all__ = [
    "EVALUATORS",
    "DEFAULT_CLIPS",
    "ClipResult",
    "WindowRun",
    "baseline_frames",
    "evaluate_clip",
    "frame_scores",
    "load_clip",
    "make_lr",
    "mean_results",
    "prepare_clip",
    "quantize",
    "run_windows",
    "vid4_config",
    "vimeo_septuplet_config",
]
