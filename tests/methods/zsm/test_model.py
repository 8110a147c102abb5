"""Zooming Slow-Mo (``restore_jax.methods.zsm.model``) against an independent PyTorch re-statement.

The oracle, ``restore_jax/methods/zsm/torch_ref.py``, is written from the architecture spec (NCHW,
``torchvision.ops.deform_conv2d``, ``F.pixel_shuffle``, ``F.interpolate``); the NNX weights are
transplanted into it. The real init (zero offset/mask convs, 0.1-scaled residual blocks) would hide
misaligned offsets and make the outputs tiny, so every weight is re-drawn so that activations are
O(1) and the deformable offsets are non-trivial: the test checks that samples land at fractional
positions and some outside the image before comparing outputs, GFI outputs and gradients.

Three XLA compilations (a float32 forward per input shape, one float64 gradient): JAX CPU
compilation dominates the run time.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from restore_jax.methods.zsm.model import ZoomingSlowMo, ZSMConfig
from restore_jax.nn.params import count_params
from restore_jax.methods.zsm.torch_ref import DCNSep, ZSMTorch, parameter_links, transplant_from_nnx
from support.params import nnx_param_names

PAPER_PARAMS = 11_102_771  # seed_001 §A.3 item 6 / peer_implementations §1.1 (computed, = 11.10 M)
TINY = ZSMConfig(nf=16, groups=2, front_blocks=1, back_blocks=2, gfi=True, gfi_blocks=2)
# (B, N, h, w): a multiple-of-4 size with the gradient check, and one that exercises the edge padding.
SHAPES = {"b2_n3_12x8": (2, 3, 12, 8), "b1_n4_10x9": (1, 4, 10, 9)}
# float32: relative 1e-4, absolute 1e-5 per unit of the output's peak magnitude (outputs reach ~8 here;
# a float32 forward through ~60 layers differs by up to ~2e-5 between XLA:CPU and PyTorch at that scale).
RTOL, ATOL = 1e-4, 1e-5
GRAD_SHAPE, GRAD_DRAWS = "b2_n3_12x8", 3
GRAD_TOL = 1e-8  # float64: max |g_jax - g_torch| / max |g_torch|, per parameter tensor


# ----------------------------------------------------------------------------------------------
# parameter count: paper configuration, nothing allocated on the JAX side
# ----------------------------------------------------------------------------------------------


def _nnx_count(module) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param))))


def test_paper_parameter_count_jax_and_torch():
    abstract = nnx.eval_shape(lambda: ZoomingSlowMo(ZSMConfig(), rngs=nnx.Rngs(0)))
    assert count_params(abstract) == PAPER_PARAMS

    with torch.device("meta"):
        ref = ZSMTorch()
    assert sum(p.numel() for p in ref.parameters()) == PAPER_PARAMS
    # Component break-down published with the count (peer_implementations §1.1), on both sides.
    assert sum(p.numel() for p in DCNSep(64, 8).to("meta").parameters()) == 161_560
    assert sum(p.numel() for p in ref.dfi_align.parameters()) == 2_224_016 == _nnx_count(abstract.interp_pcd)
    assert sum(p.numel() for p in ref.rnn.h_align.parameters()) == 2_379_984 == _nnx_count(abstract.lstm_cell.pcd_h)
    lstm = sum(p.numel() for m in (ref.rnn, ref.bi_merge) for p in m.parameters())
    assert lstm == 5_063_392 == _nnx_count(abstract.lstm_cell) + _nnx_count(abstract.lstm_fusion)
    assert sum(p.numel() for p in ref.back.parameters()) == 2_954_240 == _nnx_count(abstract.recon_trunk)


# ----------------------------------------------------------------------------------------------
# tiny configuration: outputs, GFI outputs and gradients
# ----------------------------------------------------------------------------------------------


def _random_params(abstract_params: nnx.State, seed: int) -> nnx.State:
    """Kernels ~ N(0, 2/fan_in) (He), biases ~ N(0, 0.1^2); offset/mask convs N(0, 9/fan_in) / N(0, 0.5^2).

    Drawn with NumPy into the abstract (``nnx.eval_shape``) parameter tree: eager JAX init of the
    ~250 arrays would compile one small program per shape, which is slow on CPU.
    """
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        names = nnx_param_names(path)
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        offset_conv = "conv_offset_mask" in names
        if names[-1] == "kernel":  # [..., kh, kw, cin, cout], possibly stacked on a leading block axis
            fan_in = leaf.shape[-4] * leaf.shape[-3] * leaf.shape[-2]
            return jnp.asarray(noise * (3.0 if offset_conv else np.sqrt(2.0)) / np.sqrt(fan_in))
        assert names[-1] == "bias", names
        return jnp.asarray(noise * (0.5 if offset_conv else 0.1))

    return jax.tree_util.tree_map_with_path(draw, abstract_params)


@pytest.fixture(scope="module")
def models():
    abstract = nnx.eval_shape(lambda: ZoomingSlowMo(TINY, rngs=nnx.Rngs(0)))
    graphdef, abstract_params, rest = nnx.split(abstract, nnx.Param, ...)
    assert not jax.tree.leaves(rest), "ZoomingSlowMo is expected to hold parameters only"
    model = nnx.merge(graphdef, _random_params(abstract_params, seed=1), rest)
    ref = ZSMTorch.from_config(TINY)
    counts = transplant_from_nnx(ref, model)
    assert counts["scalars"] == count_params(model)
    return model, ref


def _frames(shape, seed) -> np.ndarray:
    b, n, h, w = shape
    return np.random.default_rng(seed).random((b, n, h, w, 3), dtype=np.float32)


def _projections(model_out_shapes: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in model_out_shapes.items()}


def _out_shapes(shape) -> dict[str, tuple]:
    b, n, h, w = shape
    return {"hr": (b, 2 * n - 1, 4 * h, 4 * w, 3), "gfi_first": (b, n - 1, h, w, 3), "gfi_second": (b, n - 2, h, w, 3)}


def _to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 1, 3, 4, 2).numpy()


def _loss(graphdef, rest, p, frames, proj):
    """Random projection of every output (HR frames and both GFI heads), and the outputs."""
    hr, aux = nnx.merge(graphdef, p, rest).forward_with_aux(frames)
    outs = {"hr": hr, **aux}
    return sum(jnp.sum(outs[k] * proj[k]) for k in proj), outs


@pytest.fixture(scope="module")
def jax_outputs(models):
    """float32 JAX outputs for each input shape (one compilation per shape)."""
    model, _ = models
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    fwd = jax.jit(lambda p, frames: _loss(graphdef, rest, p, frames, {})[1])
    results = {}
    for i, (name, shape) in enumerate(SHAPES.items()):
        frames = _frames(shape, seed=10 + i)
        results[name] = dict(frames=frames, outs=jax.tree.map(np.asarray, fwd(params, frames)))
    return results


@pytest.fixture(scope="module")
def jax_grads_f64(models):
    """float64 ``jax.grad`` of the random projection for GRAD_DRAWS input draws (one compilation).

    float64 because a float32 gradient of a piecewise-linear network is ill-conditioned at the kinks
    (LReLU/ReLU at 0, bilinear sampling at integer positions): a pre-activation within float32
    rounding of a kink may fall on different sides in two correct float32 implementations, and with a
    random-projection loss one such flip moves a parameter gradient by ~1e-2 of its peak.
    """
    model, _ = models
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    shape = SHAPES[GRAD_SHAPE]
    proj = {k: v.astype(np.float64) for k, v in _projections(_out_shapes(shape), seed=20).items()}
    draws = []
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        grad_fn = jax.jit(jax.value_and_grad(lambda p, frames: _loss(graphdef, rest, p, frames, proj)[0]))
        for seed in range(GRAD_DRAWS):
            frames = _frames(shape, seed=30 + seed).astype(np.float64)
            value, grads = grad_fn(p64, frames)
            flat = {nnx_param_names(k): np.asarray(g) for k, g in jax.tree_util.tree_flatten_with_path(grads)[0]}
            assert all(g.dtype == np.float64 for g in flat.values())
            draws.append(dict(frames=frames, value=float(value), grads=flat))
    return dict(proj=proj, draws=draws)


def _offset_hooks(ref: ZSMTorch):
    """Per DCN call: mean |offset|, share of taps the offsets push out of the image, share of
    sampling rows at a fractional position (>= 0.05 px from the pixel grid)."""
    stats = []

    def hook(dcn, args, out):
        x = args[0]
        o1, o2, _ = torch.chunk(dcn.offset_mask(args[1]), 3, dim=1)
        off = torch.cat([o1, o2], 1).detach()
        b, _, h, w = off.shape
        off = off.reshape(b, -1, 9, 2, h, w)  # (dy, dx) interleaved per group and tap
        tap = torch.arange(9)
        base_y = torch.arange(h).view(1, 1, 1, h, 1) - 1 + (tap // 3).view(1, 1, 9, 1, 1)
        base_x = torch.arange(w).view(1, 1, 1, 1, w) - 1 + (tap % 3).view(1, 1, 9, 1, 1)
        ys, xs = base_y + off[:, :, :, 0], base_x + off[:, :, :, 1]
        hh, ww = x.shape[-2:]

        def outside(y, x_):
            return (y < 0) | (y > hh - 1) | (x_ < 0) | (x_ > ww - 1)

        pushed_out = outside(ys, xs) & ~outside(base_y, base_x)
        frac = torch.minimum(ys - ys.floor(), ys.ceil() - ys)
        stats.append((off.abs().mean().item(), pushed_out.float().mean().item(), (frac > 0.05).float().mean().item()))

    handles = [m.register_forward_hook(hook) for m in ref.modules() if isinstance(m, DCNSep)]
    return stats, handles


@pytest.mark.parametrize("name", list(SHAPES))
def test_tiny_outputs_match_torch_reference(models, jax_outputs, name):
    _, ref = models
    res = jax_outputs[name]
    stats, handles = _offset_hooks(ref)
    try:
        with torch.no_grad():
            hr, aux = ref.forward_with_aux(torch.from_numpy(res["frames"]).permute(0, 1, 4, 2, 3))
    finally:
        for h in handles:
            h.remove()
    # The deformable sampling must be exercised: ~1 px offsets, fractional positions, some outside.
    n = SHAPES[name][1]
    assert len(stats) == 6 * (n - 1) + 2 * 12 * (2 * n - 1) + 6 * (n - 2)  # DFI, LSTM fwd+bwd, GFI 2nd order
    mean_abs, pushed_out, fractional = (np.mean([s[i] for s in stats]) for i in range(3))
    assert 0.5 < mean_abs < 3.0, mean_abs
    assert pushed_out > 0.02, pushed_out
    assert fractional > 0.8, fractional

    want = {"hr": _to_nhwc(hr), **{k: _to_nhwc(v) for k, v in aux.items()}}
    got = res["outs"]
    assert set(got) == set(want) == {"hr", "gfi_first", "gfi_second"}
    for key, shape in _out_shapes(SHAPES[name]).items():
        assert got[key].shape == want[key].shape == shape, key
        assert np.std(want[key]) > 0.05, f"{key}: reference output is nearly constant"
        atol = ATOL * max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=atol, err_msg=key)


def test_tiny_gradients_match_torch_autograd(models, jax_grads_f64):
    """d(random projection of all outputs)/d(every parameter), float64: jax.grad vs torch autograd."""
    _, ref32 = models
    ref = copy.deepcopy(ref32).double()
    torch_params = dict(ref.named_parameters())
    proj = {k: torch.from_numpy(p).permute(0, 1, 4, 2, 3) for k, p in jax_grads_f64["proj"].items()}
    for draw in jax_grads_f64["draws"]:
        ref.zero_grad()
        hr, aux = ref.forward_with_aux(torch.from_numpy(draw["frames"]).permute(0, 1, 4, 2, 3))
        outs = {"hr": hr, **aux}
        loss = sum((outs[k] * proj[k]).sum() for k in proj)
        loss.backward()
        np.testing.assert_allclose(draw["value"], loss.item(), rtol=1e-10)

        errors = {}
        for tname, npath, index, convert in parameter_links(TINY):
            g_jax = draw["grads"][npath]
            g_jax = convert(g_jax if index is None else g_jax[index])
            g_torch = torch_params[tname].grad.numpy()
            scale = np.abs(g_torch).max()
            assert scale > 0, f"{tname}: zero gradient, the check would be vacuous"
            label = f"{tname} <- {'.'.join(npath)}" + ("" if index is None else f"[{index}]")
            errors[label] = np.abs(g_jax - g_torch).max() / scale
        assert len(errors) == len(torch_params)
        bad = [f"{k}: {e:.2e}" for k, e in sorted(errors.items(), key=lambda kv: -kv[1]) if e > GRAD_TOL]
        assert not bad, f"{len(bad)}/{len(errors)} parameter gradients differ (max-normalised):\n" + "\n".join(bad[:15])
