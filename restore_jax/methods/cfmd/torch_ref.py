"""CFMD-GAN networks re-stated in PyTorch (NCHW), as a test oracle and a benchmark reference.

Written from ``shared/docs/specs/seed_002_003_cfmd_and_deblur_rotate.md`` Part A (§A3.1-A3.3) and the
layer choices documented in ``restore_jax/methods/cfmd/README.md`` / ``restore_jax/methods/cfmd/model.py`` (no code from other
projects). Module names are this file's own. The structure, in the spec's words:

* generator ``G(b, u) = G_M + G_R``:

  - ``G_M``: ``u`` as a map ``u_2D [B, 1, H, W]`` through ``mapping_layers`` x (1x1 conv + LeakyReLU 0.2).
    With ``literal_mapping=True`` this runs on the full ``H x W`` map and every ContAda block resizes
    ``u_f`` bilinearly to its level and applies its 1x1 conv there (the paper's wording). The default
    runs the same convs on a ``1 x 1`` map and broadcasts the block's 1x1-conv output: every one of
    those operations maps a constant map to a constant map, so both give the same numbers (the
    parity test checks this too);
  - ``G_R``: MIMO-UNet (widths ``c1/c2/c4`` at scales 1, 1/2, 1/4) whose residual blocks are ContAda
    blocks; nearest x0.5 input pyramid, SCM, FAM, AFF, stride-2 3x3 convs down,
    ``ConvTranspose2d(k=4, s=2, p=1)`` up, three outputs ``conv3x3(feature) + resized input``;
  - ContAda block: ``F_o = LReLU(conv3x3(F_in))``, ``F_u = conv1x1(cat[F_o, u_f^n])``;
    CADC: ``Conv_off`` (2K = 18 channels, torchvision's (dy, dx) per tap) and ``Conv_msk`` (K = 9) are
    *separate* 3x3 convs on ``F_u``; ``F_dc = deform_conv2d(F_u, offset, W, mask=sigmoid(msk))``;
    CACA: ``a = sigmoid(conv1x1(ReLU(conv1x1(GAP(F_u)))))`` (RCAN, r = 16);
    ``out = F_in + F_dc * a``. Ablations: ``use_deformable=False`` (plain conv3x3 on ``F_u``),
    ``use_channel_attention=False`` (no ``* a``);
  - inputs whose size is not a multiple of 4 are padded at the bottom/right (replicate or reflect)
    and the outputs are cropped back to ``ceil(H/4)``, ``ceil(H/2)``, ``H`` (the convention of the
    JAX model under test).

* discriminator ``D(b, s)``: conditional U-Net discriminator on ``cat[b, s]`` (6 channels) with
  BigGAN residual blocks; every conv / linear wrapped in ``torch.nn.utils.spectral_norm`` (one power
  iteration per training-mode call: ``v = normalize(W^T u)``, ``u = normalize(W v)``,
  ``sigma = u^T W v``):

  - down block ``k``: ``avgpool2(conv3(ReLU(conv3(pre(x))))) + avgpool2(conv1x1(x))`` (``pre`` = ReLU
    except in the first block; BigGAN's shortcut order -- the JAX model pools first, the two commute);
  - up block: ``conv3(ReLU(conv3(up2(ReLU(x))))) + up2(conv1x1(x))``, nearest ``up2``; before every
    up block but the first the encoder output of the same resolution is concatenated;
  - heads: ``global = Linear(sum_hw ReLU(bottleneck))``, ``pixel = conv1x1(ReLU(dec))``,
    ``u_map = conv1x1(ReLU(dec))`` (Q, linear).

Evaluation-mode spectral norm: PyTorch uses its stored ``v`` (``sigma = u^T W v_stored``), the JAX
model ``sigma = ||W^T u||``. The two agree when ``v_stored = normalize(W^T u)``, which
:func:`sync_spectral_v` sets; :func:`transplant_from_nnx` calls it.

Weights come from the NNX models through :func:`transplant_from_nnx` (HWIO -> OIHW, Linear
``[in, out]`` -> ``[out, in]``, the NNX transposed-conv kernel flipped spatially, the stacked ContAda
blocks sliced, the 27-channel offset/mask conv split into ``Conv_off`` / ``Conv_msk``, spectral-norm
``u`` vectors copied into ``weight_u``).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, NamedTuple

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision.ops import deform_conv2d
except ImportError as _e:  # the re-statement is for tests and benches only
    raise ImportError(
        "restore_jax.methods.cfmd.torch_ref (the PyTorch re-statement used by tests and bench/) needs torch and "
        "torchvision: pip install 'restore-jax[dev]'"
    ) from _e

_TAPS = 9  # 3x3 deformable kernel


# ----------------------------------------------------------------------------------------------
# generator
# ----------------------------------------------------------------------------------------------


def _c(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    """Conv with bias and PyTorch's default init, padding ``k // 2``."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class Mapping(nn.Module):
    """``G_M``: ``layers`` x (1x1 conv + LeakyReLU) from the 1-channel ``u`` map to ``out`` channels."""

    def __init__(self, layers: int = 8, width: int = 64, out: int = 64, slope: float = 0.2):
        super().__init__()
        dims = [1] + [width] * (layers - 1) + [out]
        self.layers = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(dims[:-1], dims[1:]))
        self.slope = slope
        gain = math.sqrt(2.0 / (1.0 + slope**2))
        for conv in self.layers:  # He (LeakyReLU gain) uniform kernels, bias +-1/sqrt(fan_in)
            fan_in = conv.weight.shape[1]
            nn.init.uniform_(conv.weight, -gain * math.sqrt(3.0 / fan_in), gain * math.sqrt(3.0 / fan_in))
            nn.init.uniform_(conv.bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def forward(self, u_map: torch.Tensor) -> torch.Tensor:
        h = u_map
        for conv in self.layers:
            h = F.leaky_relu(conv(h), self.slope)
        return h


class ContAda(nn.Module):
    """Control-adaptive residual block (see the module docstring)."""

    def __init__(self, c: int, control: int = 64, *, deformable: bool = True, attention: bool = True,
                 reduction: int = 16, slope: float = 0.2):
        super().__init__()
        self.deformable, self.attention, self.slope = deformable, attention, slope
        self.conv_in = _c(c, c, 3)
        self.u_proj = nn.Conv2d(control, c, 1)
        self.fuse = nn.Conv2d(2 * c, c, 1)
        if deformable:
            self.conv_off = _c(c, 2 * _TAPS, 3)
            self.conv_msk = _c(c, _TAPS, 3)
            for conv in (self.conv_off, self.conv_msk):  # DCNv2: start at offset 0, mask 0.5
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            bound = 1.0 / math.sqrt(c * _TAPS)
            self.dcn_weight = nn.Parameter(torch.empty(c, c, 3, 3).uniform_(-bound, bound))
            self.dcn_bias = nn.Parameter(torch.zeros(c))
        else:
            self.conv_dc = _c(c, c, 3)
        if attention:
            hidden = max(1, c // reduction)
            self.ca_squeeze = nn.Conv2d(c, hidden, 1)
            self.ca_excite = nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor, u_f: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        f_o = F.leaky_relu(self.conv_in(x), self.slope)
        if u_f.shape[-2:] == (1, 1):  # constant map held as 1x1: the 1x1 conv, then broadcast
            u_n = self.u_proj(u_f).expand(-1, -1, h, w)
        else:  # literal: bilinear resize of the full map to this level, then the 1x1 conv
            u_n = self.u_proj(F.interpolate(u_f, size=(h, w), mode="bilinear", align_corners=False))
        f_u = self.fuse(torch.cat([f_o, u_n], 1))
        if self.deformable:
            offset = self.conv_off(f_u)
            mask = torch.sigmoid(self.conv_msk(f_u))
            f_dc = deform_conv2d(f_u, offset, self.dcn_weight, self.dcn_bias, padding=1, mask=mask)
        else:
            f_dc = self.conv_dc(f_u)
        if self.attention:
            a = torch.sigmoid(self.ca_excite(F.relu(self.ca_squeeze(f_u.mean(dim=(2, 3), keepdim=True)))))
            f_dc = f_dc * a
        return x + f_dc


class SCMTorch(nn.Module):
    """Shallow convolutional module on a down-scaled input image."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = _c(3, c // 4, 3)
        self.conv2 = _c(c // 4, c // 2, 1)
        self.conv3 = _c(c // 2, c // 2, 3)
        self.conv4 = _c(c // 2, c - 3, 1)
        self.fuse = _c(c, c, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        y = img
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            y = F.relu(conv(y))
        return self.fuse(torch.cat([img, y], 1))


class FAMTorch(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.merge = _c(c, c, 3)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return x1 + self.merge(x1 * x2)


class AFFTorch(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _c(cin, cout, 1)
        self.conv2 = _c(cout, cout, 3)

    def forward(self, *feats: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(torch.cat(feats, 1))))


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="nearest")


def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="nearest")


class CFMDGeneratorTorch(nn.Module):
    """``forward(blurred [B, 3, H, W], u [B]) -> [out_1/4, out_1/2, out_1]`` (NCHW)."""

    def __init__(self, widths=(32, 64, 128), blocks_per_stage: int = 8, mapping_layers: int = 8,
                 mapping_width: int = 64, control_features: int = 64, use_deformable: bool = True,
                 use_channel_attention: bool = True, attention_reduction: int = 16, lrelu_slope: float = 0.2,
                 pad_mode: str = "edge", literal_mapping: bool = False):
        super().__init__()
        c1, c2, c4 = widths
        self.pad_mode = {"edge": "replicate", "reflect": "reflect"}[pad_mode]
        self.literal_mapping = literal_mapping
        self.mapping = Mapping(mapping_layers, mapping_width, control_features, lrelu_slope)

        def stage(c: int) -> nn.ModuleList:
            return nn.ModuleList(
                ContAda(c, control_features, deformable=use_deformable, attention=use_channel_attention,
                        reduction=attention_reduction, slope=lrelu_slope)
                for _ in range(blocks_per_stage)
            )

        self.scm2, self.scm4 = SCMTorch(c2), SCMTorch(c4)
        self.feat_in = _c(3, c1, 3)
        self.eb1 = stage(c1)
        self.down2 = _c(c1, c2, 3, stride=2)
        self.fam2 = FAMTorch(c2)
        self.eb2 = stage(c2)
        self.down4 = _c(c2, c4, 3, stride=2)
        self.fam4 = FAMTorch(c4)
        self.eb3 = stage(c4)
        self.aff1 = AFFTorch(c1 + c2 + c4, c1)
        self.aff2 = AFFTorch(c1 + c2 + c4, c2)
        self.db1 = stage(c4)
        self.out4 = _c(c4, 3, 3)
        self.up2 = nn.ConvTranspose2d(c4, c2, 4, stride=2, padding=1)
        self.fuse2 = _c(2 * c2, c2, 1)
        self.db2 = stage(c2)
        self.out2 = _c(c2, 3, 3)
        self.up1 = nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)
        self.fuse1 = _c(2 * c1, c1, 1)
        self.db3 = stage(c1)
        self.out1 = _c(c1, 3, 3)

    @classmethod
    def from_config(cls, cfg: Any, *, literal_mapping: bool = False) -> CFMDGeneratorTorch:
        """From a ``restore_jax.methods.cfmd.model.CFMDGeneratorConfig`` (read by attribute)."""
        return cls(tuple(cfg.widths), cfg.blocks_per_stage, cfg.mapping_layers, cfg.mapping_width,
                   cfg.control_features, cfg.use_deformable, cfg.use_channel_attention, cfg.attention_reduction,
                   cfg.lrelu_slope, cfg.pad_mode, literal_mapping)

    def forward(self, blurred: torch.Tensor, u: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = blurred.shape
        x = blurred
        if h % 4 or w % 4:
            x = F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode=self.pad_mode)
        u = torch.as_tensor(u, dtype=x.dtype, device=x.device).reshape(-1)
        if u.numel() == 1:
            u = u.expand(b)
        map_size = x.shape[-2:] if self.literal_mapping else (1, 1)
        u_f = self.mapping(u.view(b, 1, 1, 1).expand(b, 1, *map_size))

        def run(blocks: nn.ModuleList, z: torch.Tensor) -> torch.Tensor:
            for block in blocks:
                z = block(z, u_f)
            return z

        x2 = _half(x)
        x4 = _half(x2)
        z2, z4 = self.scm2(x2), self.scm4(x4)
        res1 = run(self.eb1, F.relu(self.feat_in(x)))
        z = self.fam2(F.relu(self.down2(res1)), z2)
        res2 = run(self.eb2, z)
        z = self.fam4(F.relu(self.down4(res2)), z4)
        z = run(self.eb3, z)
        aff2 = self.aff2(_half(res1), res2, _up(z, 2))
        aff1 = self.aff1(res1, _up(res2, 2), _up(z, 4))
        z = run(self.db1, z)
        out4 = self.out4(z) + x4
        z = F.relu(self.up2(z))
        z = run(self.db2, F.relu(self.fuse2(torch.cat([z, aff2], 1))))
        out2 = self.out2(z) + x2
        z = F.relu(self.up1(z))
        z = run(self.db3, F.relu(self.fuse1(torch.cat([z, aff1], 1))))
        out1 = self.out1(z) + x
        return [out4[..., : -(-h // 4), : -(-w // 4)], out2[..., : -(-h // 2), : -(-w // 2)], out1[..., :h, :w]]


# ----------------------------------------------------------------------------------------------
# discriminator
# ----------------------------------------------------------------------------------------------


def _sn(layer: nn.Module, enabled: bool, n_power_iterations: int) -> nn.Module:
    nn.init.orthogonal_(layer.weight)  # BigGAN D init
    nn.init.zeros_(layer.bias)
    return nn.utils.spectral_norm(layer, n_power_iterations=n_power_iterations) if enabled else layer


class DownBlockTorch(nn.Module):
    def __init__(self, cin: int, cout: int, *, preactivation: bool, sn: bool, n_power_iterations: int):
        super().__init__()
        self.preactivation = preactivation
        self.conv1 = _sn(_c(cin, cout, 3), sn, n_power_iterations)
        self.conv2 = _sn(_c(cout, cout, 3), sn, n_power_iterations)
        self.conv_sc = _sn(_c(cin, cout, 1), sn, n_power_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.conv_sc(x), 2)


class UpBlockTorch(nn.Module):
    def __init__(self, cin: int, cout: int, *, sn: bool, n_power_iterations: int):
        super().__init__()
        self.conv1 = _sn(_c(cin, cout, 3), sn, n_power_iterations)
        self.conv2 = _sn(_c(cout, cout, 3), sn, n_power_iterations)
        self.conv_sc = _sn(_c(cin, cout, 1), sn, n_power_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(_up(F.relu(x), 2))))
        return h + _up(self.conv_sc(x), 2)


class DiscriminatorOutput(NamedTuple):
    global_logits: torch.Tensor  # [B]
    pixel_logits: torch.Tensor  # [B, H, W]
    u_map: torch.Tensor  # [B, H, W]


class CFMDDiscriminatorTorch(nn.Module):
    """``forward(blurred [B, 3, H, W], image [B, 3, H, W]) -> DiscriminatorOutput`` (NCHW in)."""

    def __init__(self, in_channels: int = 6, base_features: int = 64, channel_multipliers=(1, 2, 4, 8),
                 spectral_norm: bool = True, n_power_iterations: int = 1):
        super().__init__()
        w = [base_features * m for m in channel_multipliers]
        levels = len(w)
        kw = dict(sn=spectral_norm, n_power_iterations=n_power_iterations)
        self.encoder = nn.ModuleList(
            DownBlockTorch(in_channels if k == 0 else w[k - 1], w[k], preactivation=k > 0, **kw) for k in range(levels)
        )
        # decoder block i brings level L-1-i (resolution H / 2^(L-i)) up one octave; its input is the
        # bottleneck (i = 0) or [previous block, encoder output of that resolution]
        self.decoder = nn.ModuleList()
        for i in range(levels):
            level = levels - 1 - i
            cin = w[-1] if i == 0 else 2 * w[level]
            self.decoder.append(UpBlockTorch(cin, w[max(level - 1, 0)], **kw))
        self.global_head = _sn(nn.Linear(w[-1], 1), spectral_norm, n_power_iterations)
        self.pixel_head = _sn(_c(w[0], 1, 1), spectral_norm, n_power_iterations)
        self.u_head = _sn(_c(w[0], 1, 1), spectral_norm, n_power_iterations)

    @classmethod
    def from_config(cls, cfg: Any) -> CFMDDiscriminatorTorch:
        """From a ``restore_jax.methods.cfmd.model.CFMDDiscriminatorConfig`` (read by attribute)."""
        return cls(cfg.in_channels, cfg.base_features, tuple(cfg.channel_multipliers), cfg.spectral_norm,
                   cfg.n_power_iterations)

    def forward(self, blurred: torch.Tensor, image: torch.Tensor) -> DiscriminatorOutput:
        x = torch.cat([blurred, image], 1)
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        global_logits = self.global_head(F.relu(x).sum(dim=(2, 3)))[:, 0]
        d = x
        for i, block in enumerate(self.decoder):
            if i:
                d = torch.cat([d, skips[-1 - i]], 1)
            d = block(d)
        d = F.relu(d)
        return DiscriminatorOutput(global_logits, self.pixel_head(d)[:, 0], self.u_head(d)[:, 0])


def spectral_modules(model: nn.Module) -> list[nn.Module]:
    """Modules carrying a ``torch.nn.utils.spectral_norm`` (``weight_orig``/``weight_u``/``weight_v``)."""
    return [m for m in model.modules() if hasattr(m, "weight_u")]


@torch.no_grad()
def sync_spectral_v(model: nn.Module) -> None:
    """Set every stored ``v = normalize(W^T u)``: evaluation-mode sigma becomes ``||W^T u||`` (the JAX choice).

    Training-mode calls recompute ``v`` from ``u`` first, so this changes nothing there.
    """
    for m in spectral_modules(model):
        w = m.weight_orig.reshape(m.weight_orig.shape[0], -1)  # dim 0 for Conv2d and Linear
        m.weight_v.copy_(F.normalize(w.t() @ m.weight_u, dim=0, eps=1e-12))


# ----------------------------------------------------------------------------------------------
# transplant NNX -> torch
# ----------------------------------------------------------------------------------------------

_STAGES = ("eb1", "eb2", "eb3", "db1", "db2", "db3")


def _hwio_to_oihw(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (3, 2, 0, 1))


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _linear_to_conv1x1(a: np.ndarray) -> np.ndarray:  # [in, out] -> [out, in, 1, 1]
    return a.T[:, :, None, None]


def _linear_to_linear(a: np.ndarray) -> np.ndarray:  # [in, out] -> [out, in]
    return a.T


def _conv_transpose(a: np.ndarray) -> np.ndarray:
    # nnx.ConvTranspose applies [kh, kw, in, out] to the stride-dilated input without a flip; PyTorch's
    # [in, out, kh, kw] weight is the spatially flipped kernel.
    return np.transpose(a[::-1, ::-1], (2, 3, 0, 1))


def _out_slice(convert, lo: int, hi: int):
    """``convert`` then keep output channels ``lo:hi`` (axis 0 of an OIHW weight or of a bias)."""
    return lambda a: convert(a)[lo:hi]


Link = tuple[str, tuple[str, ...], "int | None", Any]


def generator_links(cfg: Any) -> list[Link]:
    """``(torch name, NNX path, block index or None, NNX -> torch converter)`` for every generator tensor.

    ``nnx.vmap`` stacks a stage's blocks on a leading axis: the block index selects the slice.
    """
    links: list[Link] = []

    def conv(t: str, n: tuple, index=None, kernel=_hwio_to_oihw) -> None:
        links.append((f"{t}.weight", n + ("kernel",), index, kernel))
        links.append((f"{t}.bias", n + ("bias",), index, _identity))

    for i in range(cfg.mapping_layers):
        conv(f"mapping.layers.{i}", ("mapping", "layers", str(i)), kernel=_linear_to_conv1x1)
    for s in ("scm2", "scm4"):
        for part in ("conv1", "conv2", "conv3", "conv4", "fuse"):
            conv(f"{s}.{part}", (s, part))
    for name in ("feat_in", "down2", "down4", "out4", "fuse2", "out2", "fuse1", "out1"):
        conv(name, (name,))
    for name in ("fam2", "fam4"):
        conv(f"{name}.merge", (name, "merge"))
    for name in ("aff1", "aff2"):
        conv(f"{name}.conv1", (name, "conv1"))
        conv(f"{name}.conv2", (name, "conv2"))
    for name in ("up2", "up1"):
        conv(name, (name,), kernel=_conv_transpose)
    for s in _STAGES:
        for i in range(cfg.blocks_per_stage):
            t, n = f"{s}.{i}", (s, "blocks")
            conv(f"{t}.conv_in", n + ("conv_in",), i)
            conv(f"{t}.u_proj", n + ("control_proj",), i, kernel=_linear_to_conv1x1)
            conv(f"{t}.fuse", n + ("fuse",), i)
            if cfg.use_deformable:
                om = n + ("cadc", "conv_offset_mask")
                for tname, lo, hi in (("conv_off", 0, 2 * _TAPS), ("conv_msk", 2 * _TAPS, 3 * _TAPS)):
                    links.append((f"{t}.{tname}.weight", om + ("kernel",), i, _out_slice(_hwio_to_oihw, lo, hi)))
                    links.append((f"{t}.{tname}.bias", om + ("bias",), i, _out_slice(_identity, lo, hi)))
                links.append((f"{t}.dcn_weight", n + ("cadc", "kernel"), i, _hwio_to_oihw))
                links.append((f"{t}.dcn_bias", n + ("cadc", "bias"), i, _identity))
            else:
                conv(f"{t}.conv_dc", n + ("conv_dc",), i)
            if cfg.use_channel_attention:
                conv(f"{t}.ca_squeeze", n + ("caca", "squeeze"), i, kernel=_linear_to_conv1x1)
                conv(f"{t}.ca_excite", n + ("caca", "excite"), i, kernel=_linear_to_conv1x1)
    return links


def discriminator_links(cfg: Any) -> list[Link]:
    """As :func:`generator_links`, for the discriminator; spectral-norm ``u`` vectors included.

    With spectral norm the torch tensors are ``<layer>.weight_orig`` / ``.bias`` / ``.weight_u``
    (buffer) and the NNX ones ``<layer>/layer/kernel``, ``<layer>/layer/bias``, ``<layer>/u``.
    """
    links: list[Link] = []
    sn = cfg.spectral_norm

    def layer(t: str, n: tuple, kernel=_hwio_to_oihw) -> None:
        inner = n + ("layer",) if sn else n
        links.append((f"{t}.weight_orig" if sn else f"{t}.weight", inner + ("kernel",), None, kernel))
        links.append((f"{t}.bias", inner + ("bias",), None, _identity))
        if sn:
            links.append((f"{t}.weight_u", n + ("u",), None, _identity))

    levels = len(cfg.channel_multipliers)
    for group in ("encoder", "decoder"):
        for k in range(levels):
            for part in ("conv1", "conv2", "conv_sc"):
                layer(f"{group}.{k}.{part}", (group, str(k), part))
    layer("global_head", ("global_head",), kernel=_linear_to_linear)
    layer("pixel_head", ("pixel_head",))
    layer("u_head", ("u_head",))
    return links


def nnx_flat_state(nnx_model: Any, *, spectral: bool = True) -> dict[tuple[str, ...], np.ndarray]:
    """``{path: array}`` of every ``nnx.Param`` (and, with ``spectral``, ``SpectralState``) of ``nnx_model``."""
    from flax import nnx

    from restore_jax.nn.spectral_norm import SpectralState

    out = {}
    for kind in (nnx.Param, SpectralState) if spectral else (nnx.Param,):
        for path, v in nnx.to_flat_state(nnx.state(nnx_model, kind)):
            out[tuple(str(k) for k in path)] = np.asarray(v.get_value() if hasattr(v, "get_value") else v.value)
    return out


@torch.no_grad()
def transplant_from_nnx(torch_model: nn.Module, nnx_model: Any, links: list[Link] | None = None) -> dict[str, int]:
    """Copy the NNX model's parameters (and spectral-norm ``u``) into ``torch_model``.

    ``links`` defaults to :func:`generator_links` / :func:`discriminator_links` of ``nnx_model.config``.
    Checks that every torch parameter and ``weight_u`` buffer is written exactly once, that every NNX
    tensor (every block slice of a stacked stage) is read, that shapes agree and that the scalar
    counts match. Afterwards the stored ``v`` vectors are synchronised (:func:`sync_spectral_v`).
    Returns counts (``scalars``: trainable scalars; ``spectral``: ``u`` scalars).
    """
    if links is None:
        cfg = nnx_model.config
        links = generator_links(cfg) if hasattr(cfg, "widths") and hasattr(cfg, "blocks_per_stage") \
            else discriminator_links(cfg)
    src = nnx_flat_state(nnx_model)
    dst = dict(torch_model.named_parameters())
    dst.update({k: v for k, v in torch_model.named_buffers() if k.endswith("weight_u")})
    read: set = set()
    written: Counter = Counter()
    for tname, npath, index, convert in links:
        if npath not in src:
            raise AssertionError(f"NNX tensor {'/'.join(npath)} not found (for torch {tname})")
        arr = src[npath] if index is None else src[npath][index]
        arr = np.array(convert(arr), copy=True, order="C")  # writable, contiguous
        if tname not in dst:
            raise AssertionError(f"torch tensor {tname} not found (from {'/'.join(npath)})")
        target = dst[tname]
        if tuple(target.shape) != arr.shape:
            raise AssertionError(f"shape mismatch {tname} {tuple(target.shape)} <- {npath}[{index}] {arr.shape}")
        target.copy_(torch.from_numpy(arr).to(target.dtype))
        read.add((npath, index))
        written[tname] += 1

    expected = set()
    for path, arr in src.items():
        if "blocks" in path:
            expected.update((path, i) for i in range(arr.shape[0]))
        else:
            expected.add((path, None))
    if read != expected:
        raise AssertionError(f"NNX tensors not read: {sorted(expected - read, key=str)[:10]}")
    if set(written) != set(dst) or any(v != 1 for v in written.values()):
        raise AssertionError(
            f"torch tensors not written exactly once: missing {sorted(set(dst) - set(written))[:10]}, "
            f"repeated {[k for k, v in written.items() if v != 1][:10]}"
        )
    n_params = int(sum(p.numel() for p in torch_model.parameters()))
    n_src = int(sum(a.size for a in nnx_flat_state(nnx_model, spectral=False).values()))
    if n_src != n_params:
        raise AssertionError(f"parameter count differs: NNX {n_src} vs torch {n_params}")
    sync_spectral_v(torch_model)
    return {"scalars": n_params, "spectral": int(sum(m.weight_u.numel() for m in spectral_modules(torch_model)))}
