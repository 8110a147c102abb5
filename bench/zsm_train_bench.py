"""Benchmark one Zooming Slow-Mo training step (Charbonnier loss + Adam): JAX vs the PyTorch re-statement.

The JAX step is ``restore_jax.models.zsm.ZoomingSlowMo`` under ``jax.jit`` with the parameters and
optimiser state donated; ``--dtypes float32,bfloat16`` also times bf16 compute with float32 master
parameters (the parameters and frames are cast to bf16 inside the step, the loss is taken in f32).
The reference is ``tests/torch_refs/zsm_torch.py`` (torchvision's deform_conv2d) with
``torch.optim.Adam``, on CUDA when available, else on CPU, in float32. Both start from the same
weights (transplanted from the NNX model) and the same batch; the first-step losses are recorded as a
cheap cross-check. Loss: ``sum(sqrt(d^2 + 1e-6))`` over all pixels (the official reduction), Adam
lr 4e-4, betas (0.9, 0.99).

    python bench/zsm_train_bench.py                # paper model (nf 64, 40 back blocks), B=2, 32x32 LR, 4 frames
    python bench/zsm_train_bench.py --quick        # tiny config for a CPU smoke run
    python bench/zsm_train_bench.py --back-blocks 10 --batch 4 --dtypes float32

Writes ``bench/results/zsm_train_<device>.json`` (device: cpu or gpu) unless ``--name`` is given.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="auto: JAX's default backend (torch on CUDA when JAX is on GPU and CUDA is there)")
    p.add_argument("--nf", type=int, default=64)
    p.add_argument("--groups", type=int, default=8, help="deformable groups")
    p.add_argument("--front-blocks", type=int, default=5)
    p.add_argument("--back-blocks", type=int, default=40)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--height", type=int, default=32, help="LR patch height")
    p.add_argument("--width", type=int, default=32, help="LR patch width")
    p.add_argument("--frames", type=int, default=4, help="LR input frames N (2N-1 HR frames out)")
    p.add_argument("--dtypes", default="float32,bfloat16", help="JAX compute dtypes, comma separated")
    p.add_argument("--no-torch", action="store_true", help="time JAX only")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true",
                   help="tiny config: nf 16, 2 groups, 1+2 blocks, B=1, 16x16 LR, 3 frames, 3 repeats")
    p.add_argument("--name", default=None, help="results file name (default zsm_train_<device>)")
    args = p.parse_args(argv)
    if args.quick:
        args.nf, args.groups, args.front_blocks, args.back_blocks = 16, 2, 1, 2
        args.batch, args.height, args.width, args.frames = 1, 16, 16, 3
        args.warmup, args.repeats = 1, 3
    if args.frames < 2:
        p.error(f"--frames must be >= 2 (ZSM interpolates between adjacent frames), got {args.frames}")
    if args.nf % args.groups:
        p.error(f"--nf ({args.nf}) must be divisible by --groups ({args.groups})")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from bench.common import machine_info, median, print_table, time_fn, write_results
    from restore_jax.models.zsm import ZoomingSlowMo, ZSMConfig, count_params

    try:
        import torch

        from torch_refs.zsm_torch import ZSMTorch, transplant_from_nnx
    except ImportError as exc:  # torch is a dev dependency
        if not args.no_torch:
            raise SystemExit(f"PyTorch reference unavailable ({exc}); install the dev extras or pass --no-torch")
        torch = None

    device = args.device
    if device == "auto":
        device = "gpu" if jax.default_backend() == "gpu" else "cpu"
    if device == "gpu" and jax.default_backend() != "gpu":
        raise SystemExit(f"--device gpu: JAX has no GPU backend here (jax.devices() = {jax.devices()})")
    torch_device = None
    if torch is not None and not args.no_torch:
        torch_device = "cuda" if (device == "gpu" and torch.cuda.is_available()) else "cpu"
        if device == "gpu" and torch_device == "cpu":
            print("note: torch has no CUDA here; the torch reference runs on CPU (ratios are cross-device)")

    cfg = ZSMConfig(nf=args.nf, groups=args.groups, front_blocks=args.front_blocks, back_blocks=args.back_blocks)
    b, n, h, w = args.batch, args.frames, args.height, args.width
    t_out = 2 * n - 1
    rng = np.random.default_rng(0)
    lr_np = rng.random((b, n, h, w, 3), dtype=np.float32)
    hr_np = rng.random((b, t_out, 4 * h, 4 * w, 3), dtype=np.float32)

    # Parameters initialised in one compiled program (eager init compiles one kernel per shape).
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: ZoomingSlowMo(cfg, rngs=nnx.Rngs(0))))
    t0 = time.perf_counter()
    state = jax.jit(lambda: nnx.state(ZoomingSlowMo(cfg, rngs=nnx.Rngs(0))))()
    init_s = time.perf_counter() - t0
    model = nnx.merge(graphdef, state)
    n_params = count_params(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    ref = None
    if torch_device is not None:
        ref = ZSMTorch.from_config(cfg)
        transplant_from_nnx(ref, model)  # before any donation invalidates the JAX buffers
        ref = ref.to(torch_device)
    del model

    tx = optax.adam(4e-4, b1=0.9, b2=0.99)
    lr_j, hr_j = jnp.asarray(lr_np), jnp.asarray(hr_np)

    def make_step(compute_dtype):
        def loss_fn(p, frames, target):
            if compute_dtype != jnp.float32:
                p = jax.tree.map(lambda a: a.astype(compute_dtype), p)
                frames = frames.astype(compute_dtype)
            out = nnx.merge(graphdef, p, rest)(frames).astype(jnp.float32)
            d = out - target
            return jnp.sum(jnp.sqrt(d * d + 1e-6))

        def step(p, opt_state, frames, target):
            loss, grads = jax.value_and_grad(loss_fn)(p, frames, target)
            updates, opt_state = tx.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        return jax.jit(step, donate_argnums=(0, 1))

    rows, records = [], {}
    for dtype_name in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        if dtype_name not in ("float32", "bfloat16"):
            raise SystemExit(f"--dtypes: unknown dtype {dtype_name!r} (use float32 and/or bfloat16)")
        step = make_step(jnp.dtype(dtype_name))
        carry = {"p": jax.tree.map(jnp.copy, params), "o": None}
        carry["o"] = tx.init(carry["p"])
        t0 = time.perf_counter()
        carry["p"], carry["o"], loss0 = step(carry["p"], carry["o"], lr_j, hr_j)
        first_loss = float(loss0)
        compile_s = time.perf_counter() - t0

        def run_jax():
            carry["p"], carry["o"], loss = step(carry["p"], carry["o"], lr_j, hr_j)
            return loss, carry["p"]

        times = time_fn(run_jax, warmup=args.warmup, repeats=args.repeats)
        key = f"jax_{dtype_name}"
        records[key] = dict(times_s=times, median_s=median(times), first_call_s=compile_s, first_loss=first_loss)
        rows.append(dict(impl="jax (jit, donated)", compute=dtype_name, device=str(jax.devices()[0]),
                         median_s=median(times), min_s=min(times), first_call_s=compile_s, first_loss=first_loss))
        del carry

    if ref is not None:
        opt = torch.optim.Adam(ref.parameters(), lr=4e-4, betas=(0.9, 0.99))
        lr_t = torch.from_numpy(lr_np).permute(0, 1, 4, 2, 3).contiguous().to(torch_device)
        hr_t = torch.from_numpy(hr_np).permute(0, 1, 4, 2, 3).contiguous().to(torch_device)

        def run_torch():
            opt.zero_grad(set_to_none=True)
            d = ref(lr_t) - hr_t
            loss = torch.sqrt(d * d + 1e-6).sum()
            loss.backward()
            opt.step()
            if torch_device == "cuda":
                torch.cuda.synchronize()
            return loss.detach()

        t0 = time.perf_counter()
        first_loss = float(run_torch())
        first_s = time.perf_counter() - t0
        times = time_fn(run_torch, warmup=args.warmup, repeats=args.repeats)
        records["torch_float32"] = dict(times_s=times, median_s=median(times), first_call_s=first_s,
                                        first_loss=first_loss)
        rows.append(dict(impl="torch (eager, Adam)", compute="float32", device=torch_device, median_s=median(times),
                         min_s=min(times), first_call_s=first_s, first_loss=first_loss))

    ref_time = records.get("torch_float32", {}).get("median_s")
    for row in rows:
        row["speedup_vs_torch"] = (ref_time / row["median_s"]) if ref_time else "n/a"
        row["steps_per_s"] = 1.0 / row["median_s"]
    print(f"ZSM training step: nf={cfg.nf} groups={cfg.groups} blocks={cfg.front_blocks}+{cfg.back_blocks} "
          f"params={n_params:,} | batch {b}, {n} LR frames {h}x{w} -> {t_out} HR frames {4 * h}x{4 * w}")
    print_table(rows, ["impl", "compute", "device", "median_s", "min_s", "steps_per_s", "speedup_vs_torch",
                       "first_call_s", "first_loss"])
    if "torch_float32" in records and "jax_float32" in records:
        a, r = records["jax_float32"]["first_loss"], records["torch_float32"]["first_loss"]
        print(f"first-step loss, same weights and batch: jax f32 {a:.9g} vs torch {r:.9g} "
              f"(rel diff {abs(a - r) / abs(r):.1e})")

    payload = {
        "benchmark": "zsm_train_step",
        "description": "one Charbonnier(sum, eps 1e-6) + Adam(4e-4, 0.9, 0.99) step of Zooming Slow-Mo; "
                       "speedup_vs_torch = torch float32 median / this median",
        "machine": machine_info(),
        "config": dict(nf=cfg.nf, groups=cfg.groups, front_blocks=cfg.front_blocks, back_blocks=cfg.back_blocks,
                       params=n_params, batch=b, frames=n, lr_height=h, lr_width=w, hr_frames=t_out,
                       warmup=args.warmup, repeats=args.repeats, quick=args.quick, device=device,
                       torch_device=torch_device, jax_param_init_s=init_s),
        "results": records,
        "rows": rows,
    }
    path = write_results(args.name or f"zsm_train_{device}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
