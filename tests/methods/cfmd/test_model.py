"""CFMD-GAN networks (``restore_jax.methods.cfmd.model``) against independent references.

References:

- a PyTorch re-statement of the generator written in this file from spec ``seed_002_003`` §A3 (NCHW,
  ``torchvision.ops.deform_conv2d`` for CADC with *separate* offset and mask convs, the mapping network
  in the paper's literal form: 1x1 convs on a constant ``H x W`` map, bilinear resizing of ``u_f``,
  ``F.interpolate`` nearest pyramids, ``nn.ConvTranspose2d(k=4, s=2, p=1)``); NNX weights are
  transplanted into it;
- ``jax.lax.conv_general_dilated`` for the zero-init CADC and the 2-D mapping formulation;
- ``np.linalg.svd`` and ``torch.nn.utils.spectral_norm`` for spectral normalisation;
- parameter counts computed here from the layer shapes.

Weights are drawn with NumPy into ``nnx.eval_shape`` trees (no eager JAX init), and the zero-init
offset/mask convs are replaced by random ones so that deformable samples land at fractional and
out-of-image positions. The tiny generator is compiled once.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn
from torchvision.ops import deform_conv2d as tv_deform_conv2d

from restore_jax.methods.cfmd.model import (
    AFF,
    FAM,
    SCM,
    CFMDDiscriminator,
    CFMDDiscriminatorConfig,
    CFMDGenerator,
    CFMDGeneratorConfig,
    ContAdaBlock,
    ContAdaStage,
    MappingNetwork,
    _conv_transpose_x2,
    count_params,
    downsample_nearest,
    generator_breakdown,
)
from restore_jax.nn.attention import ChannelAttention
from restore_jax.nn.spectral_norm import SpectralNorm, SpectralState
from support.params import nnx_param_names

TINY = CFMDGeneratorConfig(widths=(8, 16, 32), blocks_per_stage=2, mapping_width=16, control_features=8)
ATOL = 1e-4
torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------
# helpers: random parameters, layout conversion
# ----------------------------------------------------------------------------------------------


def _random_params(abstract_params, seed: int):
    """Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2); offset/mask convs ~4x larger (offsets ~1 px)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        names = nnx_param_names(path)
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        big = "conv_offset_mask" in names
        if names[-1] == "kernel":  # [kh, kw, in, out] or [in, out], stacked on a leading axis in a stage
            fan_in = int(np.prod(leaf.shape[(1 if "blocks" in names else 0) : -1]))
            # He gain in the 8-layer LeakyReLU mapping MLP keeps its dependence on u from fading out
            gain = 4.0 if big else (np.sqrt(2.0) if "mapping" in names else 1.0)
            return jnp.asarray(noise * gain / np.sqrt(fan_in))
        return jnp.asarray(noise * (0.5 if big else 0.1))

    return jax.tree_util.tree_map_with_path(draw, abstract_params)


def _build(ctor, seed: int):
    """A module from ``ctor(rngs)`` with NumPy-drawn parameters (see ``_random_params``)."""
    abstract = nnx.eval_shape(lambda: ctor(nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    assert not jax.tree.leaves(rest)
    return nnx.merge(graphdef, _random_params(params, seed))


def _is_var(v) -> bool:
    return isinstance(v, nnx.Variable)


def _init_jit(ctor):
    """``ctor(nnx.Rngs(0))`` with its real initialisers, compiled as one program (eager init is slow)."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: ctor(nnx.Rngs(0))))
    return nnx.merge(graphdef, jax.jit(lambda: nnx.split(ctor(nnx.Rngs(0)))[1])())


def _np(x) -> np.ndarray:
    return np.asarray(x[...] if isinstance(x, nnx.Variable) else x)


def _t(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x, np.float32))  # a writable copy


def _nchw(x) -> torch.Tensor:
    return _t(np.asarray(x).transpose(0, 3, 1, 2))


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy()


class _Porter:
    """Copies NNX parameters into PyTorch modules, counting the scalars copied."""

    def __init__(self):
        self.scalars = 0

    def _set(self, p: torch.nn.Parameter, value: np.ndarray):
        assert tuple(p.shape) == value.shape, (tuple(p.shape), value.shape)
        with torch.no_grad():
            p.copy_(_t(value))
        self.scalars += value.size

    def conv(self, tconv: nn.Conv2d, jconv):  # HWIO -> OIHW
        self._set(tconv.weight, _np(jconv.kernel).transpose(3, 2, 0, 1))
        self._set(tconv.bias, _np(jconv.bias))

    def linear_as_conv1x1(self, tconv: nn.Conv2d, jlin):  # [I, O] -> [O, I, 1, 1]
        self._set(tconv.weight, _np(jlin.kernel).T[:, :, None, None])
        self._set(tconv.bias, _np(jlin.bias))

    def conv_transpose(self, tconv: nn.ConvTranspose2d, jconv):
        # nnx applies its kernel unflipped to the stride-dilated input; PyTorch's [I, O, kh, kw] weight
        # is the spatially flipped one.
        self._set(tconv.weight, _np(jconv.kernel)[::-1, ::-1].transpose(2, 3, 0, 1))
        self._set(tconv.bias, _np(jconv.bias))

    def contada(self, tb: "TContAda", jb: ContAdaBlock):
        self.conv(tb.conv_in, jb.conv_in)
        self.linear_as_conv1x1(tb.u_proj, jb.control_proj)
        self.conv(tb.fuse, jb.fuse)
        if tb.deformable:
            k = _np(jb.cadc.conv_offset_mask.kernel).transpose(3, 2, 0, 1)  # [27, C, 3, 3]
            bias = _np(jb.cadc.conv_offset_mask.bias)
            self._set(tb.conv_off.weight, k[:18])
            self._set(tb.conv_off.bias, bias[:18])
            self._set(tb.conv_msk.weight, k[18:])
            self._set(tb.conv_msk.bias, bias[18:])
            self._set(tb.dc_weight, _np(jb.cadc.kernel).transpose(3, 2, 0, 1))
            self._set(tb.dc_bias, _np(jb.cadc.bias))
        else:
            self.conv(tb.conv_dc, jb.conv_dc)
        if tb.attention:
            self.linear_as_conv1x1(tb.ca1, jb.caca.squeeze)
            self.linear_as_conv1x1(tb.ca2, jb.caca.excite)

    def scm(self, ts: "TSCM", js: SCM):
        for i, jc in zip((0, 2, 4, 6), (js.conv1, js.conv2, js.conv3, js.conv4)):
            self.conv(ts.main[i], jc)
        self.conv(ts.fuse, js.fuse)

    def aff(self, ta: nn.Sequential, ja: AFF):
        self.conv(ta[0], ja.conv1)
        self.conv(ta[2], ja.conv2)

    def generator(self, tg: "TGenerator", jg: CFMDGenerator):
        for tl, jl in zip(tg.mapping.convs, jg.mapping.layers):
            self.linear_as_conv1x1(tl, jl)
        self.scm(tg.scm2, jg.scm2)
        self.scm(tg.scm4, jg.scm4)
        for name in ("feat_in", "down2", "down4", "out4", "fuse2", "out2", "fuse1", "out1"):
            self.conv(getattr(tg, name), getattr(jg, name))
        self.conv(tg.fam2, jg.fam2.merge)
        self.conv(tg.fam4, jg.fam4.merge)
        self.aff(tg.aff1, jg.aff1)
        self.aff(tg.aff2, jg.aff2)
        self.conv_transpose(tg.up2, jg.up2)
        self.conv_transpose(tg.up1, jg.up1)
        for name in ("eb1", "eb2", "eb3", "db1", "db2", "db3"):
            stage = getattr(jg, name)
            for i, tb in enumerate(getattr(tg, name)):
                self.contada(tb, stage.block(i))


# ----------------------------------------------------------------------------------------------
# PyTorch re-statement (NCHW), written from spec §A3.1-A3.2
# ----------------------------------------------------------------------------------------------


class TMapping(nn.Module):
    """G_M literally: u broadcast to u_2D [B, 1, H, W], then 8 x (1x1 conv + LeakyReLU(0.2))."""

    def __init__(self, layers: int, width: int, out: int, slope: float):
        super().__init__()
        dims = [1] + [width] * (layers - 1) + [out]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(dims[:-1], dims[1:]))
        self.slope = slope

    def forward(self, u2d):
        h = u2d
        for c in self.convs:
            h = F.leaky_relu(c(h), self.slope)
        return h


class TContAda(nn.Module):
    """ContAda: F_o = LReLU(conv3(F_in)); u_n = conv1(bilinear(u_f)); F_u = conv1(cat[F_o, u_n]);
    F_dc = DCNv2(F_u; offsets = Conv_off(F_u), mask = sigmoid(Conv_msk(F_u))); a = CA(F_u); F_in + F_dc * a."""

    def __init__(self, c: int, cf: int, deformable=True, attention=True, reduction=16, slope=0.2):
        super().__init__()
        self.deformable, self.attention, self.slope = deformable, attention, slope
        self.conv_in = nn.Conv2d(c, c, 3, padding=1)
        self.u_proj = nn.Conv2d(cf, c, 1)
        self.fuse = nn.Conv2d(2 * c, c, 1)
        if deformable:
            self.conv_off = nn.Conv2d(c, 18, 3, padding=1)
            self.conv_msk = nn.Conv2d(c, 9, 3, padding=1)
            self.dc_weight = nn.Parameter(torch.empty(c, c, 3, 3))
            self.dc_bias = nn.Parameter(torch.empty(c))
        else:
            self.conv_dc = nn.Conv2d(c, c, 3, padding=1)
        if attention:
            hidden = max(1, c // reduction)
            self.ca1 = nn.Conv2d(c, hidden, 1)
            self.ca2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x, u_f):
        f_o = F.leaky_relu(self.conv_in(x), self.slope)
        u_n = self.u_proj(F.interpolate(u_f, size=x.shape[-2:], mode="bilinear", align_corners=False))
        f_u = self.fuse(torch.cat([f_o, u_n], 1))
        if self.deformable:
            offset = self.conv_off(f_u)
            mask = torch.sigmoid(self.conv_msk(f_u))
            f_dc = tv_deform_conv2d(f_u, offset, self.dc_weight, self.dc_bias, padding=1, mask=mask)
        else:
            f_dc = self.conv_dc(f_u)
        if self.attention:
            a = torch.sigmoid(self.ca2(F.relu(self.ca1(f_u.mean(dim=(2, 3), keepdim=True)))))
            f_dc = f_dc * a
        return x + f_dc


class TSCM(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, c // 4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c // 4, c // 2, 1), nn.ReLU(),
            nn.Conv2d(c // 2, c // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c // 2, c - 3, 1), nn.ReLU(),
        )
        self.fuse = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.fuse(torch.cat([x, self.main(x)], 1))


def _taff(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1))


def _tfam(x1, x2, merge: nn.Conv2d):
    return x1 + merge(x1 * x2)


class TGenerator(nn.Module):
    def __init__(self, cfg: CFMDGeneratorConfig):
        super().__init__()
        c1, c2, c4 = cfg.widths
        cf = cfg.control_features
        self.mapping = TMapping(cfg.mapping_layers, cfg.mapping_width, cf, cfg.lrelu_slope)

        def stage(c):
            return nn.ModuleList(
                TContAda(c, cf, cfg.use_deformable, cfg.use_channel_attention, cfg.attention_reduction, cfg.lrelu_slope)
                for _ in range(cfg.blocks_per_stage)
            )

        self.scm2, self.scm4 = TSCM(c2), TSCM(c4)
        self.feat_in = nn.Conv2d(3, c1, 3, padding=1)
        self.eb1 = stage(c1)
        self.down2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.fam2 = nn.Conv2d(c2, c2, 3, padding=1)
        self.eb2 = stage(c2)
        self.down4 = nn.Conv2d(c2, c4, 3, stride=2, padding=1)
        self.fam4 = nn.Conv2d(c4, c4, 3, padding=1)
        self.eb3 = stage(c4)
        self.aff1, self.aff2 = _taff(c1 + c2 + c4, c1), _taff(c1 + c2 + c4, c2)
        self.db1 = stage(c4)
        self.out4 = nn.Conv2d(c4, 3, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(c4, c2, 4, stride=2, padding=1)
        self.fuse2 = nn.Conv2d(2 * c2, c2, 1)
        self.db2 = stage(c2)
        self.out2 = nn.Conv2d(c2, 3, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)
        self.fuse1 = nn.Conv2d(2 * c1, c1, 1)
        self.db3 = stage(c1)
        self.out1 = nn.Conv2d(c1, 3, 3, padding=1)

    def forward(self, blurred, u):
        b, _, h, w = blurred.shape
        x = F.pad(blurred, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        u_f = self.mapping(u.view(b, 1, 1, 1).expand(b, 1, x.shape[2], x.shape[3]))

        def run(blocks, z):
            for blk in blocks:
                z = blk(z, u_f)
            return z

        x2 = F.interpolate(x, scale_factor=0.5)
        x4 = F.interpolate(x2, scale_factor=0.5)
        z2, z4 = self.scm2(x2), self.scm4(x4)
        res1 = run(self.eb1, F.relu(self.feat_in(x)))
        z = _tfam(F.relu(self.down2(res1)), z2, self.fam2)
        res2 = run(self.eb2, z)
        z = _tfam(F.relu(self.down4(res2)), z4, self.fam4)
        z = run(self.eb3, z)
        z42 = F.interpolate(z, scale_factor=2)
        a2 = self.aff2(torch.cat([F.interpolate(res1, scale_factor=0.5), res2, z42], 1))
        a1 = self.aff1(torch.cat([res1, F.interpolate(res2, scale_factor=2), F.interpolate(z42, scale_factor=2)], 1))
        z = run(self.db1, z)
        o4 = self.out4(z) + x4
        z = F.relu(self.up2(z))
        z = run(self.db2, F.relu(self.fuse2(torch.cat([z, a2], 1))))
        o2 = self.out2(z) + x2
        z = F.relu(self.up1(z))
        z = run(self.db3, F.relu(self.fuse1(torch.cat([z, a1], 1))))
        o1 = self.out1(z) + x
        return [o4[..., : -(-h // 4), : -(-w // 4)], o2[..., : -(-h // 2), : -(-w // 2)], o1[..., :h, :w]]


# ----------------------------------------------------------------------------------------------
# parameter counts (shape-only on the JAX side)
# ----------------------------------------------------------------------------------------------


def _conv_p(cin, cout, k):
    return k * k * cin * cout + cout


def _block_p(c, cf, deform=True, ca=True, r=16):
    n = _conv_p(c, c, 3) + (cf * c + c) + _conv_p(2 * c, c, 1) + _conv_p(c, c, 3)
    if deform:
        n += _conv_p(c, 27, 3)  # Conv_off (2K = 18) + Conv_msk (K = 9)
    if ca:
        hid = max(1, c // r)
        n += c * hid + hid + hid * c + c
    return n


def _scm_p(c):
    return _conv_p(3, c // 4, 3) + _conv_p(c // 4, c // 2, 1) + _conv_p(c // 2, c // 2, 3) + _conv_p(c // 2, c - 3, 1) \
        + _conv_p(c, c, 1)


def _generator_p(cfg: CFMDGeneratorConfig) -> tuple[int, int, int]:
    """(mapping, blocks, rest) from the layer list of spec §A3.1-A3.2."""
    c1, c2, c4 = cfg.widths
    dims = [1] + [cfg.mapping_width] * (cfg.mapping_layers - 1) + [cfg.control_features]
    mapping = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    blocks = 2 * cfg.blocks_per_stage * sum(
        _block_p(c, cfg.control_features, cfg.use_deformable, cfg.use_channel_attention, cfg.attention_reduction)
        for c in (c1, c2, c4)
    )
    s = c1 + c2 + c4
    rest = (
        _conv_p(3, c1, 3) + _conv_p(c1, c2, 3) + _conv_p(c2, c4, 3)  # feat_in, two stride-2 convs
        + _scm_p(c2) + _scm_p(c4) + _conv_p(c2, c2, 3) + _conv_p(c4, c4, 3)  # SCMs, FAMs
        + _conv_p(s, c1, 1) + _conv_p(c1, c1, 3) + _conv_p(s, c2, 1) + _conv_p(c2, c2, 3)  # AFF1, AFF2
        + (16 * c4 * c2 + c2) + (16 * c2 * c1 + c1)  # transposed convs 4x4
        + _conv_p(2 * c2, c2, 1) + _conv_p(2 * c1, c1, 1)  # fusion 1x1 convs
        + _conv_p(c4, 3, 3) + _conv_p(c2, 3, 3) + _conv_p(c1, 3, 3)  # output convs
    )
    return mapping, blocks, rest


@functools.lru_cache(maxsize=None)
def _abstract_count(cfg) -> int:
    return count_params(nnx.eval_shape(lambda: CFMDGenerator(cfg, rngs=nnx.Rngs(0))))


def test_paper_parameter_count():
    paper = CFMDGeneratorConfig()
    mapping, blocks, rest = _generator_p(paper)
    assert (mapping, blocks, rest) == (29_248, 8_044_016, 606_851)  # the numbers documented in restore_jax/methods/cfmd/README.md
    assert rest + 2 * 8 * sum(2 * _conv_p(c, c, 3) for c in (32, 64, 128)) == 6_807_171  # plain MIMO-UNet (6.8 M)
    b = generator_breakdown(paper)
    assert (b["total"], b["mapping network"], b["ContAda blocks"]) == (mapping + blocks + rest, mapping, blocks)
    assert _abstract_count(paper) == b["total"]
    with torch.device("meta"):
        assert sum(p.numel() for p in TGenerator(paper).parameters()) == b["total"] == 8_680_115


@pytest.mark.parametrize("switch", ["use_deformable", "use_channel_attention"])
def test_ablation_parameter_deltas(switch):
    full = CFMDGeneratorConfig()
    ablated = CFMDGeneratorConfig(**{switch: False})
    n = full.blocks_per_stage * 2  # blocks per width
    if switch == "use_deformable":  # Conv_off + Conv_msk go, the DCN kernel becomes a plain conv3x3 of equal size
        expected = sum(n * (9 * c * 27 + 27) for c in full.widths)
    else:  # the two 1x1 convs of the channel attention go
        expected = sum(n * (2 * c * max(1, c // 16) + max(1, c // 16) + c) for c in full.widths)
    assert _abstract_count(full) - _abstract_count(ablated) == expected
    assert _abstract_count(ablated) == sum(_generator_p(ablated))
    with torch.device("meta"):
        assert sum(p.numel() for p in TGenerator(ablated).parameters()) == _abstract_count(ablated)


# ----------------------------------------------------------------------------------------------
# mapping network: vector path == the paper's H x W 1x1-conv formulation
# ----------------------------------------------------------------------------------------------


def _conv1x1(x, kernel, bias):
    out = jax.lax.conv_general_dilated(
        x, kernel[None, None], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return out + bias


def test_mapping_vector_equals_2d_formulation():
    cfg = CFMDGeneratorConfig()
    mapping = _init_jit(lambda r: MappingNetwork(cfg.mapping_layers, cfg.mapping_width, cfg.control_features, rngs=r))
    block = _build(lambda r: ContAdaBlock(16, cfg.control_features, rngs=r), seed=4)
    u = jnp.array([0.0, 0.3, 1.0 / 7.0, 1.0])
    h, w, hn, wn = 12, 8, 6, 4
    f_o = jnp.asarray(np.random.default_rng(0).standard_normal((4, hn, wn, 16)), jnp.float32)

    @jax.jit
    def both(u, f_o):
        # Literal: u_2D [B, H, W, 1] -> eight 1x1 convs + LReLU -> bilinear resize -> 1x1 conv 64 -> C_n.
        fmap = jnp.broadcast_to(u[:, None, None, None], (4, h, w, 1))
        for layer in mapping.layers:
            fmap = jax.nn.leaky_relu(_conv1x1(fmap, layer.kernel[...], layer.bias[...]), 0.2)
        fmap = jax.image.resize(fmap, (4, hn, wn, fmap.shape[-1]), "bilinear", antialias=False)
        u_n_map = _conv1x1(fmap, block.control_proj.kernel[...], block.control_proj.bias[...])
        kf = block.fuse.kernel[...][0, 0]
        f_u_literal = _conv1x1(jnp.concatenate([f_o, u_n_map], -1), kf, block.fuse.bias[...])
        vec = mapping(u)
        return fmap, f_u_literal, vec, block.control_feature(f_o, vec)

    fmap, f_u_literal, vec, f_u = both(u, f_o)
    assert vec.shape == (4, cfg.control_features)
    np.testing.assert_allclose(np.asarray(fmap), np.broadcast_to(np.asarray(vec)[:, None, None], fmap.shape),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(f_u), np.asarray(f_u_literal), rtol=1e-5, atol=1e-5)
    # At its real init the control vector changes with u, and not linearly (a zero-bias LeakyReLU MLP
    # would give u_f(u) = u * u_f(1)).
    vec = np.asarray(vec)
    assert np.linalg.norm(vec[3] - vec[0]) > 0.1 * np.linalg.norm(vec[3])
    assert np.abs(vec[1] - 0.3 * vec[3] - 0.7 * vec[0]).max() > 1e-3


# ----------------------------------------------------------------------------------------------
# CADC at initialisation == plain 3x3 conv with weights x 0.5
# ----------------------------------------------------------------------------------------------


def test_cadc_zero_init_is_half_conv():
    block = _init_jit(lambda r: ContAdaBlock(8, 8, rngs=r))  # the real initialisation
    assert not np.any(_np(block.cadc.conv_offset_mask.kernel)) and not np.any(_np(block.cadc.conv_offset_mask.bias))
    rng = np.random.default_rng(1)
    block.cadc.bias[...] = jnp.asarray(rng.standard_normal(8), jnp.float32)  # must not be scaled by the mask
    f_u = jnp.asarray(rng.standard_normal((2, 7, 5, 8)), jnp.float32)

    @nnx.jit  # the module is an argument: ModulatedDeformConv sows an intermediate
    def run(block, f_u):
        offset, mask = block.cadc.offsets(f_u)
        ref = jax.lax.conv_general_dilated(
            f_u, 0.5 * block.cadc.kernel[...], (1, 1), ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST,
        ) + block.cadc.bias[...]
        return offset, mask, block.cadc(f_u, f_u), ref

    offset, mask, out, ref = run(block, f_u)
    assert float(jnp.abs(offset).max()) == 0.0 and np.allclose(np.asarray(mask), 0.5)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# building blocks against PyTorch
# ----------------------------------------------------------------------------------------------


def test_conv_transpose_and_nearest_downsample_match_torch():
    layer = _build(lambda r: _conv_transpose_x2(6, 4, r), seed=7)
    ref = nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1)
    porter = _Porter()
    porter.conv_transpose(ref, layer)
    assert porter.scalars == count_params(layer)
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 6)).astype(np.float32)
    y = np.asarray(layer(jnp.asarray(x)))
    assert y.shape == (2, 10, 6, 4)  # exactly 2x, also for odd sizes
    np.testing.assert_allclose(y, _nhwc(ref(_nchw(x))), rtol=1e-5, atol=1e-5)

    img = np.random.default_rng(1).standard_normal((1, 8, 12, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(downsample_nearest(jnp.asarray(img))),
                                  _nhwc(F.interpolate(_nchw(img), scale_factor=0.5)))


def test_scm_fam_aff_match_torch():
    rng = np.random.default_rng(2)
    scm = _build(lambda r: SCM(16, rngs=r), seed=8)
    fam = _build(lambda r: FAM(16, rngs=r), seed=9)
    aff = _build(lambda r: AFF(28, 8, rngs=r), seed=10)
    t_scm, t_fam, t_aff = TSCM(16), nn.Conv2d(16, 16, 3, padding=1), _taff(28, 8)
    porter = _Porter()
    porter.scm(t_scm, scm)
    porter.conv(t_fam, fam.merge)
    porter.aff(t_aff, aff)
    assert porter.scalars == count_params(scm) + count_params(fam) + count_params(aff)

    img = rng.random((2, 6, 10, 3), dtype=np.float32)
    x1, x2 = (rng.standard_normal((2, 6, 10, 16)).astype(np.float32) for _ in range(2))
    f1, f2, f4 = (rng.standard_normal((2, 6, 10, c)).astype(np.float32) for c in (4, 8, 16))
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(scm(jnp.asarray(img))), _nhwc(t_scm(_nchw(img))), atol=ATOL)
        np.testing.assert_allclose(np.asarray(fam(jnp.asarray(x1), jnp.asarray(x2))),
                                   _nhwc(_tfam(_nchw(x1), _nchw(x2), t_fam)), atol=ATOL)
        t_out = t_aff(torch.cat([_nchw(f1), _nchw(f2), _nchw(f4)], 1))
    np.testing.assert_allclose(np.asarray(aff(*map(jnp.asarray, (f1, f2, f4)))), _nhwc(t_out), atol=ATOL)


@pytest.mark.parametrize("deform,attention", [(True, True), (False, False)])
def test_contada_block_matches_torch(deform, attention):
    c, cf = 16, 8
    block = _build(lambda r: ContAdaBlock(c, cf, use_deformable=deform, use_channel_attention=attention, rngs=r), 11)
    ref = TContAda(c, cf, deform, attention)
    porter = _Porter()
    porter.contada(ref, block)
    assert porter.scalars == count_params(block) == sum(p.numel() for p in ref.parameters())

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 9, c)).astype(np.float32)
    control = rng.standard_normal((2, cf)).astype(np.float32)
    @nnx.jit
    def run(block, x, control):
        f_o = jax.nn.leaky_relu(block.conv_in(x), 0.2)
        offset = block.cadc.offsets(block.control_feature(f_o, control))[0] if deform else jnp.zeros(())
        return block(x, control), offset

    out, offset = run(block, jnp.asarray(x), jnp.asarray(control))
    if deform:  # the perturbed offsets must exercise fractional and out-of-image samples
        frac = np.abs(np.asarray(offset) - np.round(np.asarray(offset)))
        assert np.mean(frac > 0.05) > 0.5 and np.abs(np.asarray(offset)).max() > 2.0
    u_f_map = np.broadcast_to(control[:, :, None, None], (2, cf, 14, 18))  # the full-resolution constant map
    with torch.no_grad():
        expected = _nhwc(ref(_nchw(x), _t(u_f_map)))
    np.testing.assert_allclose(np.asarray(out), expected, atol=ATOL)


# ----------------------------------------------------------------------------------------------
# the whole (tiny) generator: shapes, PyTorch re-statement, dependence on u
# ----------------------------------------------------------------------------------------------


def test_generator_matches_torch_and_depends_on_u():
    model = _build(lambda r: CFMDGenerator(TINY, rngs=r), seed=12)
    ref = TGenerator(TINY)
    porter = _Porter()
    porter.generator(ref, model)
    assert porter.scalars == count_params(model) == sum(p.numel() for p in ref.parameters()) == sum(_generator_p(TINY))

    # 18 x 14 is not a multiple of 4: exercises the padding and the crop back. Both batch items hold
    # the same image with different u.
    img = np.random.default_rng(4).random((1, 18, 14, 3), dtype=np.float32)
    blurred = np.concatenate([img, img])
    u = np.array([0.2, 0.8], np.float32)
    outs = jax.jit(lambda x, u: model(x, u))(jnp.asarray(blurred), jnp.asarray(u))
    assert [o.shape for o in outs] == [(2, 5, 4, 3), (2, 9, 7, 3), (2, 18, 14, 3)]
    with torch.no_grad():
        expected = ref(_nchw(blurred), _t(u))
    for o, e in zip(outs, expected):
        np.testing.assert_allclose(np.asarray(o), _nhwc(e), atol=ATOL)
    for o in outs:  # same image, different u (the u path itself is checked against PyTorch above)
        assert float(jnp.abs(o[0] - o[1]).max()) > 1e-3


def test_bilinear_pyramid_with_zero_outputs_starts_at_the_blurred_input():
    """``input_pyramid='bilinear'`` + ``zero_init_outputs``: at initialisation the three outputs are
    the labels' resizes of the input (NumPy block means and PyTorch's bilinear resize agree), and
    the output convolutions still receive gradients, so training can leave the input."""
    cfg = CFMDGeneratorConfig(
        widths=(8, 16, 32), blocks_per_stage=0, mapping_layers=1, mapping_width=8, control_features=4,
        input_pyramid="bilinear", zero_init_outputs=True,  # no ContAda blocks: the test is about the ends
    )
    model = _init_jit(lambda r: CFMDGenerator(cfg, rngs=r))
    img = np.random.default_rng(5).random((2, 16, 20, 3), dtype=np.float32)
    u = jnp.asarray([0.1, 0.9])
    out4, out2, out1 = jax.jit(lambda x, u: model(x, u))(jnp.asarray(img), u)
    half = img.reshape(2, 8, 2, 10, 2, 3).mean(axis=(2, 4))  # mean of each 2x2 block
    quarter = img.reshape(2, 4, 4, 5, 4, 3)[:, :, 1:3, :, 1:3].mean(axis=(2, 4))  # central 2x2 of 4x4
    np.testing.assert_array_equal(np.asarray(out1), img)
    np.testing.assert_allclose(np.asarray(out2), half, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out4), quarter, atol=1e-6)
    with torch.no_grad():
        for out, size in ((out2, (8, 10)), (out4, (4, 5))):
            ref = F.interpolate(_nchw(img), size=size, mode="bilinear", align_corners=False)
            np.testing.assert_allclose(np.asarray(out), _nhwc(ref), atol=1e-6)
    target = jnp.asarray(np.random.default_rng(6).random(img.shape, dtype=np.float32))
    grads = nnx.jit(nnx.grad(lambda m, x, t: jnp.mean((m(x, u)[-1] - t) ** 2)))(model, jnp.asarray(img), target)
    assert float(jnp.abs(grads.out1.kernel[...]).max()) > 1e-4
    # The defaults (nearest pyramid, random output convs) do not start at the input.
    default_cfg = dataclasses.replace(cfg, input_pyramid="nearest", zero_init_outputs=False)
    default = _init_jit(lambda r: CFMDGenerator(default_cfg, rngs=r))
    assert float(jnp.abs(nnx.jit(lambda m, x: m(x, u)[-1])(default, jnp.asarray(img)) - img).max()) > 1e-3
    with pytest.raises(ValueError, match="input_pyramid"):
        CFMDGeneratorConfig(input_pyramid="area")


def test_remat_stage_gradients_match_torch():
    """A 2-block stage with ``remat_blocks=True``: values and gradients against PyTorch autograd."""
    cfg = CFMDGeneratorConfig(widths=(8, 16, 32), control_features=4, remat_blocks=True)
    stage = _build(lambda r: ContAdaStage(8, 2, cfg, rngs=r), seed=13)
    refs = [TContAda(8, 4) for _ in range(2)]
    porter = _Porter()
    for i, tb in enumerate(refs):
        porter.contada(tb, stage.block(i))
    assert porter.scalars == count_params(stage)
    rng = np.random.default_rng(8)
    x, proj = (rng.standard_normal((1, 6, 5, 8)).astype(np.float32) for _ in range(2))
    control = rng.standard_normal((1, 4)).astype(np.float32)
    graphdef, params = nnx.split(stage, nnx.Param)

    def loss(p, x):
        return jnp.sum(nnx.merge(graphdef, p)(x, jnp.asarray(control)) * proj)

    # the flag is wired: the gradient program rematerialises, the plain configuration does not
    assert "remat" in str(jax.make_jaxpr(loss)(params, x))  # jax.checkpoint prints as remat2
    plain = nnx.eval_shape(lambda: ContAdaStage(8, 2, CFMDGeneratorConfig(widths=(8, 16, 32), control_features=4),
                                                rngs=nnx.Rngs(0)))
    plain_gd, _ = nnx.split(plain, nnx.Param)
    assert "remat" not in str(jax.make_jaxpr(lambda p: jnp.sum(nnx.merge(plain_gd, p)(x, control)))(params))

    value, (g_params, g_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, jnp.asarray(x))
    tx = _nchw(x).requires_grad_(True)
    z = tx
    for tb in refs:
        z = tb(z, _t(control[:, :, None, None]))
    t_value = (z * _nchw(proj)).sum()
    t_value.backward()
    np.testing.assert_allclose(float(value), t_value.item(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g_x), _nhwc(tx.grad), atol=ATOL)
    g_kernel = np.asarray(g_params["blocks"]["cadc"]["kernel"][...])  # [2, 3, 3, C, C]
    for i, tb in enumerate(refs):
        np.testing.assert_allclose(g_kernel[i].transpose(3, 2, 0, 1), tb.dc_weight.grad.numpy(), atol=ATOL)
        g_off = np.asarray(g_params["blocks"]["cadc"]["conv_offset_mask"]["kernel"][...])[i].transpose(3, 2, 0, 1)
        np.testing.assert_allclose(g_off[:18], tb.conv_off.weight.grad.numpy(), atol=ATOL)
        np.testing.assert_allclose(g_off[18:], tb.conv_msk.weight.grad.numpy(), atol=ATOL)
        g_u = np.asarray(g_params["blocks"]["control_proj"]["kernel"][...])[i].T
        np.testing.assert_allclose(g_u, tb.u_proj.weight.grad.numpy()[:, :, 0, 0], atol=ATOL)


def test_generator_rejects_bad_inputs():
    model = nnx.eval_shape(lambda: CFMDGenerator(TINY, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        model(jnp.zeros((2, 8, 8, 4)), jnp.zeros((2,)))
    with pytest.raises(ValueError, match="u of shape"):
        model(jnp.zeros((2, 8, 8, 3)), jnp.zeros((3,)))
    with pytest.raises(ValueError, match="multiples of 4"):
        CFMDGeneratorConfig(widths=(8, 16, 30))


# ----------------------------------------------------------------------------------------------
# channel attention with external conditioning
# ----------------------------------------------------------------------------------------------


def test_channel_attention_source_and_cond_against_numpy():
    ca = _build(lambda r: ChannelAttention(12, 4, cond_features=2, rngs=r), seed=6)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 5, 12)).astype(np.float32)
    src = rng.standard_normal((2, 4, 4, 12)).astype(np.float32)  # another feature drives the weights
    cond = rng.standard_normal((2, 2)).astype(np.float32)
    d = np.concatenate([src.mean(axis=(1, 2)), cond], -1)
    hid = np.maximum(d @ _np(ca.squeeze.kernel) + _np(ca.squeeze.bias), 0.0)
    a = 1.0 / (1.0 + np.exp(-(hid @ _np(ca.excite.kernel) + _np(ca.excite.bias))))
    out = ca(jnp.asarray(x), source=jnp.asarray(src), cond=jnp.asarray(cond))
    np.testing.assert_allclose(np.asarray(out), x * a[:, None, None, :], rtol=1e-5, atol=1e-6)
    assert ca.hidden == 3
    with pytest.raises(ValueError, match="cond"):
        ca(jnp.asarray(x))


# ----------------------------------------------------------------------------------------------
# spectral normalisation
# ----------------------------------------------------------------------------------------------


def test_spectral_norm_top_singular_value_is_one():
    conv = nnx.Conv(5, 7, (3, 3), padding=1, rngs=nnx.Rngs(7))
    sn = SpectralNorm(conv, rngs=nnx.Rngs(8))
    raw = _np(conv.kernel).copy()
    sigma = np.linalg.svd(raw.reshape(-1, 7), compute_uv=False)[0]
    step = nnx.jit(lambda m: m.normalized_kernel())
    for _ in range(60):  # one power iteration per training-mode call
        w = step(sn)
    np.testing.assert_allclose(np.linalg.svd(np.asarray(w).reshape(-1, 7), compute_uv=False)[0], 1.0, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(w), raw / sigma, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(_np(conv.kernel), raw)  # the Param keeps the raw kernel
    assert len(jax.tree.leaves(nnx.state(sn, SpectralState))) == 1
    assert count_params(sn) == 9 * 5 * 7 + 7  # u is not an nnx.Param

    # evaluation mode: u is not touched and the output is the layer with kernel / sigma
    sn.eval()
    u = _np(sn.u).copy()
    x = jnp.asarray(np.random.default_rng(9).standard_normal((2, 6, 6, 5)), jnp.float32)
    ref = jax.lax.conv_general_dilated(x, jnp.asarray(raw / sigma), (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                       precision=jax.lax.Precision.HIGHEST) + conv.bias[...]
    np.testing.assert_allclose(np.asarray(sn(x)), np.asarray(ref), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(_np(sn.u), u)


def test_spectral_norm_matches_torch_training_step():
    lin = nnx.Linear(6, 4, rngs=nnx.Rngs(10))
    sn = SpectralNorm(lin, rngs=nnx.Rngs(11))
    ref = nn.utils.spectral_norm(nn.Linear(6, 4))
    with torch.no_grad():
        ref.weight_orig.copy_(_t(_np(lin.kernel).T))
        ref.bias.copy_(_t(_np(lin.bias)))
        ref.weight_u.copy_(_t(_np(sn.u)))
    x = np.random.default_rng(6).standard_normal((3, 6)).astype(np.float32)

    def loss(m, x):
        return jnp.sum(jnp.tanh(m(x)))

    value, grads = nnx.value_and_grad(loss)(sn, jnp.asarray(x))
    t_value = torch.tanh(ref(_t(x))).sum()
    t_value.backward()
    np.testing.assert_allclose(float(value), t_value.item(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grads["layer"]["kernel"][...]).T, ref.weight_orig.grad.numpy(),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_np(sn.u), ref.weight_u.numpy(), rtol=1e-5, atol=1e-6)  # same updated u
    assert "u" not in grads  # SpectralState is not differentiated


# ----------------------------------------------------------------------------------------------
# discriminator
# ----------------------------------------------------------------------------------------------


def test_discriminator_heads_and_spectral_state():
    cfg = CFMDDiscriminatorConfig(base_features=4, channel_multipliers=(1, 2))
    # Random kernels (BigGAN's orthogonal init makes every singular value 1 and u a fixed point of the
    # iteration) and random unit u vectors, drawn with NumPy (compiling the QR-based init is slow).
    graphdef, params, sn_state = nnx.split(nnx.eval_shape(lambda: CFMDDiscriminator(cfg, rngs=nnx.Rngs(0))),
                                           nnx.Param, SpectralState)
    rng_u = np.random.default_rng(15)

    def unit(leaf):
        v = rng_u.standard_normal(leaf.shape).astype(np.float32)
        return jnp.asarray(v / np.linalg.norm(v))

    sn_state = jax.tree.map(unit, sn_state)
    d = nnx.merge(graphdef, _random_params(params, seed=14), sn_state)
    rng = np.random.default_rng(7)
    blurred, image = (jnp.asarray(rng.random((2, 8, 4, 3), dtype=np.float32)) for _ in range(2))
    u_before = [np.asarray(v[...]).copy() for v in jax.tree.leaves(nnx.state(d, SpectralState), is_leaf=_is_var)]
    assert len(u_before) == 2 * 3 + 2 * 3 + 3  # 3 convs per down/up block, plus three heads

    call = nnx.jit(lambda m, b, s: m(b, s))
    out = call(d, blurred, image)
    assert out.global_logits.shape == (2,)
    assert out.pixel_logits.shape == (2, 8, 4) and out.u_map.shape == (2, 8, 4)
    u_after = [np.asarray(v[...]) for v in jax.tree.leaves(nnx.state(d, SpectralState), is_leaf=_is_var)]
    # training mode: every u is updated (those of the 1-output heads are +-1 and stay so)
    assert all(not np.array_equal(a, b) for a, b in zip(u_before, u_after) if a.size > 1)
    assert sum(a.size == 1 for a in u_before) == 3

    d.eval()
    out_eval = call(d, blurred, image)
    u_eval = [np.asarray(v[...]) for v in jax.tree.leaves(nnx.state(d, SpectralState), is_leaf=_is_var)]
    assert all(np.array_equal(a, b) for a, b in zip(u_after, u_eval))  # evaluation: untouched
    np.testing.assert_array_equal(np.asarray(call(d, blurred, image).u_map), np.asarray(out_eval.u_map))
    # the real/fake input matters for all heads
    out_swap = call(d, blurred, blurred)
    for a, b in zip(out_eval, out_swap):
        assert float(jnp.abs(a - b).max()) > 0

    with pytest.raises(ValueError, match="divisible by 4"):
        d(jnp.zeros((1, 6, 8, 3)), jnp.zeros((1, 6, 8, 3)))
    # without spectral norm the discriminator holds nnx.Param state only
    plain = nnx.eval_shape(lambda: CFMDDiscriminator(CFMDDiscriminatorConfig(spectral_norm=False), rngs=nnx.Rngs(0)))
    _, _, rest = nnx.split(plain, nnx.Param, ...)
    assert not jax.tree.leaves(rest)
    assert count_params(plain) == count_params(nnx.eval_shape(lambda: CFMDDiscriminator(rngs=nnx.Rngs(0))))
