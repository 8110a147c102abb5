"""CFMD-GAN networks (method ``cfmd``): continuous facial motion deblurring, models only.

Re-stated from the engineering digest of Lee, Han & Heo, *Continuous Facial Motion Deblurring*
(spec ``seed_002_003`` Part A, §A1-A4); architecture, assumptions and the parameter count are in
``restore_jax/methods/cfmd/README.md``. ``python -m restore_jax.methods.cfmd.model`` prints the parameter break-down.

Generator ``G(b, u)`` = mapping network ``G_M`` + MIMO-UNet ``G_R`` whose 48 residual blocks are
ContAda blocks:

- ``G_M``: the paper broadcasts ``u`` to a constant ``H x W`` map and applies eight 1x1 conv +
  LeakyReLU layers; on a constant map that is exactly an 8-layer MLP ``R -> R^64`` evaluated once per
  image and broadcast (bilinear resizing of a constant map is the identity, and the per-block 1x1
  conv becomes a ``Dense(64 -> C_n)``). It is computed as a vector here.
- ``G_R``: MIMO-UNet (widths 32/64/128 at scales 1, 1/2, 1/4; SCM, FAM, AFF; nearest x0.5 input
  pyramid; stride-2 3x3 convs down, 4x4 stride-2 transposed convs up) with three outputs at 1/4,
  1/2 and 1 resolution, each ``conv3x3(feature) + resized input``.
- ContAda block: ``F_o = LReLU(conv3x3(F_in))``; ``F_u = conv1x1([F_o, Dense(u_f)])``;
  ``F_dc = DCNv2(F_u)`` with offsets and mask predicted from ``F_u`` (CADC, zero-initialised so
  ``Δp = 0`` and mask ``0.5`` at start); ``a = ChannelAttention(F_u)`` (CACA, r = 16, ReLU);
  ``out = F_in + F_dc * a``.

Discriminator ``D(b, s)``: a conditional U-Net discriminator on the 6-channel ``[b, s]`` with
BigGAN-style residual down/up blocks and spectral normalisation; heads: a global logit ``[B]``, a
per-pixel logit map ``[B, H, W]`` and the auxiliary regressor ``Q``'s per-pixel estimate of ``u``
``[B, H, W]``.

Conventions: NHWC, images in whatever range the data pipeline uses (the outputs add the input, so
they are in the same range). Convolutions use PyTorch's padding ``k // 2`` (also for stride 2) and
a PyTorch-default-like init; the DCN layers keep the init of
:class:`restore_jax.nn.deformable.ModulatedDeformConv`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from restore_jax.nn.attention import ChannelAttention
from restore_jax.nn.deformable import ModulatedDeformConv
from restore_jax.nn.params import count_params
from restore_jax.nn.spectral_norm import SpectralNorm

# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _uniform(bound: float):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


# PyTorch's default conv/linear kernel init, kaiming_uniform(a=sqrt(5)), is this variance scaling.
_TORCH_KERNEL_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _conv(cin: int, cout: int, k: int, rngs: nnx.Rngs, *, stride: int = 1) -> nnx.Conv:
    """``k x k`` conv with PyTorch's symmetric padding ``k // 2`` and default init (bias +-1/sqrt(fan_in))."""
    return nnx.Conv(
        cin, cout, (k, k), strides=stride, padding=k // 2,
        kernel_init=_TORCH_KERNEL_INIT, bias_init=_uniform(1.0 / (cin * k * k) ** 0.5), rngs=rngs,
    )


def _linear(cin: int, cout: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(cin, cout, kernel_init=_TORCH_KERNEL_INIT, bias_init=_uniform(1.0 / cin**0.5), rngs=rngs)


def _conv_transpose_x2(cin: int, cout: int, rngs: nnx.Rngs) -> nnx.ConvTranspose:
    """Equivalent of PyTorch ``ConvTranspose2d(cin, cout, 4, stride=2, padding=1)``: output exactly 2x.

    ``nnx.ConvTranspose`` convolves the stride-dilated input with explicit padding ``k - 1 - p = 2``
    per side: ``(H - 1) * 2 + 1 + 2 + 2 - 4 + 1 = 2H``. Its kernel ``[4, 4, cin, cout]`` is applied
    without a flip, so a PyTorch weight ``w [cin, cout, 4, 4]`` ports as
    ``w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)`` (checked against PyTorch in the tests).
    """
    return nnx.ConvTranspose(
        cin, cout, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
        kernel_init=_TORCH_KERNEL_INIT, bias_init=_uniform(1.0 / (cin * 16) ** 0.5), rngs=rngs,
    )


def downsample_nearest(x: jax.Array) -> jax.Array:
    """x0.5 nearest neighbour as PyTorch's default ``F.interpolate(x, scale_factor=0.5)``.

    PyTorch's 'nearest' reads source index ``floor(dst * 2)``, i.e. ``x[:, ::2, ::2]`` for even sizes
    (``jax.image.resize``'s 'nearest' uses half-pixel centres instead and would pick the odd rows).
    """
    if x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"downsample_nearest needs even height and width, got {tuple(x.shape)}")
    return x[:, ::2, ::2]


def resize_bilinear(x: jax.Array, height: int, width: int) -> jax.Array:
    """Bilinear resize of ``x [B, H, W, C]`` with half-pixel centres and no antialiasing, in float32.

    This is PyTorch's ``F.interpolate(x, size, mode='bilinear', align_corners=False)``, the way the
    MIMO-UNet code makes its multi-scale labels (x1/2: the mean of each 2x2 block; x1/4: the mean of
    the central 2x2 of each 4x4 block).
    """
    b, _, _, c = x.shape
    return jax.image.resize(x.astype(jnp.float32), (b, height, width, c), "linear", antialias=False)


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
    """Integer nearest-neighbour upsampling (PyTorch ``F.interpolate(scale_factor=factor)``)."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def parameter_breakdown(module: nnx.Module, depth: int = 1) -> dict[str, int]:
    """``nnx.Param`` scalars grouped by the first ``depth`` components of their path (e.g. ``'eb1'``)."""
    out: dict[str, int] = {}
    for path, value in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        key = "/".join(str(p) for p in path[:depth])
        out[key] = out.get(key, 0) + sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(value))
    return out


# --------------------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CFMDGeneratorConfig:
    """Generator hyper-parameters; the defaults are the paper configuration (plus spec assumptions).

    Attributes:
      widths: MIMO-UNet channels at scales 1, 1/2, 1/4 (each a multiple of 4, >= 8: the SCMs use
        ``C/4``, ``C/2`` and ``C - 3`` channels).
      blocks_per_stage: ContAda blocks in each of EB1-3 and DB1-3 (8: 48 blocks).
      mapping_layers, mapping_width, control_features: the mapping network ``G_M`` (8 Dense +
        LeakyReLU layers, hidden width 64, 64-d control vector ``u_f``).
      use_deformable: CADC on; False replaces it with a plain conv3x3 on ``F_u`` (ablation).
      use_channel_attention: CACA on; False multiplies by nothing (ablation).
      attention_reduction: CACA bottleneck ratio ``r``.
      lrelu_slope: LeakyReLU slope of ``G_M`` and of ``F_o``.
      remat_blocks: rematerialise every ContAda block in the backward pass (``jax.checkpoint``):
        only block inputs are kept, trading ~1 extra forward for memory at 256^2.
      pad_mode: how inputs whose height/width are not multiples of 4 are padded (bottom/right) before
        the outputs are cropped back: ``'edge'`` (replicate) or ``'reflect'``.
      unroll_blocks: apply each stage's blocks in a Python loop instead of ``lax.scan``. XLA:CPU runs
        convolutions inside a while loop far slower (one ContAda block without CADC at 8x64x64x16,
        forward + backward: 23 ms CPU time alone, ~750 ms as a 1-step scan); compile time then
        grows with ``blocks_per_stage``.
      input_pyramid: how the x1/2 and x1/4 inputs (SCM inputs and the outputs' skip) are made:
        ``'nearest'`` (MIMO-UNet: PyTorch's default ``F.interpolate``) or ``'bilinear'`` (the same
        resize as the multi-scale labels, so a network that outputs nothing reproduces the blurred
        input at every scale; an engineering option for short runs, not the paper's).
      zero_init_outputs: zero the three output convolutions, so training starts exactly at the
        blurred input (with ``input_pyramid='bilinear'``) instead of input + random noise. An
        engineering option for short runs (as ``baseline_sr``'s residual start), off in ``paper``.
    """

    widths: tuple[int, int, int] = (32, 64, 128)
    blocks_per_stage: int = 8
    mapping_layers: int = 8
    mapping_width: int = 64
    control_features: int = 64
    use_deformable: bool = True
    use_channel_attention: bool = True
    attention_reduction: int = 16
    lrelu_slope: float = 0.2
    remat_blocks: bool = False
    pad_mode: str = "edge"
    unroll_blocks: bool = False
    input_pyramid: str = "nearest"
    zero_init_outputs: bool = False

    def __post_init__(self):
        if len(self.widths) != 3 or any(c < 8 or c % 4 for c in self.widths):
            raise ValueError(
                f"CFMDGeneratorConfig.widths must be three multiples of 4 that are >= 8 (scales 1, 1/2, 1/4), "
                f"got {self.widths}"
            )
        if self.blocks_per_stage < 0 or self.mapping_layers < 1:
            raise ValueError(
                f"need blocks_per_stage >= 0 and mapping_layers >= 1, got {self.blocks_per_stage}, "
                f"{self.mapping_layers}"
            )
        if self.input_pyramid not in ("nearest", "bilinear"):
            raise ValueError(f"input_pyramid must be 'nearest' or 'bilinear', got {self.input_pyramid!r}")
        if self.pad_mode not in ("edge", "reflect"):
            raise ValueError(f"pad_mode must be 'edge' or 'reflect', got {self.pad_mode!r}")


class MappingNetwork(nnx.Module):
    """``G_M``: ``u [B] -> u_f [B, out_features]`` by ``layers`` x (Dense -> LeakyReLU).

    Kernels use He (LeakyReLU-gain) uniform init so the ``u``-dependent part of the activations keeps
    its scale through the 8 layers (PyTorch's default init shrinks it ~2.5x per layer, leaving the
    control vector almost constant in ``u`` at start); biases are uniform(+-1/sqrt(fan_in)) -- with
    zero biases a LeakyReLU MLP is positively homogeneous and ``u_f(u)`` would be just ``u * u_f(1)``.
    """

    def __init__(self, layers: int = 8, width: int = 64, out_features: int = 64, *, slope: float = 0.2,
                 rngs: nnx.Rngs):
        dims = [1] + [width] * (layers - 1) + [out_features]
        he = nnx.initializers.variance_scaling(2.0 / (1.0 + slope**2), "fan_in", "uniform")
        self.layers = nnx.List([
            nnx.Linear(a, b, kernel_init=he, bias_init=_uniform(1.0 / a**0.5), rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:])
        ])
        self.slope = slope

    def __call__(self, u: jax.Array) -> jax.Array:
        h = u.reshape(-1, 1)
        for layer in self.layers:
            h = jax.nn.leaky_relu(layer(h), self.slope)
        return h


class SCM(nnx.Module):
    """Shallow convolutional module: features from a down-scaled input image (MIMO-UNet)."""

    def __init__(self, features: int, *, rngs: nnx.Rngs):
        c = features
        self.conv1 = _conv(3, c // 4, 3, rngs)
        self.conv2 = _conv(c // 4, c // 2, 1, rngs)
        self.conv3 = _conv(c // 2, c // 2, 3, rngs)
        self.conv4 = _conv(c // 2, c - 3, 1, rngs)
        self.fuse = _conv(c, c, 1, rngs)

    def __call__(self, image: jax.Array) -> jax.Array:
        y = image
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            y = jax.nn.relu(conv(y))
        return self.fuse(jnp.concatenate([image, y], axis=-1))


class FAM(nnx.Module):
    """Feature attention module: ``x1 + conv3x3(x1 * x2)``."""

    def __init__(self, features: int, *, rngs: nnx.Rngs):
        self.merge = _conv(features, features, 3, rngs)

    def __call__(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return x1 + self.merge(x1 * x2)


class AFF(nnx.Module):
    """Asymmetric feature fusion: ``conv3x3(ReLU(conv1x1([f1, f2, f4])))`` (inputs already resized)."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(in_features, out_features, 1, rngs)
        self.conv2 = _conv(out_features, out_features, 3, rngs)

    def __call__(self, f1: jax.Array, f2: jax.Array, f4: jax.Array) -> jax.Array:
        return self.conv2(jax.nn.relu(self.conv1(jnp.concatenate([f1, f2, f4], axis=-1))))


class ContAdaBlock(nnx.Module):
    """Control-adaptive residual block: ``F_in + CADC(F_u) * CACA(F_u)``.

    ``F_u = conv1x1([LReLU(conv3x3(F_in)), broadcast(Dense(u_f))])``. CADC is a
    :class:`ModulatedDeformConv` with one deformable group whose offsets and mask come from ``F_u``
    itself through one zero-initialised 3x3 conv with ``3K = 27`` outputs (18 offset channels in
    torchvision order, 9 mask logits): the paper's two separate branches ``Conv_off`` (2K) and
    ``Conv_msk`` (K) stacked along the output axis -- identical function and parameter count.
    """

    def __init__(
        self,
        features: int,
        control_features: int = 64,
        *,
        use_deformable: bool = True,
        use_channel_attention: bool = True,
        attention_reduction: int = 16,
        slope: float = 0.2,
        rngs: nnx.Rngs,
    ):
        c = features
        self.features = c
        self.slope = slope
        self.conv_in = _conv(c, c, 3, rngs)
        self.control_proj = _linear(control_features, c, rngs)  # 1x1 conv on the constant u_f map
        self.fuse = _conv(2 * c, c, 1, rngs)  # input channels ordered [F_o, u_f^(n)]
        if use_deformable:
            self.cadc = ModulatedDeformConv(c, c, offset_features=c, kernel_size=3, deformable_groups=1, rngs=rngs)
            self.conv_dc = None
        else:
            self.cadc = None
            self.conv_dc = _conv(c, c, 3, rngs)
        self.caca = ChannelAttention(c, attention_reduction, rngs=rngs) if use_channel_attention else None

    def control_feature(self, f_o: jax.Array, control: jax.Array) -> jax.Array:
        """``F_u``: the 1x1 fusion of ``[F_o, u_f^(n)]`` with the constant half applied as a vector."""
        c = self.features
        kernel = self.fuse.kernel[...].astype(f_o.dtype)[0, 0]  # [2C, C]
        u_n = self.control_proj(control.astype(f_o.dtype))  # [B, C]
        u_term = u_n @ kernel[c:] + self.fuse.bias[...].astype(f_o.dtype)
        return f_o @ kernel[:c] + u_term[:, None, None, :]

    def __call__(self, x: jax.Array, control: jax.Array) -> jax.Array:
        f_o = jax.nn.leaky_relu(self.conv_in(x), self.slope)
        f_u = self.control_feature(f_o, control)
        f_dc = self.cadc(f_u, f_u) if self.cadc is not None else self.conv_dc(f_u)
        if self.caca is not None:
            f_dc = self.caca(f_dc, source=f_u)
        return x + f_dc


class ContAdaStage(nnx.Module):
    """``n`` ContAda blocks with stacked parameters, applied by ``lax.scan`` (compile time independent of ``n``).

    With ``config.remat_blocks`` each block is a ``jax.checkpoint``: the backward pass recomputes a block's
    internals from its input instead of keeping them. :meth:`block` returns block ``i`` as a standalone
    module (a copy) for inspection.
    """

    def __init__(self, features: int, n: int, config: CFMDGeneratorConfig, *, rngs: nnx.Rngs):
        self.n = n
        self.remat = config.remat_blocks
        self.unroll = bool(config.unroll_blocks)

        @nnx.split_rngs(splits=max(n, 1))
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make(r: nnx.Rngs) -> ContAdaBlock:
            return ContAdaBlock(
                features, config.control_features,
                use_deformable=config.use_deformable,
                use_channel_attention=config.use_channel_attention,
                attention_reduction=config.attention_reduction,
                slope=config.lrelu_slope,
                rngs=r,
            )

        self.blocks = make(rngs) if n else None

    def block(self, i: int) -> ContAdaBlock:
        graphdef, state = nnx.split(self.blocks)
        return nnx.merge(graphdef, jax.tree.map(lambda a: a[i], state))

    def __call__(self, x: jax.Array, control: jax.Array) -> jax.Array:
        if not self.n:
            return x
        graphdef, state = nnx.split(self.blocks)

        def body(h, block_state):
            return nnx.merge(graphdef, block_state)(h, control), None

        if self.remat:
            body = jax.checkpoint(body, prevent_cse=False)
        if self.unroll:  # a Python loop: no while loop in the compiled program (see unroll_blocks)
            for i in range(self.n):
                x = body(x, jax.tree.map(lambda a, i=i: a[i], state))[0]
            return x
        return jax.lax.scan(body, x, state)[0]


class CFMDGenerator(nnx.Module):
    """``G(blurred [B, H, W, 3], u [B]) -> [out_1/4, out_1/2, out_1]`` (see the module docstring).

    Any ``H, W >= 1`` are accepted: sizes that are not multiples of 4 are padded at the bottom/right
    (``config.pad_mode``) and the outputs cropped back to ``ceil(H/4) x ceil(W/4)``,
    ``ceil(H/2) x ceil(W/2)`` and ``H x W``.
    """

    def __init__(self, config: CFMDGeneratorConfig = CFMDGeneratorConfig(), *, rngs: nnx.Rngs):
        self.config = config
        c1, c2, c4 = config.widths
        n = config.blocks_per_stage
        self.mapping = MappingNetwork(
            config.mapping_layers, config.mapping_width, config.control_features,
            slope=config.lrelu_slope, rngs=rngs,
        )
        self.scm2 = SCM(c2, rngs=rngs)
        self.scm4 = SCM(c4, rngs=rngs)
        self.feat_in = _conv(3, c1, 3, rngs)
        self.eb1 = ContAdaStage(c1, n, config, rngs=rngs)
        self.down2 = _conv(c1, c2, 3, rngs, stride=2)
        self.fam2 = FAM(c2, rngs=rngs)
        self.eb2 = ContAdaStage(c2, n, config, rngs=rngs)
        self.down4 = _conv(c2, c4, 3, rngs, stride=2)
        self.fam4 = FAM(c4, rngs=rngs)
        self.eb3 = ContAdaStage(c4, n, config, rngs=rngs)
        self.aff1 = AFF(c1 + c2 + c4, c1, rngs=rngs)
        self.aff2 = AFF(c1 + c2 + c4, c2, rngs=rngs)
        self.db1 = ContAdaStage(c4, n, config, rngs=rngs)
        self.out4 = _conv(c4, 3, 3, rngs)
        self.up2 = _conv_transpose_x2(c4, c2, rngs)
        self.fuse2 = _conv(2 * c2, c2, 1, rngs)
        self.db2 = ContAdaStage(c2, n, config, rngs=rngs)
        self.out2 = _conv(c2, 3, 3, rngs)
        self.up1 = _conv_transpose_x2(c2, c1, rngs)
        self.fuse1 = _conv(2 * c1, c1, 1, rngs)
        self.db3 = ContAdaStage(c1, n, config, rngs=rngs)
        self.out1 = _conv(c1, 3, 3, rngs)
        if config.zero_init_outputs:
            for conv in (self.out4, self.out2, self.out1):
                conv.kernel.set_value(jnp.zeros_like(conv.kernel.get_value()))
                conv.bias.set_value(jnp.zeros_like(conv.bias.get_value()))

    def control(self, u: jax.Array) -> jax.Array:
        """The control vector ``u_f [B, control_features]`` of ``G_M``."""
        return self.mapping(u)

    def __call__(self, blurred: jax.Array, u: jax.Array) -> list[jax.Array]:
        blurred = jnp.asarray(blurred)
        if blurred.ndim != 4 or blurred.shape[-1] != 3:
            raise ValueError(f"CFMDGenerator expects blurred images [B, H, W, 3] (NHWC), got {tuple(blurred.shape)}")
        b, h, w, _ = blurred.shape
        u = jnp.asarray(u, jnp.float32)  # the small mapping MLP runs in float32 (u = 1/13 is not exact in bf16)
        if u.ndim == 0:
            u = jnp.broadcast_to(u, (b,))
        if u.shape != (b,):
            raise ValueError(f"CFMDGenerator expects u of shape [B] = ({b},) or a scalar, got {tuple(u.shape)}")
        ph, pw = (-h) % 4, (-w) % 4
        x = blurred
        if ph or pw:
            x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=self.config.pad_mode)
        relu = jax.nn.relu
        control = self.control(u)

        if self.config.input_pyramid == "bilinear":
            hp, wp = x.shape[1:3]
            x2 = resize_bilinear(x, hp // 2, wp // 2).astype(x.dtype)
            x4 = resize_bilinear(x, hp // 4, wp // 4).astype(x.dtype)
        else:
            x2 = downsample_nearest(x)
            x4 = downsample_nearest(x2)
        z2 = self.scm2(x2)
        z4 = self.scm4(x4)

        res1 = self.eb1(relu(self.feat_in(x)), control)
        z = self.fam2(relu(self.down2(res1)), z2)
        res2 = self.eb2(z, control)
        z = self.fam4(relu(self.down4(res2)), z4)
        z = self.eb3(z, control)

        aff2 = self.aff2(downsample_nearest(res1), res2, upsample_nearest(z, 2))
        aff1 = self.aff1(res1, upsample_nearest(res2, 2), upsample_nearest(z, 4))

        z = self.db1(z, control)
        out4 = self.out4(z) + x4
        z = relu(self.up2(z))
        z = relu(self.fuse2(jnp.concatenate([z, aff2], axis=-1)))
        z = self.db2(z, control)
        out2 = self.out2(z) + x2
        z = relu(self.up1(z))
        z = relu(self.fuse1(jnp.concatenate([z, aff1], axis=-1)))
        z = self.db3(z, control)
        out1 = self.out1(z) + x
        return [
            out4[:, : -(-h // 4), : -(-w // 4)],
            out2[:, : -(-h // 2), : -(-w // 2)],
            out1[:, :h, :w],
        ]


# --------------------------------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CFMDDiscriminatorConfig:
    """U-Net discriminator hyper-parameters ([assumption] defaults, spec §A3.3).

    Attributes:
      in_channels: channels of the conditional input ``[blurred, image]`` (6).
      base_features: channels of the first level.
      channel_multipliers: one per level; level ``k`` (resolution ``H / 2^(k+1)``) has
        ``base_features * channel_multipliers[k]`` channels. Inputs need ``H, W`` divisible by
        ``2 ** len(channel_multipliers)``.
      spectral_norm: wrap every conv/linear in :class:`SpectralNorm` (its ``u`` vectors are
        non-``Param`` state: see ``restore_jax/methods/cfmd/README.md`` for how a training step must carry them).
      n_power_iterations: power iterations per training-mode call.
    """

    in_channels: int = 6
    base_features: int = 64
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 8)
    spectral_norm: bool = True
    n_power_iterations: int = 1

    def __post_init__(self):
        if not self.channel_multipliers or min(self.channel_multipliers) < 1 or self.base_features < 1:
            raise ValueError(
                f"CFMDDiscriminatorConfig needs base_features >= 1 and at least one multiplier >= 1, got "
                f"{self.base_features}, {self.channel_multipliers}"
            )

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_features * m for m in self.channel_multipliers)


class CFMDDiscriminatorOutput(NamedTuple):
    """Heads of :class:`CFMDDiscriminator` (all logits / raw values, float)."""

    global_logits: jax.Array  # [B]        real/fake from the encoder bottleneck (D_enc)
    pixel_logits: jax.Array  # [B, H, W]   per-pixel real/fake from the decoder (D_dec)
    u_map: jax.Array  # [B, H, W]          auxiliary regressor Q: per-pixel estimate of u


def _d_layer(layer: nnx.Module, config: CFMDDiscriminatorConfig, rngs: nnx.Rngs) -> nnx.Module:
    if not config.spectral_norm:
        return layer
    return SpectralNorm(layer, n_power_iterations=config.n_power_iterations, rngs=rngs)


def _d_conv(cin: int, cout: int, k: int, config: CFMDDiscriminatorConfig, rngs: nnx.Rngs) -> nnx.Module:
    # BigGAN initialises D orthogonally.
    conv = nnx.Conv(cin, cout, (k, k), padding=k // 2, kernel_init=nnx.initializers.orthogonal(), rngs=rngs)
    return _d_layer(conv, config, rngs)


def _avg_pool2(x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class DownBlock(nnx.Module):
    """BigGAN D block: ``avgpool(conv3(relu(conv3(pre(x))))) + conv1(avgpool(x))``.

    ``pre`` is a ReLU except in the first block (``preactivation=False``), which sees raw pixels. The
    shortcut's 1x1 conv and 2x2 average pool commute, so the cheaper order is used.
    """

    def __init__(self, cin: int, cout: int, config: CFMDDiscriminatorConfig, *, preactivation: bool,
                 rngs: nnx.Rngs):
        self.preactivation = preactivation
        self.conv1 = _d_conv(cin, cout, 3, config, rngs)
        self.conv2 = _d_conv(cout, cout, 3, config, rngs)
        self.conv_sc = _d_conv(cin, cout, 1, config, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(x) if self.preactivation else x
        h = self.conv2(jax.nn.relu(self.conv1(h)))
        return _avg_pool2(h) + self.conv_sc(_avg_pool2(x))


class UpBlock(nnx.Module):
    """BigGAN G-style up block (no normalisation): ``conv3(relu(conv3(up(relu(x))))) + up(conv1(x))``."""

    def __init__(self, cin: int, cout: int, config: CFMDDiscriminatorConfig, *, rngs: nnx.Rngs):
        self.conv1 = _d_conv(cin, cout, 3, config, rngs)
        self.conv2 = _d_conv(cout, cout, 3, config, rngs)
        self.conv_sc = _d_conv(cin, cout, 1, config, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(upsample_nearest(jax.nn.relu(x), 2))
        h = self.conv2(jax.nn.relu(h))
        return h + upsample_nearest(self.conv_sc(x), 2)


class CFMDDiscriminator(nnx.Module):
    """Conditional U-Net discriminator with the auxiliary ``u`` regressor ``Q``.

    ``__call__(blurred [B, H, W, 3], image [B, H, W, 3]) -> CFMDDiscriminatorOutput``; ``image`` is
    the sharp frame or the restored one. Encoder: ``L`` down blocks on ``[blurred, image]``
    (resolution ``H / 2^k`` after block ``k``). Global head: ``Linear(sum_hw(relu(bottleneck)))``.
    Decoder: ``L`` up blocks; before every block but the first, the matching encoder output is
    concatenated. Per-pixel heads: two 1x1 convs on ``relu(decoder output)`` (real/fake logit and
    ``Q``'s ``u`` estimate, linear). Logits feed sigmoid-BCE losses (``restore_jax.losses``).
    """

    def __init__(self, config: CFMDDiscriminatorConfig = CFMDDiscriminatorConfig(), *, rngs: nnx.Rngs):
        self.config = config
        w = config.widths
        levels = len(w)
        self.encoder = nnx.List([
            DownBlock(config.in_channels if k == 0 else w[k - 1], w[k], config, preactivation=k > 0, rngs=rngs)
            for k in range(levels)
        ])
        dec = []
        for j in reversed(range(levels)):  # block j maps resolution H/2^(j+1) -> H/2^j
            cin = w[levels - 1] if j == levels - 1 else 2 * w[j]
            dec.append(UpBlock(cin, w[j - 1] if j > 0 else w[0], config, rngs=rngs))
        self.decoder = nnx.List(dec)
        lin = nnx.Linear(w[-1], 1, kernel_init=nnx.initializers.orthogonal(), rngs=rngs)
        self.global_head = _d_layer(lin, config, rngs)
        self.pixel_head = _d_conv(w[0], 1, 1, config, rngs)
        self.u_head = _d_conv(w[0], 1, 1, config, rngs)

    def __call__(self, blurred: jax.Array, image: jax.Array) -> CFMDDiscriminatorOutput:
        blurred, image = jnp.asarray(blurred), jnp.asarray(image)
        cin = self.config.in_channels
        if blurred.ndim != 4 or blurred.shape[:3] != image.shape[:3] or blurred.shape[-1] + image.shape[-1] != cin:
            raise ValueError(
                f"CFMDDiscriminator expects blurred and image [B, H, W, C] with matching B, H, W and "
                f"{cin} channels together, got {tuple(blurred.shape)} and {tuple(image.shape)}"
            )
        _, h, w_, _ = blurred.shape
        m = 2 ** len(self.encoder)
        if h % m or w_ % m:
            raise ValueError(
                f"CFMDDiscriminator with {len(self.encoder)} levels needs H and W divisible by {m}, got {h}x{w_}; "
                "crop or pad the pair first"
            )
        x = jnp.concatenate([blurred, image.astype(blurred.dtype)], axis=-1)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        bottleneck = jax.nn.relu(x)
        global_logits = self.global_head(jnp.sum(bottleneck, axis=(1, 2)))[:, 0]
        d = x
        for i, block in enumerate(self.decoder):
            if i:
                d = jnp.concatenate([d, skips[len(skips) - 1 - i]], axis=-1)
            d = block(d)
        d = jax.nn.relu(d)
        return CFMDDiscriminatorOutput(global_logits, self.pixel_head(d)[..., 0], self.u_head(d)[..., 0])


# --------------------------------------------------------------------------------------------------
# parameter count report
# --------------------------------------------------------------------------------------------------


_STAGES = ("eb1", "eb2", "eb3", "db1", "db2", "db3")


def generator_breakdown(config: CFMDGeneratorConfig = CFMDGeneratorConfig()) -> dict[str, int]:
    """Parameter counts of the generator by part (shape-only: nothing is allocated)."""
    model = nnx.eval_shape(lambda: CFMDGenerator(config, rngs=nnx.Rngs(0)))
    top = parameter_breakdown(model, 1)
    out = {"total": count_params(model), "mapping network": top.pop("mapping")}
    out["ContAda blocks"] = sum(top.pop(s) for s in _STAGES)
    for s in _STAGES:
        out[f"  {s} (C={getattr(model, s).blocks.features if config.blocks_per_stage else 0})"] = (
            parameter_breakdown(getattr(model, s), 1).get("blocks", 0)
        )
    inner = parameter_breakdown(model, 3)
    for part in ("conv_in", "control_proj", "fuse", "cadc", "conv_dc", "caca"):
        n = sum(v for k, v in inner.items() if k.split("/")[1:] == ["blocks", part])
        if n:
            out[f"  all blocks: {part}"] = n
    out["MIMO-UNet rest (SCM, FAM, AFF, convs)"] = sum(top.values())
    for k, v in sorted(top.items()):
        out[f"  {k}"] = v
    return out


def _print_breakdown(title: str, rows: Sequence[tuple[str, int]]) -> None:
    print(title)
    for k, v in rows:
        print(f"  {k:<44s} {v:>12,d}")


if __name__ == "__main__":  # python -m restore_jax.methods.cfmd.model
    _print_breakdown("CFMDGenerator (paper configuration)", list(generator_breakdown().items()))
    for name, cfg in (
        ("  without CADC (use_deformable=False)", CFMDGeneratorConfig(use_deformable=False)),
        ("  without CACA (use_channel_attention=False)", CFMDGeneratorConfig(use_channel_attention=False)),
    ):
        print(f"{name:<46s} {generator_breakdown(cfg)['total']:>12,d}")
    d = nnx.eval_shape(lambda: CFMDDiscriminator(CFMDDiscriminatorConfig(), rngs=nnx.Rngs(0)))
    _print_breakdown("CFMDDiscriminator (default configuration)", sorted(parameter_breakdown(d, 2).items()))
    print(f"  {'total':<44s} {count_params(d):>12,d}")
