"""CFMD-GAN networks (``restore_jax.methods.cfmd.model``) against the PyTorch re-statement ``restore_jax/methods/cfmd/torch_ref.py``.

Tiny configurations (generator widths 8/16/32 with 2 ContAda blocks per stage, a 3-level
discriminator) on non-square 32 x 24 inputs. NNX weights, and the spectral-norm ``u`` vectors, are
transplanted into the NCHW PyTorch models (torchvision's ``deform_conv2d``, separate ``Conv_off`` /
``Conv_msk`` convs, ``nn.ConvTranspose2d``, ``torch.nn.utils.spectral_norm``). The real init would
hide mistakes (zero offset/mask convs; orthogonal D kernels make every ``u`` a fixed point of the power
iteration), so every weight is re-drawn with NumPy: activations are O(1), deformable offsets are ~1-4
px (checked: fractional and out-of-image samples), and spectral norms are far from 1.

Checked, float32 within 1e-4 (per unit of the output's peak magnitude when above 1):

- the generator's three outputs for several ``u`` per batch, the paper-literal 2-D mapping network in
  PyTorch included, and for a size that is not a multiple of 4 (edge padding and crop back);
- the discriminator's three heads and the updated ``u`` vectors over two training-mode calls, then in
  evaluation mode (no update; PyTorch's stored ``v`` synchronised to the JAX convention);

and in float64 (a float32 gradient of a piecewise-linear network is ill-conditioned at ReLU kinks and
integer sampling positions), ``jax.grad`` against torch autograd for every parameter, the input images
and ``u`` (generator) of a random projection of all outputs, within 2e-6 of each tensor's peak (a few
steps of the JAX models stay float32 by design: see ``GRAD_TOL``). A last test breaks the transplant in
typical ways (unflipped transposed-conv kernel, swapped offset (dy, dx), H/W-transposed kernel, two
blocks of a stage swapped, spectral-norm ``u`` vectors not copied) and checks that each one is detected
at these tolerances.

Compilations: generator forward at two shapes, generator float64 gradient, discriminator forward in
training and evaluation mode, discriminator float64 gradient.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from restore_jax.methods.cfmd.model import (
    CFMDDiscriminator,
    CFMDDiscriminatorConfig,
    CFMDGenerator,
    CFMDGeneratorConfig,
    count_params,
)
from restore_jax.nn.spectral_norm import SpectralState
from restore_jax.methods.cfmd.torch_ref import (
    CFMDDiscriminatorTorch,
    CFMDGeneratorTorch,
    ContAda,
    discriminator_links,
    generator_links,
    spectral_modules,
    sync_spectral_v,
    transplant_from_nnx,
)
from support.params import nnx_param_names

# attention_reduction 2 (paper: 16): at these widths r = 16 leaves a single hidden CACA unit, often dead
G_CFG = CFMDGeneratorConfig(widths=(8, 16, 32), blocks_per_stage=2, mapping_width=16, control_features=8,
                            attention_reduction=2)
D_CFG = CFMDDiscriminatorConfig(base_features=8, channel_multipliers=(1, 2, 4))
H, W = 32, 24
U_VALUES = np.array([0.0, 0.25, 0.625, 1.0], np.float32)  # exact in float32 (the model casts u to f32)
ATOL = 1e-4  # float32, per unit of max(1, peak |reference|)
# float64 gradients: max |g_jax - g_torch| / max |g_torch| per tensor. Not ~1e-14, because a few steps of
# the JAX models stay float32 by design even for float64 inputs: the CACA global pooling
# (ChannelAttention accumulates its mean in float32), the spectral-norm iteration and the normalised kernel
# (float32, cast back), and u (cast to float32 before the mapping MLP). Measured: generator <= 1.6e-7,
# discriminator <= 4.4e-7; with those three promoted to float64 both agree to ~1e-14 (u: 3e-8). A transplant
# or wiring mistake gives errors of order 1.
GRAD_TOL = 2e-6
torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _random_params(abstract, seed: int):
    """Kernels ~ N(0, g^2/fan_in) (g = sqrt(2) in the LeakyReLU mapping MLP, 4 in the offset/mask convs),
    biases ~ N(0, 0.1^2) (N(0, 0.5^2) in the offset/mask convs, N(0.5, 0.1^2) in the CACA squeeze layers),
    drawn with NumPy (no eager JAX init)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        names = nnx_param_names(path)
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        offsets = "conv_offset_mask" in names
        if names[-1] == "kernel":
            stacked = 1 if "blocks" in names else 0  # nnx.vmap stacks a stage's blocks on axis 0
            fan_in = int(np.prod(leaf.shape[stacked:-1]))
            gain = 4.0 if offsets else (np.sqrt(2.0) if "mapping" in names else 1.0)
            return jnp.asarray(noise * gain / np.sqrt(fan_in))
        assert names[-1] == "bias", names
        if "squeeze" in names:  # keep the few CACA hidden ReLUs alive (a dead one has no gradient to compare)
            return jnp.asarray(0.1 * noise + 0.5)
        return jnp.asarray(noise * (0.5 if offsets else 0.1))

    return jax.tree_util.tree_map_with_path(draw, abstract)


def _random_units(abstract, seed: int):
    rng = np.random.default_rng(seed)

    def draw(leaf):
        v = rng.standard_normal(leaf.shape).astype(np.float32)
        return jnp.asarray(v / np.linalg.norm(v))

    return jax.tree.map(draw, abstract)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy()


def _close(got: np.ndarray, want: np.ndarray, label: str) -> None:
    assert got.shape == want.shape, (label, got.shape, want.shape)
    atol = ATOL * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=label)


def _max_err(got: np.ndarray, want: np.ndarray) -> float:
    """Max abs difference in units of the tolerance used by :func:`_close`."""
    return float(np.abs(got - want).max()) / (ATOL * max(1.0, float(np.abs(want).max())))


def _u_by_name(d_nnx) -> dict[str, np.ndarray]:
    """``{torch module name: u}`` of the NNX discriminator (torch names from the transplant links)."""
    flat = {nnx_param_names(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(d_nnx, SpectralState))}
    return {t[: -len(".weight_u")]: flat[n] for t, n, _, _ in discriminator_links(D_CFG) if t.endswith("weight_u")}


def _torch_u(d_torch) -> dict[str, np.ndarray]:
    return {name: m.weight_u.detach().numpy().copy() for name, m in d_torch.named_modules() if hasattr(m, "weight_u")}


# ----------------------------------------------------------------------------------------------
# fixtures: models with transplanted weights, JAX outputs (compiled once per shape)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generators():
    graphdef, abstract, rest = nnx.split(nnx.eval_shape(lambda: CFMDGenerator(G_CFG, rngs=nnx.Rngs(0))), nnx.Param, ...)
    assert not jax.tree.leaves(rest), "the generator is expected to hold parameters only"
    model = nnx.merge(graphdef, _random_params(abstract, seed=1))
    ref = CFMDGeneratorTorch.from_config(G_CFG)
    literal = CFMDGeneratorTorch.from_config(G_CFG, literal_mapping=True)
    for r in (ref, literal):
        counts = transplant_from_nnx(r, model)
        assert counts["scalars"] == count_params(model) == sum(p.numel() for p in r.parameters())
        r.eval()
    return model, ref, literal


@pytest.fixture(scope="module")
def generator_outputs(generators):
    """Case ``grid``: 4 images 32x24, items 0/1 the same image; case ``pad``: 2 images 30x22."""
    model, _, _ = generators
    graphdef, params = nnx.split(model, nnx.Param)
    fwd = jax.jit(lambda p, x, u: nnx.merge(graphdef, p)(x, u))
    rng = np.random.default_rng(2)
    grid = rng.random((4, H, W, 3), dtype=np.float32)
    grid[1] = grid[0]
    pad = rng.random((2, 30, 22, 3), dtype=np.float32)
    cases = {"grid": (grid, U_VALUES), "pad": (pad, U_VALUES[1:3])}
    return {k: (x, u, [np.asarray(o) for o in fwd(params, x, u)]) for k, (x, u) in cases.items()}


@pytest.fixture(scope="module")
def discriminators():
    graphdef, abstract, sn = nnx.split(nnx.eval_shape(lambda: CFMDDiscriminator(D_CFG, rngs=nnx.Rngs(0))),
                                       nnx.Param, SpectralState)
    model = nnx.merge(graphdef, _random_params(abstract, seed=3), _random_units(sn, seed=4))
    ref = CFMDDiscriminatorTorch.from_config(D_CFG)
    counts = transplant_from_nnx(ref, model)
    assert counts["scalars"] == count_params(model)
    assert counts["spectral"] == sum(a.size for a in jax.tree.leaves(sn))
    assert len(spectral_modules(ref)) == 3 * 3 * 2 + 3  # 3 convs per down/up block, 3 levels, 3 heads
    return model, ref


def _pair(seed: int, b: int = 2):
    rng = np.random.default_rng(seed)
    blurred = rng.random((b, H, W, 3), dtype=np.float32)
    return blurred, np.clip(blurred + 0.2 * rng.standard_normal((b, H, W, 3)).astype(np.float32), 0, 1)


# ----------------------------------------------------------------------------------------------
# generator
# ----------------------------------------------------------------------------------------------


def _offset_stats(ref: CFMDGeneratorTorch):
    """Forward hooks on every ``Conv_off``: (mean |offset|, share of fractional samples, share pushed out)."""
    stats = []

    def hook(conv, args, off):
        off = off.detach()
        b, _, h, w = off.shape
        off = off.reshape(b, 9, 2, h, w)  # torchvision: (dy, dx) per tap
        tap = torch.arange(9)
        ys = torch.arange(h).view(1, 1, h, 1) - 1 + (tap // 3).view(1, 9, 1, 1) + off[:, :, 0]
        xs = torch.arange(w).view(1, 1, 1, w) - 1 + (tap % 3).view(1, 9, 1, 1) + off[:, :, 1]
        frac = torch.minimum(ys - ys.floor(), ys.ceil() - ys)
        out = (ys < 0) | (ys > h - 1) | (xs < 0) | (xs > w - 1)
        stats.append((off.abs().mean().item(), (frac > 0.05).float().mean().item(), out.float().mean().item()))

    handles = [m.conv_off.register_forward_hook(hook) for m in ref.modules() if isinstance(m, ContAda)]
    return stats, handles


def test_generator_outputs_match_torch_for_several_u(generators, generator_outputs):
    _, ref, literal = generators
    x, u, outs = generator_outputs["grid"]
    assert [o.shape for o in outs] == [(4, H // 4, W // 4, 3), (4, H // 2, W // 2, 3), (4, H, W, 3)]
    stats, handles = _offset_stats(ref)
    try:
        with torch.no_grad():
            want = [_nhwc(t) for t in ref(_nchw(x), torch.from_numpy(u))]
    finally:
        for hd in handles:
            hd.remove()
    # the deformable sampling is exercised in all 12 blocks: ~px offsets, fractional, some outside
    assert len(stats) == 6 * G_CFG.blocks_per_stage
    mean_abs, fractional, outside = (np.mean([s[i] for s in stats]) for i in range(3))
    assert 0.5 < mean_abs < 8.0 and fractional > 0.8 and outside > 0.02, (mean_abs, fractional, outside)

    for scale, (got, exp) in enumerate(zip(outs, want)):
        assert np.std(exp) > 0.05
        _close(got, exp, f"output {scale}")
    # the literal 2-D mapping (1x1 convs on the H x W map, bilinear resize per block) gives the same
    with torch.no_grad():
        for scale, t in enumerate(literal(_nchw(x), torch.from_numpy(u))):
            _close(outs[scale], _nhwc(t), f"literal mapping, output {scale}")
    # same image, different u: every scale changes
    for o in outs:
        assert np.abs(o[0] - o[1]).max() > 1e-2


def test_generator_pads_and_crops_like_torch(generators, generator_outputs):
    _, ref, _ = generators
    x, u, outs = generator_outputs["pad"]
    assert [o.shape for o in outs] == [(2, 8, 6, 3), (2, 15, 11, 3), (2, 30, 22, 3)]
    with torch.no_grad():
        for scale, t in enumerate(ref(_nchw(x), torch.from_numpy(u))):
            _close(outs[scale], _nhwc(t), f"padded input, output {scale}")


def test_generator_gradients_match_torch_float64(generators):
    model, ref32, _ = generators
    graphdef, params = nnx.split(model, nnx.Param)
    rng = np.random.default_rng(5)
    x = rng.random((2, H, W, 3)).astype(np.float64)
    u = U_VALUES[1:3].astype(np.float64)
    shapes = [(2, H // 4, W // 4, 3), (2, H // 2, W // 2, 3), (2, H, W, 3)]
    proj = [rng.standard_normal(s) for s in shapes]

    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)

        def loss(p, x, u):
            outs = nnx.merge(graphdef, p)(x, u)
            return sum(jnp.sum(o * q) for o, q in zip(outs, proj))

        value, (g_p, g_x, g_u) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(p64, x, u)
        flat = {nnx_param_names(k): np.asarray(g) for k, g in jax.tree_util.tree_flatten_with_path(g_p)[0]}
        g_x, g_u = np.asarray(g_x), np.asarray(g_u)
    assert all(g.dtype == np.float64 for g in flat.values())

    ref = copy.deepcopy(ref32).double()
    tx = _nchw(x).requires_grad_(True)
    tu = torch.from_numpy(u).requires_grad_(True)
    t_value = sum((o * _nchw(q)).sum() for o, q in zip(ref(tx, tu), proj))
    t_value.backward()
    np.testing.assert_allclose(float(value), t_value.item(), rtol=GRAD_TOL)

    tparams = dict(ref.named_parameters())
    errors = {}
    for tname, npath, index, convert in generator_links(G_CFG):
        g = flat[npath] if index is None else flat[npath][index]
        g_t = tparams[tname].grad.numpy()
        scale = np.abs(g_t).max()
        assert scale > 0, f"{tname}: zero gradient, the check would be vacuous"
        errors[tname] = np.abs(convert(g) - g_t).max() / scale
    errors["input"] = np.abs(g_x - _nhwc(tx.grad)).max() / np.abs(g_x).max()
    errors["u"] = np.abs(g_u - tu.grad.numpy()).max() / np.abs(g_u).max()
    assert len(errors) == len(tparams) + 2
    bad = [f"{k}: {e:.2e}" for k, e in sorted(errors.items(), key=lambda kv: -kv[1]) if e > GRAD_TOL]
    assert not bad, f"{len(bad)}/{len(errors)} gradients differ (max-normalised):\n" + "\n".join(bad[:15])


# ----------------------------------------------------------------------------------------------
# discriminator
# ----------------------------------------------------------------------------------------------


def test_discriminator_heads_and_power_iteration_match_torch(discriminators):
    model, ref = discriminators
    d = nnx.clone(model)
    t = copy.deepcopy(ref)
    call = nnx.jit(lambda m, b, s: m(b, s))
    blurred, image = _pair(6)
    u0 = _u_by_name(d)
    assert all(np.allclose(u0[k], v) for k, v in _torch_u(t).items())

    t.train()
    for step in range(2):  # training mode: one power iteration per call, u written back on both sides
        out = call(d, jnp.asarray(blurred), jnp.asarray(image))
        with torch.no_grad():
            want = t(_nchw(blurred), _nchw(image))
        assert out.global_logits.shape == (2,) and out.pixel_logits.shape == out.u_map.shape == (2, H, W)
        for name in ("global_logits", "pixel_logits", "u_map"):
            got, exp = np.asarray(getattr(out, name)), getattr(want, name).numpy()
            assert np.std(exp) > 1e-3, name
            _close(got, exp, f"training call {step}: {name}")
        u_jax, u_t = _u_by_name(d), _torch_u(t)
        assert set(u_jax) == set(u_t)
        for k in u_t:
            np.testing.assert_allclose(u_jax[k], u_t[k], rtol=1e-5, atol=1e-6, err_msg=f"u of {k} after call {step}")
    moved = [k for k in u0 if u0[k].size > 1 and np.abs(u_jax[k] - u0[k]).max() > 1e-3]
    assert len(moved) == sum(v.size > 1 for v in u0.values())  # the iteration is not at a fixed point

    # evaluation mode: no update; sigma = ||W^T u|| (PyTorch's stored v synchronised to that convention)
    d.eval()
    t.eval()
    sync_spectral_v(t)
    out = call(d, jnp.asarray(image), jnp.asarray(blurred))
    with torch.no_grad():
        want = t(_nchw(image), _nchw(blurred))
    for name in ("global_logits", "pixel_logits", "u_map"):
        _close(np.asarray(getattr(out, name)), getattr(want, name).numpy(), f"evaluation: {name}")
    for k, v in _torch_u(t).items():
        np.testing.assert_array_equal(_u_by_name(d)[k], u_jax[k])
        np.testing.assert_array_equal(v, u_t[k])


def test_discriminator_gradients_match_torch_float64(discriminators):
    model, ref32 = discriminators
    graphdef, params, sn = nnx.split(model, nnx.Param, SpectralState)
    blurred, image = (a.astype(np.float64) for a in _pair(7))
    rng = np.random.default_rng(8)
    proj = [rng.standard_normal(2), rng.standard_normal((2, H, W)), rng.standard_normal((2, H, W))]

    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)

        def loss(p, sn, b, s):
            # copy=True: sn is not differentiated, and the training-mode call writes u (a Variable reused
            # from outside this trace would refuse the write)
            out = nnx.merge(graphdef, p, sn, copy=True)(b, s)  # training mode: one power iteration
            return sum(jnp.sum(o * q) for o, q in zip(out, proj))

        value, (g_p, g_b, g_s) = jax.jit(jax.value_and_grad(loss, argnums=(0, 2, 3)))(p64, sn, blurred, image)
        flat = {nnx_param_names(k): np.asarray(g) for k, g in jax.tree_util.tree_flatten_with_path(g_p)[0]}
        g_b, g_s = np.asarray(g_b), np.asarray(g_s)

    ref = copy.deepcopy(ref32).double().train()
    tb, ts = _nchw(blurred).requires_grad_(True), _nchw(image).requires_grad_(True)
    out = ref(tb, ts)
    t_value = sum((o * torch.from_numpy(q)).sum() for o, q in zip(out, proj))
    t_value.backward()
    np.testing.assert_allclose(float(value), t_value.item(), rtol=GRAD_TOL)

    tparams = dict(ref.named_parameters())
    errors = {}
    for tname, npath, _, convert in discriminator_links(D_CFG):
        if tname.endswith("weight_u"):
            continue
        g_t = tparams[tname].grad.numpy()
        assert np.abs(g_t).max() > 0, tname
        errors[tname] = np.abs(convert(flat[npath]) - g_t).max() / np.abs(g_t).max()
    errors["blurred"] = np.abs(g_b - _nhwc(tb.grad)).max() / np.abs(g_b).max()
    errors["image"] = np.abs(g_s - _nhwc(ts.grad)).max() / np.abs(g_s).max()
    assert len(errors) == len(tparams) + 2
    bad = [f"{k}: {e:.2e}" for k, e in sorted(errors.items(), key=lambda kv: -kv[1]) if e > GRAD_TOL]
    assert not bad, f"{len(bad)}/{len(errors)} gradients differ (max-normalised):\n" + "\n".join(bad[:15])


# ----------------------------------------------------------------------------------------------
# the comparison has teeth: typical transplant mistakes are detected
# ----------------------------------------------------------------------------------------------


def _generator_error(ref, x, u, outs) -> float:
    with torch.no_grad():
        return max(_max_err(o, _nhwc(t)) for o, t in zip(outs, ref(_nchw(x), torch.from_numpy(u))))


@torch.no_grad()
def test_transplant_mistakes_are_detected(generators, generator_outputs, discriminators):
    _, ref, _ = generators
    x, u, outs = generator_outputs["grid"]
    assert _generator_error(ref, x, u, outs) <= 1.0  # the correct transplant passes

    def unflipped_conv_transpose(m):
        m.up1.weight.copy_(m.up1.weight.flip(2, 3))

    def swapped_offset_dy_dx(m):
        w = m.eb2[1].conv_off.weight
        w.copy_(w.reshape(9, 2, *w.shape[1:]).flip(1).reshape(w.shape))

    def kernel_h_w_transposed(m):
        m.feat_in.weight.copy_(m.feat_in.weight.transpose(2, 3).clone())

    def stage_blocks_swapped(m):
        a, b = m.db1[0].state_dict(), m.db1[1].state_dict()
        m.db1[0].load_state_dict(b)
        m.db1[1].load_state_dict(a)

    for mistake in (unflipped_conv_transpose, swapped_offset_dy_dx, kernel_h_w_transposed, stage_blocks_swapped):
        broken = copy.deepcopy(ref)
        mistake(broken)
        assert _generator_error(broken, x, u, outs) > 100.0, mistake.__name__

    # discriminator: u vectors left at torch's own random draw are caught in training mode
    model, dref = discriminators
    blurred, image = _pair(9)
    out = nnx.jit(lambda m, b, s: m(b, s))(nnx.clone(model), jnp.asarray(blurred), jnp.asarray(image))
    for fresh_u in (False, True):
        t = copy.deepcopy(dref).train()
        if fresh_u:
            for m in spectral_modules(t):
                m.weight_u.copy_(torch.nn.functional.normalize(torch.randn_like(m.weight_u), dim=0))
        want = t(_nchw(blurred), _nchw(image))
        err = max(_max_err(np.asarray(getattr(out, k)), getattr(want, k).numpy()) for k in want._fields)
        assert (err > 100.0) if fresh_u else (err <= 1.0), (fresh_u, err)
