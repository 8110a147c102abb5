"""Benchmark ``restore_jax.ops.deform_conv2d`` (jit) against ``torchvision.ops.deform_conv2d``.

Times the forward pass and forward+backward (gradient of the output sum w.r.t. x, offset, mask,
kernel and bias) at ZSM-like sizes (default: B=8, 64 -> 64 channels, 64x64, 3x3 kernel, 8 deformable
groups, offsets ~ N(0, 2), sigmoid mask) on the same device type for both libraries, checks that the
two agree, prints a table and writes ``bench/results/ops_<device>.json``.

    python -m bench.ops_bench                      # CPU, default sizes
    python -m bench.ops_bench --batch 2 --repeats 5
    python -m bench.ops_bench --device gpu         # JAX GPU vs torch CUDA
    python -m bench.ops_bench --quick              # tiny sizes, smoke test
"""

from __future__ import annotations

import argparse
import os


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="cpu",
                   help="cpu: both on CPU; gpu: JAX GPU vs torch CUDA; auto: gpu when both are available")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="input height = width")
    p.add_argument("--channels", type=int, default=64, help="input = output channels")
    p.add_argument("--groups", type=int, default=8, help="deformable groups")
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--offset-std", type=float, default=2.0)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny sizes (B=1, 16 channels, 16x16, 2 groups)")
    p.add_argument("--name", default=None, help="results file name (default ops_<device>)")
    p.add_argument("--out", default=None, help="write the JSON to this path instead (e.g. /tmp/ops.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.size, args.channels, args.groups = 1, 16, 16, 2
        args.warmup, args.repeats = 1, 3
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np

    from bench.common import machine_info, median, print_table, time_fn, write_results
    from restore_jax.ops.deform_conv import deform_conv2d

    try:
        import torch
        import torchvision
    except ImportError:
        torch = torchvision = None

    jax_gpu = jax.default_backend() == "gpu"
    torch_gpu = torch is not None and torch.cuda.is_available()
    device = args.device
    if device == "auto":
        device = "gpu" if (jax_gpu and torch_gpu) else "cpu"
    if device == "gpu" and not jax_gpu:
        raise SystemExit("--device gpu: JAX has no GPU backend here (jax.devices() = %s)" % jax.devices())
    jax_device = jax.devices("gpu" if device == "gpu" else "cpu")[0]
    torch_device = "cuda" if device == "gpu" else "cpu"
    if device == "gpu" and not torch_gpu:
        print("note: torch has no CUDA here; timing JAX only")
        torch = None

    b, s, c, g, kk = args.batch, args.size, args.channels, args.groups, args.kernel
    taps = kk * kk
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, s, s, c), dtype=np.float32)
    offset = (args.offset_std * rng.standard_normal((b, s, s, 2 * g * taps))).astype(np.float32)
    mask = (1 / (1 + np.exp(-rng.standard_normal((b, s, s, g * taps))))).astype(np.float32)
    kernel = (rng.standard_normal((kk, kk, c, c)) / np.sqrt(taps * c)).astype(np.float32)
    bias = (0.1 * rng.standard_normal((c,))).astype(np.float32)
    pad = kk // 2
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    config = dict(batch=b, size=s, channels_in=c, channels_out=c, kernel=kk, deformable_groups=g,
                  stride=1, padding=pad, dilation=1, offset_std=args.offset_std, dtype=args.dtype,
                  warmup=args.warmup, repeats=args.repeats, device=device)
    print("config:", config)

    jargs = [jax.device_put(jnp.asarray(a, dtype), jax_device) for a in (x, offset, mask, kernel, bias)]

    def jax_loss(*a):
        return deform_conv2d(*a, padding=pad, deformable_groups=g).astype(jnp.float32).sum()

    jax_fwd = jax.jit(lambda *a: deform_conv2d(*a, padding=pad, deformable_groups=g))
    jax_bwd = jax.jit(jax.grad(jax_loss, argnums=(0, 1, 2, 3, 4)))
    conv_fwd = jax.jit(lambda xx, kw: jax.lax.conv_general_dilated(
        xx, kw, (1, 1), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")))

    rows, results = [], {}
    t_jf = time_fn(lambda: jax_fwd(*jargs), warmup=args.warmup, repeats=args.repeats)
    t_jb = time_fn(lambda: jax_bwd(*jargs), warmup=args.warmup, repeats=args.repeats)
    t_cf = time_fn(lambda: conv_fwd(jargs[0], jargs[3]), warmup=args.warmup, repeats=args.repeats)
    results["jax"] = {"forward_s": median(t_jf), "forward_backward_s": median(t_jb),
                      "forward_times_s": t_jf, "forward_backward_times_s": t_jb}
    results["jax_plain_conv_forward_s"] = median(t_cf)
    rows.append({"impl": f"jax deform_conv2d ({jax_device.platform})", "fwd_ms": 1e3 * median(t_jf),
                 "fwd+bwd_ms": 1e3 * median(t_jb)})

    if torch is not None:
        tdtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
        sync = torch.cuda.synchronize if torch_device == "cuda" else (lambda: None)

        def to_t(a, perm):
            return torch.tensor(np.ascontiguousarray(a.transpose(perm)), dtype=tdtype, device=torch_device)

        tx, toff, tmask = (to_t(a, (0, 3, 1, 2)) for a in (x, offset, mask))
        tw = to_t(kernel, (3, 2, 0, 1))
        tb = torch.tensor(bias, dtype=tdtype, device=torch_device)
        targs = [tx, toff, tmask, tw, tb]

        def torch_fwd(*a):
            return torchvision.ops.deform_conv2d(a[0], a[1], a[3], a[4], padding=pad, mask=a[2])

        def run_fwd():
            with torch.no_grad():
                out = torch_fwd(*targs)
            sync()
            return out

        leaves = [t.clone().requires_grad_(True) for t in targs]

        def run_bwd():
            for t in leaves:
                t.grad = None
            torch_fwd(*leaves).float().sum().backward()
            sync()
            return [t.grad for t in leaves]

        try:
            t_tf = time_fn(run_fwd, warmup=args.warmup, repeats=args.repeats)
            t_tb = time_fn(run_bwd, warmup=args.warmup, repeats=args.repeats)
        except (RuntimeError, NotImplementedError) as exc:
            print(f"torchvision failed for dtype {args.dtype} on {torch_device}: {exc}")
            results["torchvision_error"] = str(exc)
        else:
            results["torchvision"] = {"forward_s": median(t_tf), "forward_backward_s": median(t_tb),
                                      "forward_times_s": t_tf, "forward_backward_times_s": t_tb,
                                      "torch_threads": torch.get_num_threads()}
            results["ratio_jax_over_torch"] = {"forward": median(t_jf) / median(t_tf),
                                               "forward_backward": median(t_jb) / median(t_tb)}
            rows.append({"impl": f"torchvision deform_conv2d ({torch_device})", "fwd_ms": 1e3 * median(t_tf),
                         "fwd+bwd_ms": 1e3 * median(t_tb)})
            rows.append({"impl": "ratio jax / torchvision", "fwd_ms": results["ratio_jax_over_torch"]["forward"],
                         "fwd+bwd_ms": results["ratio_jax_over_torch"]["forward_backward"]})
            # Agreement on the same inputs (as float32 on the host).
            j_out = np.asarray(jax_fwd(*jargs), np.float32)
            t_out = run_fwd().float().permute(0, 2, 3, 1).cpu().numpy()
            j_grads = [np.asarray(gr, np.float32) for gr in jax_bwd(*jargs)]
            t_grads = run_bwd()
            perms = [(0, 2, 3, 1)] * 3 + [(2, 3, 1, 0), (0,)]
            agree = {"forward_max_abs_diff": float(np.abs(j_out - t_out).max()),
                     "forward_max_abs": float(np.abs(t_out).max())}
            for name, jg, tg, perm in zip(("x", "offset", "mask", "kernel", "bias"), j_grads, t_grads, perms):
                tg = tg.float().permute(*perm).cpu().numpy()
                agree[f"grad_{name}_max_abs_diff"] = float(np.abs(jg - tg).max())
                agree[f"grad_{name}_max_abs"] = float(np.abs(tg).max())
            results["agreement"] = agree
            print("agreement:", {k: f"{v:.3g}" for k, v in agree.items()})

    rows.append({"impl": f"jax plain conv, no deformation ({jax_device.platform})",
                 "fwd_ms": 1e3 * median(t_cf), "fwd+bwd_ms": ""})
    print_table(rows, ["impl", "fwd_ms", "fwd+bwd_ms"])
    name = args.name or f"ops_{device}"
    path = write_results(name, {"benchmark": "deform_conv2d", "machine": machine_info(), "config": config,
                                "results": results}, path=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
