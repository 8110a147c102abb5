"""Zooming Slow-Mo re-stated in PyTorch (NCHW) from the architecture spec: the oracle of the parity tests
and the side-by-side reference of ``bench/zsm_bench.py`` (needs torch + torchvision, the ``dev`` extra).

Written from ``shared/docs/specs/seed_001_xiang_thesis.md`` §A.3 and ``peer_implementations.md``
§1.1 only (the official code is GPL and was not consulted). Module names are this file's own.
The structure, in the spec's words:

* feature extractor (shared over frames): conv 3->nf + LReLU(0.1), ``front_blocks`` residual blocks
  (conv-ReLU-conv + identity); pyramid L2, L3 = LReLU(conv stride 2) -> LReLU(conv);
* deformable feature interpolation per adjacent pair (a, b): PCD alignment a->b and b->a with separate
  weights; each direction, coarse to fine:
  L3: off = LReLU(conv(cat(a3, b3))), off = LReLU(conv(off)), fea3 = LReLU(DCN(a3, off));
  L2: off = LReLU(conv(cat(a2, b2))), off = LReLU(conv(cat(off, 2 up2(off3)))), off = LReLU(conv(off)),
      fea2 = LReLU(conv(cat(DCN(a2, off), up2(fea3))));
  L1: as L2 but the last (fusion) conv has no activation; blend = 1x1 conv on cat(T_ab, T_ba);
* DCN = DCNv2 "DCN_sep": a 3x3 conv on the offset feature gives 3*G*9 channels, chunked into o1, o2, m;
  offset = cat(o1, o2) read with torchvision's interleaved (dy, dx) layout, mask = sigmoid(m);
* bidirectional deformable ConvLSTM over [F1, F2*, F3, ...]: h and c are each aligned to the input by an
  "Easy PCD" (own pyramid, two-direction PCD (input->state, state->input), 1x1 fusion), one 3x3 conv on
  cat(x, h_aligned) gives i, f, o, g; c = s(f) c_al + s(i) tanh(g), h = s(o) tanh(c); zero initial
  states; the backward pass runs the *same* cell on the reversed sequence; cat(fwd, bwd) -> 1x1 conv;
* reconstruction (shared over frames): ``back_blocks`` residual blocks, 2 x (conv nf->4nf, pixel
  shuffle 2, LReLU), conv nf->nf + LReLU, conv nf->3; no global skip;
* GFI head (training only): rho = ``gfi_blocks`` residual blocks + conv nf->3. First order: rho of
  each interpolated feature; second order: the same interpolation module applied to consecutive
  interpolated features, then rho.

Inputs whose spatial size is not a multiple of 4 are replicate-padded at the bottom/right and the
outputs are cropped back (the convention of the JAX model under test).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torchvision.ops import deform_conv2d
except ImportError as _e:  # the re-statement is for tests and benches only
    raise ImportError(
        "restore_jax.methods.zsm.torch_ref (the PyTorch re-statement used by tests and bench/) needs torch and "
        "torchvision: pip install 'restore-jax[dev]'"
    ) from _e

_SLOPE = 0.1


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _SLOPE)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _c3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def _c1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


class ResBlock(nn.Module):
    """x + conv(ReLU(conv(x))), Kaiming-normal init scaled by 0.1, zero bias."""

    def __init__(self, nf: int):
        super().__init__()
        self.c1 = _c3(nf, nf)
        self.c2 = _c3(nf, nf)
        for conv in (self.c1, self.c2):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.relu(self.c1(x)))


class Pyramid(nn.Module):
    """L1 -> (L1, L2, L3), each coarser level LReLU(conv s2) -> LReLU(conv)."""

    def __init__(self, nf: int):
        super().__init__()
        self.down2 = _c3(nf, nf, stride=2)
        self.conv2 = _c3(nf, nf)
        self.down3 = _c3(nf, nf, stride=2)
        self.conv3 = _c3(nf, nf)

    def forward(self, l1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        l2 = _lrelu(self.conv2(_lrelu(self.down2(l1))))
        l3 = _lrelu(self.conv3(_lrelu(self.down3(l2))))
        return l1, l2, l3


class DCNSep(nn.Module):
    """Modulated deformable 3x3 conv whose offsets/mask come from a separate offset feature."""

    def __init__(self, nf: int, groups: int):
        super().__init__()
        self.groups = groups
        bound = 1.0 / np.sqrt(nf * 9)
        self.weight = nn.Parameter(torch.empty(nf, nf, 3, 3).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(nf))
        self.offset_mask = _c3(nf, 3 * groups * 9)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor, offset_feature: torch.Tensor) -> torch.Tensor:
        o1, o2, m = torch.chunk(self.offset_mask(offset_feature), 3, dim=1)
        offset = torch.cat([o1, o2], dim=1)
        return deform_conv2d(x, offset, self.weight, self.bias, padding=1, mask=torch.sigmoid(m))


class CoarseLevel(nn.Module):
    """L3 of one alignment direction."""

    def __init__(self, nf: int, groups: int):
        super().__init__()
        self.off1 = _c3(2 * nf, nf)
        self.off2 = _c3(nf, nf)
        self.dcn = DCNSep(nf, groups)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        off = _lrelu(self.off2(_lrelu(self.off1(torch.cat([a, b], 1)))))
        return _lrelu(self.dcn(a, off)), off


class FineLevel(nn.Module):
    """L2 or L1 of one alignment direction; ``last`` drops the activation after the fusion conv."""

    def __init__(self, nf: int, groups: int, last: bool):
        super().__init__()
        self.last = last
        self.off1 = _c3(2 * nf, nf)
        self.off2 = _c3(2 * nf, nf)
        self.off3 = _c3(nf, nf)
        self.dcn = DCNSep(nf, groups)
        self.merge = _c3(2 * nf, nf)

    def forward(self, a, b, coarse_off, coarse_fea) -> tuple[torch.Tensor, torch.Tensor]:
        off = _lrelu(self.off1(torch.cat([a, b], 1)))
        off = _lrelu(self.off2(torch.cat([off, 2.0 * _up2(coarse_off)], 1)))
        off = _lrelu(self.off3(off))
        fea = self.merge(torch.cat([self.dcn(a, off), _up2(coarse_fea)], 1))
        return (fea if self.last else _lrelu(fea)), off


class PCDOneWay(nn.Module):
    """Aligns pyramid ``a`` towards pyramid ``b``."""

    def __init__(self, nf: int, groups: int):
        super().__init__()
        self.lvl3 = CoarseLevel(nf, groups)
        self.lvl2 = FineLevel(nf, groups, last=False)
        self.lvl1 = FineLevel(nf, groups, last=True)

    def forward(self, a: tuple, b: tuple) -> torch.Tensor:
        fea3, off3 = self.lvl3(a[2], b[2])
        fea2, off2 = self.lvl2(a[1], b[1], off3, fea3)
        fea1, _ = self.lvl1(a[0], b[0], off2, fea2)
        return fea1


class TwoWayPCD(nn.Module):
    """(align a->b, align b->a), separate weights per direction."""

    def __init__(self, nf: int, groups: int):
        super().__init__()
        self.a_to_b = PCDOneWay(nf, groups)
        self.b_to_a = PCDOneWay(nf, groups)

    def forward(self, a: tuple, b: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a_to_b(a, b), self.b_to_a(b, a)


class EasyPCD(nn.Module):
    """Aligns a recurrent state to the current input: own pyramid, two-way PCD, 1x1 fusion."""

    def __init__(self, nf: int, groups: int):
        super().__init__()
        self.pyr = Pyramid(nf)
        self.align = TwoWayPCD(nf, groups)
        self.merge = _c1(2 * nf, nf)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        x_to_s, s_to_x = self.align(self.pyr(x), self.pyr(state))
        return self.merge(torch.cat([x_to_s, s_to_x], 1))


class DConvLSTMCell(nn.Module):
    def __init__(self, nf: int, groups: int):
        super().__init__()
        self.h_align = EasyPCD(nf, groups)
        self.c_align = EasyPCD(nf, groups)
        self.gates = _c3(2 * nf, 4 * nf)

    def forward(self, x, h, c) -> tuple[torch.Tensor, torch.Tensor]:
        h_al = self.h_align(x, h)
        c_al = self.c_align(x, c)
        i, f, o, g = torch.chunk(self.gates(torch.cat([x, h_al], 1)), 4, dim=1)
        c_new = torch.sigmoid(f) * c_al + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c_new), c_new


class ZSMTorch(nn.Module):
    """``[B, N, 3, h, w]`` LR frames -> ``[B, 2N-1, 3, 4h, 4w]``."""

    def __init__(self, nf: int = 64, groups: int = 8, front_blocks: int = 5, back_blocks: int = 40,
                 gfi: bool = False, gfi_blocks: int = 5):
        super().__init__()
        self.nf, self.gfi = nf, gfi
        self.stem = _c3(3, nf)
        self.front = nn.Sequential(*[ResBlock(nf) for _ in range(front_blocks)])
        self.pyr = Pyramid(nf)
        self.dfi_align = TwoWayPCD(nf, groups)
        self.dfi_blend = _c1(2 * nf, nf)
        self.rnn = DConvLSTMCell(nf, groups)
        self.bi_merge = _c1(2 * nf, nf)
        self.back = nn.Sequential(*[ResBlock(nf) for _ in range(back_blocks)])
        self.up1 = _c3(nf, 4 * nf)
        self.up2 = _c3(nf, 4 * nf)
        self.hr_conv = _c3(nf, nf)
        self.to_rgb = _c3(nf, 3)
        if gfi:
            self.gfi_body = nn.Sequential(*[ResBlock(nf) for _ in range(gfi_blocks)])
            self.gfi_rgb = _c3(nf, 3)

    @classmethod
    def from_config(cls, cfg: Any) -> ZSMTorch:
        """Build from any object with the JAX ``ZSMConfig`` field names."""
        return cls(cfg.nf, cfg.groups, cfg.front_blocks, cfg.back_blocks, cfg.gfi, cfg.gfi_blocks)

    def interpolate(self, pa: tuple, pb: tuple) -> torch.Tensor:
        t_ab, t_ba = self.dfi_align(pa, pb)
        return self.dfi_blend(torch.cat([t_ab, t_ba], 1))

    def _lstm(self, seq: list[torch.Tensor]) -> list[torch.Tensor]:
        h = torch.zeros_like(seq[0])
        c = torch.zeros_like(seq[0])
        out = []
        for x in seq:
            h, c = self.rnn(x, h, c)
            out.append(h)
        return out

    def _reconstruct(self, f: torch.Tensor) -> torch.Tensor:
        x = self.back(f)
        x = _lrelu(F.pixel_shuffle(self.up1(x), 2))
        x = _lrelu(F.pixel_shuffle(self.up2(x), 2))
        return self.to_rgb(_lrelu(self.hr_conv(x)))

    def rho(self, f: torch.Tensor) -> torch.Tensor:
        return self.gfi_rgb(self.gfi_body(f))

    def forward_with_aux(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, n, _, h, w = frames.shape
        ph, pw = (-h) % 4, (-w) % 4
        x = frames.reshape(b * n, 3, h, w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        feats = self.pyr(self.front(_lrelu(self.stem(x))))
        # per-frame pyramids: list over t of (L1, L2, L3), each [B, C, H', W']
        frame_pyr = [tuple(lv.reshape(b, n, *lv.shape[1:])[:, t] for lv in feats) for t in range(n)]
        interp = [self.interpolate(frame_pyr[t], frame_pyr[t + 1]) for t in range(n - 1)]
        seq: list[torch.Tensor] = []
        for t in range(n):
            seq.append(frame_pyr[t][0])
            if t < n - 1:
                seq.append(interp[t])
        fwd = self._lstm(seq)
        bwd = self._lstm(seq[::-1])[::-1]
        hr = torch.stack([self._reconstruct(self.bi_merge(torch.cat([hf, hb], 1))) for hf, hb in zip(fwd, bwd)], 1)
        hr = hr[..., : 4 * h, : 4 * w]
        aux: dict[str, torch.Tensor] = {}
        if self.gfi:
            aux["gfi_first"] = torch.stack([self.rho(f) for f in interp], 1)[..., :h, :w]
            if n >= 3:
                ipyr = [self.pyr(f) for f in interp]
                second = [self.rho(self.interpolate(ipyr[t], ipyr[t + 1])) for t in range(n - 2)]
                aux["gfi_second"] = torch.stack(second, 1)[..., :h, :w]
        return hr, aux

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(frames)[0]


# ------------------------------------------------------------------------------------------------
# Weight transplant from the NNX model (restore_jax.methods.zsm.model.ZoomingSlowMo)
# ------------------------------------------------------------------------------------------------

# (torch module path, NNX module path, kind); kind "conv" = Conv2d <- nnx.Conv (kernel, bias),
# "dcn" = DCNSep <- ModulatedDeformConv, "trunk:<n>" = Sequential of n ResBlocks <- ResidualTrunk.


def _pcd_dir(t: str, n: tuple) -> list[tuple[str, tuple, str]]:
    rows = [(f"{t}.lvl3.off1", n + ("l3", "offset_conv1"), "conv"),
            (f"{t}.lvl3.off2", n + ("l3", "offset_conv2"), "conv"),
            (f"{t}.lvl3.dcn", n + ("l3", "dcn"), "dcn")]
    for lv in ("2", "1"):
        nl = n + (f"l{lv}",)
        rows += [(f"{t}.lvl{lv}.off1", nl + ("offset_conv1",), "conv"),
                 (f"{t}.lvl{lv}.off2", nl + ("offset_conv2",), "conv"),
                 (f"{t}.lvl{lv}.off3", nl + ("offset_conv3",), "conv"),
                 (f"{t}.lvl{lv}.dcn", nl + ("dcn",), "dcn"),
                 (f"{t}.lvl{lv}.merge", nl + ("fea_conv",), "conv")]
    return rows


def _two_way(t: str, n: tuple) -> list:
    return _pcd_dir(f"{t}.a_to_b", n + ("forward_dir",)) + _pcd_dir(f"{t}.b_to_a", n + ("backward_dir",))


def _pyr(t: str, n: tuple) -> list:
    return [(f"{t}.down2", n + ("l2_conv1",), "conv"), (f"{t}.conv2", n + ("l2_conv2",), "conv"),
            (f"{t}.down3", n + ("l3_conv1",), "conv"), (f"{t}.conv3", n + ("l3_conv2",), "conv")]


def _easy(t: str, n: tuple) -> list:
    return _pyr(f"{t}.pyr", n + ("pyramid",)) + _two_way(f"{t}.align", n + ("pcd",)) + [
        (f"{t}.merge", n + ("fusion",), "conv")]


def module_map(front_blocks: int, back_blocks: int, gfi_blocks: int | None) -> list:
    """Every (torch module path, NNX module path, kind) pair of a ZSM with these block counts."""
    rows = [("stem", ("conv_first",), "conv"), ("front", ("feature_trunk",), f"trunk:{front_blocks}")]
    rows += _pyr("pyr", ("pyramid",)) + _two_way("dfi_align", ("interp_pcd",))
    rows += [("dfi_blend", ("interp_fusion",), "conv")]
    rows += _easy("rnn.h_align", ("lstm_cell", "pcd_h")) + _easy("rnn.c_align", ("lstm_cell", "pcd_c"))
    rows += [("rnn.gates", ("lstm_cell", "gates"), "conv"), ("bi_merge", ("lstm_fusion",), "conv"),
             ("back", ("recon_trunk",), f"trunk:{back_blocks}"),
             ("up1", ("upconv1",), "conv"), ("up2", ("upconv2",), "conv"),
             ("hr_conv", ("hr_conv",), "conv"), ("to_rgb", ("conv_last",), "conv")]
    if gfi_blocks is not None:
        rows += [("gfi_body", ("gfi_trunk",), f"trunk:{gfi_blocks}"), ("gfi_rgb", ("gfi_out",), "conv")]
    return rows


def _hwio_to_oihw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (3, 2, 0, 1)))


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def parameter_links(cfg: Any) -> list[tuple[str, tuple[str, ...], int | None, Any]]:
    """``(torch parameter name, NNX parameter path, block index or None, NNX->torch converter)``.

    One entry per torch parameter of ``ZSMTorch.from_config(cfg)``. The block index selects a slice
    of an NNX residual-trunk parameter, which ``nnx.vmap`` stacks on a leading block axis.
    """
    links = []

    def conv(t: str, n: tuple, index: int | None = None) -> None:
        links.append((f"{t}.weight", n + ("kernel",), index, _hwio_to_oihw))
        links.append((f"{t}.bias", n + ("bias",), index, _identity))

    gfi_blocks = cfg.gfi_blocks if cfg.gfi else None
    for t, n, kind in module_map(cfg.front_blocks, cfg.back_blocks, gfi_blocks):
        if kind == "conv":
            conv(t, n)
        elif kind == "dcn":
            conv(t, n)  # DCNSep.weight/.bias <- ModulatedDeformConv.kernel/.bias
            conv(f"{t}.offset_mask", n + ("conv_offset_mask",))
        elif kind.startswith("trunk:"):
            for i in range(int(kind.split(":")[1])):
                conv(f"{t}.{i}.c1", n + ("blocks", "conv1"), i)
                conv(f"{t}.{i}.c2", n + ("blocks", "conv2"), i)
        else:  # pragma: no cover
            raise AssertionError(kind)
    return links


def nnx_flat_params(nnx_model: Any) -> dict[tuple[str, ...], np.ndarray]:
    """``{path: array}`` of every ``nnx.Param`` of ``nnx_model``."""
    from flax import nnx

    out = {}
    for path, v in nnx.to_flat_state(nnx.state(nnx_model, nnx.Param)):
        out[tuple(str(k) for k in path)] = np.asarray(v.get_value() if hasattr(v, "get_value") else v.value)
    return out


@torch.no_grad()
def transplant_from_nnx(torch_model: ZSMTorch, nnx_model: Any) -> dict[str, int]:
    """Copy every ``nnx.Param`` of ``nnx_model`` into ``torch_model`` (HWIO -> OIHW).

    Asserts that each torch parameter is written exactly once, that each NNX parameter (each slice
    of a block-stacked trunk parameter) is read exactly once, and that shapes agree. Returns counts.
    """
    src = nnx_flat_params(nnx_model)
    dst = dict(torch_model.named_parameters())
    read: Counter = Counter()
    written: Counter = Counter()
    for tname, npath, index, convert in parameter_links(nnx_model.config):
        arr = src[npath] if index is None else src[npath][index]
        arr = convert(arr)
        param = dst[tname]
        if tuple(param.shape) != arr.shape:
            raise AssertionError(f"shape mismatch {tname} {tuple(param.shape)} <- {npath}[{index}] {arr.shape}")
        param.copy_(torch.from_numpy(np.array(arr, dtype=np.float32)))
        read[(npath, index)] += 1
        written[tname] += 1

    # exactly-once bookkeeping on both sides
    expected_reads: Counter = Counter()
    for path, arr in src.items():
        if "blocks" in path:  # stacked on a leading block axis by nnx.vmap
            for i in range(arr.shape[0]):
                expected_reads[(path, i)] = 1
        else:
            expected_reads[(path, None)] = 1
    if read != expected_reads:
        missing = sorted(set(expected_reads) - set(read), key=str)
        extra = [k for k, v in read.items() if expected_reads.get(k) != v]
        raise AssertionError(f"NNX params not read exactly once: missing={missing[:10]} extra={extra[:10]}")
    if set(written) != set(dst) or any(v != 1 for v in written.values()):
        raise AssertionError(f"torch params not written exactly once: {sorted(set(dst) - set(written))[:10]}")
    n_src = int(sum(a.size for a in src.values()))
    n_dst = int(sum(p.numel() for p in dst.values()))
    if n_src != n_dst:
        raise AssertionError(f"parameter count differs: NNX {n_src} vs torch {n_dst}")
    return {"nnx_arrays": len(src), "torch_tensors": len(dst), "scalars": n_dst}
