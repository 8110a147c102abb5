"""Benchmark Zooming Slow-Mo: the shipped training step and ``Restorer`` inference vs the PyTorch re-statement.

What is timed is what the library runs, built from a config (default ``zsm:paper``; the size flags
and any ``--config.x=y`` arguments override it):

- ``train``: ``trainer = api.make_trainer(config)``; ``state = trainer.init_state()``; one batch of
  ``--batch`` clips (4 LR frames of ``--lr-size`` squared, 7 HR frames) through
  ``trainer.global_batch``; ``step_s`` is one call of ``trainer.step_fn(state, batch)``, the jitted
  engine step the trainer's ``fit`` loop runs (recipe loss: Charbonnier ``sqrt(d^2 + eps^2)``
  summed over all pixels in the paper config; the config's optimizer, NaN guard, EMA, metrics;
  the state is donated, so every call takes the state the previous one returned); reported as
  clips per second. ``--dtypes float32,bfloat16`` builds one trainer per
  ``train.compute_dtype``. PyTorch: ``restore_jax.methods.zsm.torch_ref.ZSMTorch`` with the same
  initial weights, eager, the same loss and ``torch.optim.Adam`` with the config's rate at step 0,
  betas and epsilon. The first-step losses of both are recorded as a cross-check.
- ``infer``: the initial state is saved as a checkpoint in a temporary workdir and loaded with
  ``api.load_restorer`` (float32, as the Restorer always runs); ``restorer.video(frames)`` on 4 LR
  frames at ``--infer-size`` (default Vid4: 144x180 LR -> 7 frames of 576x720), i.e. one window;
  ``s_per_output_frame`` = window time / 6, since consecutive windows share one frame and each
  contributes 6 new output frames. PyTorch: the same window through ``ZSMTorch`` under ``no_grad``.

Run from the repository root::

    python -m bench.zsm_bench --quick                      # tiny model, a few minutes on CPU (smoke test)
    python -m bench.zsm_bench --batch 2 --repeats 2        # paper model (11.1 M), CPU-sized batch
    python -m bench.zsm_bench --device gpu                 # paper model, batch 16, on a GPU

Timings are medians over ``--repeats`` runs after ``--warmup`` untimed runs (the first call, which
compiles, is reported separately as ``first_call_s``). Writes ``bench/results/zsm_<device>.json``
(or ``--name``, or the path ``--out``) with the exact command line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
import warnings


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH (e.g. 144x180), got {text!r}") from None
    return h, w


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Other arguments of the form --config.KEY=VALUE override the config (e.g. --config.optim.lr=1e-4).",
    )
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="auto: JAX's default backend (torch on CUDA when JAX is on GPU and CUDA is there)")
    p.add_argument("--config", default="zsm:paper", help="config spec the trainer is built from (default zsm:paper)")
    p.add_argument("--parts", default="train,infer", help="comma-separated: train, infer")
    p.add_argument("--nf", type=int, default=None, help="model.nf (config: 64)")
    p.add_argument("--groups", type=int, default=None, help="model.groups, deformable groups (config: 8)")
    p.add_argument("--front-blocks", type=int, default=None, help="model.front_blocks (config: 5)")
    p.add_argument("--back-blocks", type=int, default=None, help="model.back_blocks (config: 40)")
    p.add_argument("--batch", type=int, default=None, help="train.global_batch_size, clips per step (config: 16)")
    p.add_argument("--lr-size", type=int, default=None, help="training LR patch side (config: 32)")
    p.add_argument("--infer-size", type=_hw, default=(144, 180), help="inference LR frame HxW (Vid4: 144x180)")
    p.add_argument("--dtypes", default="float32", help="train.compute_dtype values, comma separated (float32,bfloat16)")
    unroll = p.add_mutually_exclusive_group()
    unroll.add_argument("--unroll", dest="unroll", action="store_true", default=None,
                        help="model.unroll=True (unrolled residual-trunk / ConvLSTM scans; faster backward on CPU)")
    unroll.add_argument("--no-unroll", dest="unroll", action="store_false", help="model.unroll=False (rolled scans)")
    p.add_argument("--no-torch", action="store_true", help="time JAX only")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true",
                   help="tiny model: nf 16, 2 groups, 1+2 blocks, unrolled, batch 2, 16x16 LR, inference 32x48, "
                        "2 repeats")
    p.add_argument("--name", default=None, help="results file name in bench/results (default zsm_<device>)")
    p.add_argument("--out", default=None, help="write the JSON to this path instead (e.g. /tmp/zsm.json)")
    args, extra = p.parse_known_args(argv)
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    if args.quick:
        args.nf, args.groups, args.front_blocks, args.back_blocks = 16, 2, 1, 2
        args.batch, args.lr_size, args.infer_size = 2, 16, (32, 48)
        args.warmup, args.repeats = 1, 2
        if args.unroll is None:
            args.unroll = True
    parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not parts or parts - {"train", "infer"}:
        p.error(f"--parts must name train and/or infer, got {args.parts!r}")
    args.parts = parts
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in args.dtypes:
        if d not in ("float32", "bfloat16"):
            p.error(f"--dtypes: unknown dtype {d!r} (use float32 and/or bfloat16)")
    return args, extra


def config_overrides(args, extra: list[str]) -> list[str]:
    """``--config.x=y`` overrides for the size flags given (then the caller's own ones)."""
    out = []
    for flag, key in (("nf", "model.nf"), ("groups", "model.groups"), ("front_blocks", "model.front_blocks"),
                      ("back_blocks", "model.back_blocks"), ("batch", "train.global_batch_size")):
        if getattr(args, flag) is not None:
            out.append(f"--config.{key}={getattr(args, flag)}")
    if args.lr_size is not None:
        out.append(f"--config.data.builder.kwargs.hr_size={4 * args.lr_size}")
    if args.unroll is not None:
        out.append(f"--config.model.unroll={args.unroll}")
    return out + list(extra)


def main(argv=None) -> None:  # noqa: C901 - one linear script
    args, extra = parse_args(argv)
    command = "python -m bench.zsm_bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import numpy as np

    from bench.common import machine_info, median, print_table, time_fn, write_results
    from restore_jax import api
    from restore_jax.methods.zsm.recipe import zsm_config
    from restore_jax.nn.params import count_params
    from restore_jax.train.state import merge

    torch = None
    if not args.no_torch:
        try:
            import torch

            from restore_jax.methods.zsm.torch_ref import ZSMTorch, transplant_from_nnx
        except ImportError as exc:  # torch is a dev dependency
            raise SystemExit(f"PyTorch reference unavailable ({exc}); install the dev extras or pass --no-torch")

    device = args.device
    if device == "auto":
        device = "gpu" if jax.default_backend() == "gpu" else "cpu"
    if device == "gpu" and jax.default_backend() != "gpu":
        raise SystemExit(f"--device gpu: JAX has no GPU backend here (jax.devices() = {jax.devices()})")
    torch_device = None
    if torch is not None:
        torch_device = "cuda" if (device == "gpu" and torch.cuda.is_available()) else "cpu"
        if device == "gpu" and torch_device == "cpu":
            print("note: torch has no CUDA here; the torch reference runs on CPU (ratios are cross-device)")

    overrides = config_overrides(args, extra)
    configs = {d: api.load_config(args.config, overrides + [f"--config.train.compute_dtype={d}"]) for d in args.dtypes}
    config = configs[args.dtypes[0]]
    if config.method != "zsm":
        raise SystemExit(f"--config {args.config!r} is a {config.method!r} config, not zsm")
    mcfg = zsm_config(config.model)
    lr_size = int(config.data.builder.kwargs.hr_size) // int(config.model.scale)
    batch_size = int(config.train.global_batch_size)
    eps, reduction = float(config.loss.eps), str(config.loss.reduction)
    if torch is not None and (mcfg.gfi or mcfg.residual != "none"):
        raise SystemExit("the PyTorch reference has no GFI losses and no residual baseline: set "
                         "--config.model.gfi=False --config.model.residual=none, or pass --no-torch")

    # ---- trainers and the initial state (the same for every compute dtype: same seed, float32 params)
    t0 = time.perf_counter()
    trainers = {d: api.make_trainer(c) for d, c in configs.items()}
    trainer = trainers[args.dtypes[0]]
    state = trainer.init_state()
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    g_graph = trainer.graphdefs["G"]
    host_params = jax.device_get(state.params["G"])
    host_ms = jax.device_get(state.extras.get("model_state", {}).get("G"))
    n_params = count_params(host_params)
    ref = base_weights = None
    if torch is not None:  # transplanted before any donation invalidates the JAX buffers
        ref = ZSMTorch.from_config(mcfg)
        transplant_from_nnx(ref, merge(g_graph, host_params, host_ms))
        ref = ref.to(torch_device)
        base_weights = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    workdir = None
    if "infer" in args.parts:  # the Restorer loads what a training run would have saved
        workdir = tempfile.mkdtemp(prefix="zsm_bench_")
        ckpt = trainer.make_checkpointer(workdir)
        ckpt.save(0, state, config=trainer.config.to_dict(), force=True)
        ckpt.close()

    def sync_torch():
        if torch_device == "cuda":
            torch.cuda.synchronize()

    def to_torch(a):
        return torch.from_numpy(a).permute(0, 1, 4, 2, 3).contiguous().to(torch_device)

    rng = np.random.default_rng(0)
    rows, records = [], {}

    def add_row(part, impl, compute, what, times, first_s, per, unit, extra_fields=None):
        med = median(times)
        rec = dict(times_s=times, median_s=med, first_call_s=first_s, **(extra_fields or {}))
        rec[unit] = per(med)
        records.setdefault(part, {})[f"{impl}_{compute}_{what}"] = rec
        rows.append(dict(part=part, impl=impl, compute=compute, measure=what, median_s=med, min_s=min(times),
                         **{unit: per(med)}, first_call_s=first_s, **(extra_fields or {})))

    try:
        # ---------------------------------------------------------------------------- train
        if "train" in args.parts:
            b, s = batch_size, lr_size
            local = {"lr": rng.random((b, 4, s, s, 3), dtype=np.float32),
                     "hr": rng.random((b, 7, 4 * s, 4 * s, 3), dtype=np.float32)}
            clips = lambda med: b / med  # noqa: E731

            for dname in args.dtypes:
                tr = trainers[dname]
                batch = tr.global_batch(local)
                carry = {"state": state if tr is trainer else tr.init_state()}
                state = None  # donated below
                print(f"jax {dname}: compiling trainer.step_fn ...", flush=True)
                t0 = time.perf_counter()
                carry["state"], metrics = tr.step_fn(carry["state"], batch)
                jax.block_until_ready((carry["state"], metrics))
                first_s = time.perf_counter() - t0
                first_loss = float(metrics["loss"])

                def run_step(tr=tr, batch=batch, carry=carry):
                    carry["state"], m = tr.step_fn(carry["state"], batch)
                    return m, carry["state"]

                times = time_fn(run_step, warmup=args.warmup, repeats=args.repeats)
                add_row("train", "jax", dname, "step", times, first_s, clips, "clips_per_s", {"first_loss": first_loss})
                del carry

            if ref is not None:
                lr_t, hr_t = to_torch(local["lr"]), to_torch(local["hr"])
                o = config.optim
                lr0 = float(trainer.optimizers["G"].schedule(0))
                opt = torch.optim.Adam(ref.parameters(), lr=lr0, betas=(float(o.b1), float(o.b2)), eps=float(o.eps))
                weight = float(config.loss.pixel_weight)

                def torch_step():
                    opt.zero_grad(set_to_none=True)
                    d = ref(lr_t) - hr_t
                    per_element = torch.sqrt(d * d + eps * eps)
                    loss = weight * (per_element.sum() if reduction == "sum" else per_element.mean())
                    loss.backward()
                    opt.step()
                    sync_torch()
                    return loss.detach()

                t0 = time.perf_counter()
                first_loss = float(torch_step())
                first_s = time.perf_counter() - t0
                times = time_fn(torch_step, warmup=args.warmup, repeats=args.repeats)
                add_row("train", "torch", "float32", "step", times, first_s, clips, "clips_per_s",
                        {"first_loss": first_loss})
                ref.load_state_dict(base_weights)  # the steps moved the weights: back to the initial ones

        # ---------------------------------------------------------------------------- infer
        if "infer" in args.parts:
            h, w = args.infer_size
            frames = rng.random((4, h, w, 3), dtype=np.float32)
            per_frame = lambda med: med / 6.0  # noqa: E731
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "no EMA parameters": the paper keeps none
                restorer = api.load_restorer(workdir, log=lambda *a, **k: None)
            t0 = time.perf_counter()
            y = restorer.video(frames, progress=False)
            first_s = time.perf_counter() - t0
            times = time_fn(lambda: restorer.video(frames, progress=False), warmup=args.warmup, repeats=args.repeats)
            add_row("infer", "jax", "float32", "window", times, first_s, per_frame, "s_per_output_frame",
                    {"output": list(y.shape), "timed": "Restorer.video"})
            if ref is not None:
                x_t = to_torch(frames[None])

                def torch_apply():
                    with torch.no_grad():
                        out = ref(x_t)
                    sync_torch()
                    return out

                t0 = time.perf_counter()
                out = torch_apply()
                first_s = time.perf_counter() - t0
                times = time_fn(torch_apply, warmup=args.warmup, repeats=args.repeats)
                diff = float(np.max(np.abs(out[0].permute(0, 2, 3, 1).cpu().numpy() - y)))
                add_row("infer", "torch", "float32", "window", times, first_s, per_frame, "s_per_output_frame",
                        {"max_abs_diff_vs_jax": diff})
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    # -------------------------------------------------------------------------------- report
    for part in ("train", "infer"):
        recs = records.get(part, {})
        for row in rows:
            if row["part"] != part:
                continue
            ref_rec = recs.get(f"torch_float32_{row['measure']}")
            row["speedup_vs_torch"] = (ref_rec["median_s"] / row["median_s"]) if ref_rec else "n/a"
    print(f"Zooming Slow-Mo ({args.config}): nf={mcfg.nf} groups={mcfg.groups} blocks={mcfg.front_blocks}+"
          f"{mcfg.back_blocks} params={n_params:,} unroll={mcfg.unroll} | train: trainer.step_fn, batch {batch_size}, "
          f"4 x {lr_size}^2 LR -> 7 x {4 * lr_size}^2 | infer: Restorer.video, 4 x {args.infer_size[0]}x"
          f"{args.infer_size[1]} LR window -> 7 HR frames")
    print_table(rows, ["part", "impl", "compute", "measure", "median_s", "min_s", "clips_per_s", "s_per_output_frame",
                       "speedup_vs_torch", "first_call_s"])
    agreement = {}
    fl = records.get("train", {})
    if "jax_float32_step" in fl and "torch_float32_step" in fl:
        a, r = fl["jax_float32_step"]["first_loss"], fl["torch_float32_step"]["first_loss"]
        agreement["first_loss_rel_diff"] = abs(a - r) / abs(r)
        print(f"first-step loss on the same weights and batch: jax f32 {a:.9g} vs torch {r:.9g} "
              f"(rel diff {agreement['first_loss_rel_diff']:.1e})")
    inf = records.get("infer", {}).get("torch_float32_window")
    if inf is not None:
        agreement["infer_max_abs_diff"] = inf["max_abs_diff_vs_jax"]
        print(f"inference window, same weights: max |jax - torch| = {inf['max_abs_diff_vs_jax']:.2e}")
    payload = {
        "benchmark": "zsm",
        "description": "Zooming Slow-Mo: the engine's jitted training step (trainer.step_fn, state donated; "
                       "Charbonnier + Adam from the config) and Restorer.video on one 4-frame window; "
                       "vs the PyTorch re-statement (eager, same weights, same loss, torch.optim.Adam); "
                       "speedup_vs_torch = torch median / this median",
        "command": command,
        "machine": machine_info(),
        "config": dict(config_spec=args.config, overrides=overrides, nf=mcfg.nf, groups=mcfg.groups,
                       front_blocks=mcfg.front_blocks, back_blocks=mcfg.back_blocks, params=n_params,
                       unroll=mcfg.unroll, batch=batch_size, lr_size=lr_size, infer_lr_size=list(args.infer_size),
                       dtypes=args.dtypes, loss=dict(eps=eps, reduction=reduction),
                       optim=dict(lr_at_step_0=float(trainer.optimizers["G"].schedule(0)), b1=float(config.optim.b1),
                                  b2=float(config.optim.b2), eps=float(config.optim.eps),
                                  schedule=str(config.optim.schedule)),
                       warmup=args.warmup, repeats=args.repeats, quick=args.quick, device=device,
                       torch_device=torch_device, parts=sorted(args.parts), jax_state_init_s=init_s,
                       timed=dict(train="trainer.step_fn(state, batch)", infer="Restorer.video(frames)")),
        "results": records,
        "agreement": agreement,
        "rows": rows,
    }
    path = write_results(args.name or f"zsm_{device}", payload, path=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
