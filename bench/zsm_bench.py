"""Benchmark Zooming Slow-Mo: training throughput and video inference, JAX vs the PyTorch re-statement.

Two parts, both with the same weights on both sides (transplanted from the NNX model into
``restore_jax/methods/zsm/torch_ref.py``, torchvision's ``deform_conv2d``) and the same inputs:

- ``train``: one batch of ``--batch`` clips, 4 LR frames of ``--lr-size`` squared (7 HR frames
  out): the forward pass with the loss (``forward_s``), and one training step = forward + backward +
  Adam update (``step_s``); reported as clips per second. Loss: Charbonnier summed over all pixels
  (``sqrt(d^2 + 1e-6)``, the official reduction), Adam lr 4e-4, betas (0.9, 0.99). JAX: ``jax.jit``
  with parameters and optimiser state donated; ``--dtypes float32,bfloat16`` also times bf16 compute
  with float32 master parameters. Torch: eager, ``torch.optim.Adam``, float32.
- ``infer``: one window of 4 LR frames at ``--infer-size`` (default Vid4: 144x180 LR -> 576x720
  HR), no gradient; ``s_per_output_frame`` = window time / 6, since consecutive windows share one
  frame and each contributes 6 new output frames (the last one 7).

    python bench/zsm_bench.py --quick                      # tiny model, seconds (smoke test)
    python bench/zsm_bench.py --batch 2 --repeats 2        # paper model (11.1 M), CPU-sized batch
    python bench/zsm_bench.py --device gpu                 # paper model, batch 16, on a GPU

Timings are medians over ``--repeats`` runs after ``--warmup`` untimed runs (the first includes the
compilation, reported separately as ``first_call_s``). Writes ``bench/results/zsm_<device>.json``
(or ``--name``) with the exact command line.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH (e.g. 144x180), got {text!r}") from None
    return h, w


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="auto: JAX's default backend (torch on CUDA when JAX is on GPU and CUDA is there)")
    p.add_argument("--parts", default="train,infer", help="comma-separated: train, infer")
    p.add_argument("--nf", type=int, default=64)
    p.add_argument("--groups", type=int, default=8, help="deformable groups")
    p.add_argument("--front-blocks", type=int, default=5)
    p.add_argument("--back-blocks", type=int, default=40)
    p.add_argument("--batch", type=int, default=16, help="training clips per step")
    p.add_argument("--lr-size", type=int, default=32, help="training LR patch side")
    p.add_argument("--infer-size", type=_hw, default=(144, 180), help="inference LR frame HxW (Vid4: 144x180)")
    p.add_argument("--dtypes", default="float32", help="JAX compute dtypes, comma separated (float32,bfloat16)")
    p.add_argument("--no-unroll", action="store_true", help="keep the residual-trunk / ConvLSTM scans rolled")
    p.add_argument("--no-torch", action="store_true", help="time JAX only")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true",
                   help="tiny model: nf 16, 2 groups, 1+2 blocks, batch 2, 16x16 LR, inference 32x48, 2 repeats")
    p.add_argument("--name", default=None, help="results file name (default zsm_<device>)")
    args = p.parse_args(argv)
    if args.quick:
        args.nf, args.groups, args.front_blocks, args.back_blocks = 16, 2, 1, 2
        args.batch, args.lr_size, args.infer_size = 2, 16, (32, 48)
        args.warmup, args.repeats = 1, 2
    if args.nf % args.groups:
        p.error(f"--nf ({args.nf}) must be divisible by --groups ({args.groups})")
    parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not parts or parts - {"train", "infer"}:
        p.error(f"--parts must name train and/or infer, got {args.parts!r}")
    args.parts = parts
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    command = "python bench/zsm_bench.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from bench.common import machine_info, median, print_table, time_fn, write_results
    from restore_jax.methods.zsm.model import ZoomingSlowMo, ZSMConfig, count_params

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

    cfg = ZSMConfig(nf=args.nf, groups=args.groups, front_blocks=args.front_blocks, back_blocks=args.back_blocks,
                    unroll=not args.no_unroll)
    # Parameters initialised in one compiled program (eager init compiles one kernel per shape).
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: ZoomingSlowMo(cfg, rngs=nnx.Rngs(0))))
    t0 = time.perf_counter()
    state = jax.jit(lambda: nnx.state(ZoomingSlowMo(cfg, rngs=nnx.Rngs(0))))()
    init_s = time.perf_counter() - t0
    model = nnx.merge(graphdef, state)
    n_params = count_params(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    ref = None
    if torch is not None:
        ref = ZSMTorch.from_config(cfg)
        transplant_from_nnx(ref, model)  # before any donation invalidates the JAX buffers
        ref = ref.to(torch_device)
    del model

    def sync_torch():
        if torch_device == "cuda":
            torch.cuda.synchronize()

    def to_torch(a):
        return torch.from_numpy(a).permute(0, 1, 4, 2, 3).contiguous().to(torch_device)

    rng = np.random.default_rng(0)
    rows, records = [], {}
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in ("float32", "bfloat16"):
            raise SystemExit(f"--dtypes: unknown dtype {d!r} (use float32 and/or bfloat16)")

    def add_row(part, impl, compute, what, times, first_s, per, unit, extra=None):
        med = median(times)
        rec = dict(times_s=times, median_s=med, first_call_s=first_s, **({} if extra is None else extra))
        rec[unit] = per(med)
        records.setdefault(part, {})[f"{impl}_{compute}_{what}"] = rec
        rows.append(dict(part=part, impl=impl, compute=compute, measure=what, median_s=med, min_s=min(times),
                         **{unit: per(med)}, first_call_s=first_s, **(extra or {})))

    # -------------------------------------------------------------------------------- train
    if "train" in args.parts:
        b, s = args.batch, args.lr_size
        lr_np = rng.random((b, 4, s, s, 3), dtype=np.float32)
        hr_np = rng.random((b, 7, 4 * s, 4 * s, 3), dtype=np.float32)
        lr_j, hr_j = jnp.asarray(lr_np), jnp.asarray(hr_np)
        tx = optax.adam(4e-4, b1=0.9, b2=0.99)
        clips = lambda med: b / med  # noqa: E731

        for dname in dtypes:
            dtype = jnp.dtype(dname)

            def loss_fn(p, frames, target, dtype=dtype):
                if dtype != jnp.float32:
                    p = jax.tree.map(lambda a: a.astype(dtype), p)
                    frames = frames.astype(dtype)
                d = nnx.merge(graphdef, p, rest)(frames).astype(jnp.float32) - target
                return jnp.sum(jnp.sqrt(d * d + 1e-6))

            fwd = jax.jit(loss_fn)
            t0 = time.perf_counter()
            first_loss = float(fwd(params, lr_j, hr_j))
            first_s = time.perf_counter() - t0
            times = time_fn(lambda: fwd(params, lr_j, hr_j), warmup=args.warmup, repeats=args.repeats)
            add_row("train", "jax", dname, "forward", times, first_s, clips, "clips_per_s", {"first_loss": first_loss})

            def step(p, opt_state, frames, target):
                loss, grads = jax.value_and_grad(loss_fn)(p, frames, target)
                updates, opt_state = tx.update(grads, opt_state, p)
                return optax.apply_updates(p, updates), opt_state, loss

            step = jax.jit(step, donate_argnums=(0, 1))
            carry = {"p": jax.tree.map(jnp.copy, params)}
            carry["o"] = tx.init(carry["p"])
            t0 = time.perf_counter()
            carry["p"], carry["o"], loss0 = step(carry["p"], carry["o"], lr_j, hr_j)
            jax.block_until_ready(loss0)
            first_s = time.perf_counter() - t0

            def run_step():
                carry["p"], carry["o"], loss = step(carry["p"], carry["o"], lr_j, hr_j)
                return loss, carry["p"]

            times = time_fn(run_step, warmup=args.warmup, repeats=args.repeats)
            add_row("train", "jax", dname, "step", times, first_s, clips, "clips_per_s")
            del carry

        if ref is not None:
            lr_t, hr_t = to_torch(lr_np), to_torch(hr_np)

            def torch_forward():
                with torch.no_grad():
                    d = ref(lr_t) - hr_t
                    loss = torch.sqrt(d * d + 1e-6).sum()
                sync_torch()
                return loss

            t0 = time.perf_counter()
            first_loss = float(torch_forward())
            first_s = time.perf_counter() - t0
            times = time_fn(torch_forward, warmup=args.warmup, repeats=args.repeats)
            add_row("train", "torch", "float32", "forward", times, first_s, clips, "clips_per_s", {"first_loss": first_loss})
            opt = torch.optim.Adam(ref.parameters(), lr=4e-4, betas=(0.9, 0.99))

            def torch_step():
                opt.zero_grad(set_to_none=True)
                d = ref(lr_t) - hr_t
                loss = torch.sqrt(d * d + 1e-6).sum()
                loss.backward()
                opt.step()
                sync_torch()
                return loss.detach()

            t0 = time.perf_counter()
            torch_step()
            first_s = time.perf_counter() - t0
            times = time_fn(torch_step, warmup=args.warmup, repeats=args.repeats)
            add_row("train", "torch", "float32", "step", times, first_s, clips, "clips_per_s")
            # The step updated the torch weights: re-transplant for the inference part.
            ref = ZSMTorch.from_config(cfg)
            transplant_from_nnx(ref, nnx.merge(graphdef, params, rest))
            ref = ref.to(torch_device)

    # -------------------------------------------------------------------------------- infer
    if "infer" in args.parts:
        h, w = args.infer_size
        x_np = rng.random((1, 4, h, w, 3), dtype=np.float32)
        per_frame = lambda med: med / 6.0  # noqa: E731
        for dname in dtypes:
            dtype = jnp.dtype(dname)

            def apply(p, frames, dtype=dtype):
                if dtype != jnp.float32:
                    p = jax.tree.map(lambda a: a.astype(dtype), p)
                    frames = frames.astype(dtype)
                return nnx.merge(graphdef, p, rest)(frames).astype(jnp.float32)

            f = jax.jit(apply)
            x_j = jnp.asarray(x_np)
            t0 = time.perf_counter()
            y = f(params, x_j)
            jax.block_until_ready(y)
            first_s = time.perf_counter() - t0
            times = time_fn(lambda: f(params, x_j), warmup=args.warmup, repeats=args.repeats)
            add_row("infer", "jax", dname, "window", times, first_s, per_frame, "s_per_output_frame",
                    {"output": list(y.shape)})
        if ref is not None:
            x_t = to_torch(x_np)

            def torch_apply():
                with torch.no_grad():
                    out = ref(x_t)
                sync_torch()
                return out

            t0 = time.perf_counter()
            torch_apply()
            first_s = time.perf_counter() - t0
            times = time_fn(torch_apply, warmup=args.warmup, repeats=args.repeats)
            add_row("infer", "torch", "float32", "window", times, first_s, per_frame, "s_per_output_frame")

    # -------------------------------------------------------------------------------- report
    for part in ("train", "infer"):
        recs = records.get(part, {})
        for row in rows:
            if row["part"] != part:
                continue
            ref_rec = recs.get(f"torch_float32_{row['measure']}")
            row["speedup_vs_torch"] = (ref_rec["median_s"] / row["median_s"]) if ref_rec else "n/a"
    print(f"Zooming Slow-Mo: nf={cfg.nf} groups={cfg.groups} blocks={cfg.front_blocks}+{cfg.back_blocks} "
          f"params={n_params:,} unroll={cfg.unroll} | train: batch {args.batch}, 4 x {args.lr_size}^2 LR -> "
          f"7 x {4 * args.lr_size}^2 | infer: 4 x {args.infer_size[0]}x{args.infer_size[1]} LR window -> 7 HR frames")
    print_table(rows, ["part", "impl", "compute", "measure", "median_s", "min_s", "clips_per_s", "s_per_output_frame",
                       "speedup_vs_torch", "first_call_s"])
    fl = records.get("train", {})
    if "jax_float32_forward" in fl and "torch_float32_forward" in fl:
        a, r = fl["jax_float32_forward"]["first_loss"], fl["torch_float32_forward"]["first_loss"]
        print(f"loss on the same weights and batch: jax f32 {a:.9g} vs torch {r:.9g} (rel diff {abs(a - r) / abs(r):.1e})")
    payload = {
        "benchmark": "zsm",
        "description": "Zooming Slow-Mo training step (Charbonnier sum + Adam 4e-4, betas 0.9/0.99) and one "
                       "4-frame inference window; JAX (jit) vs the PyTorch re-statement with the same weights; "
                       "speedup_vs_torch = torch median / this median",
        "command": command,
        "machine": machine_info(),
        "config": dict(nf=cfg.nf, groups=cfg.groups, front_blocks=cfg.front_blocks, back_blocks=cfg.back_blocks,
                       params=n_params, unroll=cfg.unroll, batch=args.batch, lr_size=args.lr_size,
                       infer_lr_size=list(args.infer_size), dtypes=dtypes, warmup=args.warmup,
                       repeats=args.repeats, quick=args.quick, device=device, torch_device=torch_device,
                       parts=sorted(args.parts), jax_param_init_s=init_s),
        "results": records,
        "rows": rows,
    }
    path = write_results(args.name or f"zsm_{device}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
