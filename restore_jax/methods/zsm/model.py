"""Zooming Slow-Mo (method ``zsm``): one-stage space-time video super-resolution.

Re-stated from the engineering digest of Xiang et al. (thesis ch. 6; spec ``seed_001`` §A and
``peer_implementations`` §1.1). ``N`` low-resolution frames go in, ``2N - 1`` frames at ``scale``
(x4) come out: the missing in-between frames are synthesised in feature space.

Data flow (all convolutions 3x3 with bias unless noted, LeakyReLU(0.1) written LReLU):

1. Feature extractor, shared over frames: conv 3->nf + LReLU, ``front_blocks`` residual blocks, then
   a 3-level pyramid (L2, L3: LReLU(conv stride 2) -> LReLU(conv)).
2. Deformable feature interpolation: for each adjacent pair, a two-direction PCD alignment (separate
   weights per direction, DCNv2 with ``groups`` deformable groups and zero-initialised offset convs)
   gives two aligned features, blended by a 1x1 conv (2nf->nf).
3. Bidirectional deformable ConvLSTM over the 2N-1 features: hidden and cell states are each aligned
   to the current input by their own "Easy PCD" (own 2-level pyramid, two-direction PCD, 1x1 fusion);
   gates i, f, o, g from one conv (2nf->4nf). The backward pass reuses the forward weights on the
   reversed sequence; the two hidden sequences are fused by a 1x1 conv (2nf->nf).
4. Reconstruction, shared over frames: ``back_blocks`` residual blocks, two (conv nf->4nf, pixel
   shuffle x2, LReLU) stages, conv nf->nf + LReLU, conv nf->3. No global skip.

With ``nf=64, groups=8, front_blocks=5, back_blocks=40`` and no GFI head the network has exactly
11,102,771 parameters, the published 11.10 M. The optional GFI head (``gfi=True``, training only) maps
features back to LR RGB frames for the first- and second-order interpolation losses.

Inputs whose height/width are not multiples of 4 are edge-padded and the output is cropped back.

Options beyond the paper (``ZSMConfig``): ``unroll`` unrolls the residual-trunk and ConvLSTM scans
(same numbers; on XLA:CPU the rolled backward pass is many times slower); ``residual='bicubic'``
adds the bicubic + frame-averaging baseline to the output with a zero-initialised last conv, so
training starts at that baseline (default ``'none'``, the paper). ``forward_with_aux(...,
monitor_offsets=True)`` also returns the mean absolute deformable offset of each DCN layer (the
``zsm`` recipe logs it every step). The engine recipe is in :mod:`restore_jax.methods.zsm.recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from restore_jax.nn.deformable import ModulatedDeformConv
from restore_jax.ops.pixel import pixel_shuffle

_LRELU_SLOPE = 0.1
RESIDUALS = ("none", "bicubic")


def _lrelu(x: jnp.ndarray) -> jnp.ndarray:
    return jax.nn.leaky_relu(x, _LRELU_SLOPE)


def _conv(cin: int, cout: int, rngs: nnx.Rngs, *, k: int = 3, stride: int = 1, init_scale: float | None = None):
    """Conv with symmetric padding k//2 (as PyTorch's ``padding=k//2``, also for stride 2)."""
    if init_scale is None:
        # PyTorch's default conv init: kaiming_uniform(a=sqrt(5)) == variance_scaling(1/3, fan_in, uniform).
        kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    else:
        base = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
        kernel_init = lambda key, shape, dtype=jnp.float32: base(key, shape, dtype) * init_scale  # noqa: E731
    return nnx.Conv(cin, cout, (k, k), strides=stride, padding=k // 2, kernel_init=kernel_init, rngs=rngs)


def _deform(dcn: ModulatedDeformConv, x: jnp.ndarray, offset_feature: jnp.ndarray, stats: list | None) -> jnp.ndarray:
    """``dcn(x, offset_feature)``; with a ``stats`` list, also appends the layer's mean |offset| (pixels).

    The offsets are recomputed for the statistic (same conv, same operands: XLA's common
    sub-expression elimination merges the two) and kept out of the gradient.
    """
    if stats is not None:
        offset = dcn.offsets(offset_feature)[0]
        stats.append(jax.lax.stop_gradient(jnp.mean(jnp.abs(offset.astype(jnp.float32)))))
    return dcn(x, offset_feature)


def _up2(x: jnp.ndarray) -> jnp.ndarray:
    """Bilinear x2 with half-pixel centres and edge clamping (PyTorch ``align_corners=False``)."""
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), method="bilinear", antialias=False)


@dataclass(frozen=True)
class ZSMConfig:
    """Architecture hyper-parameters; the defaults are the paper's."""

    nf: int = 64
    groups: int = 8
    front_blocks: int = 5
    back_blocks: int = 40
    scale: int = 4
    gfi: bool = False
    gfi_blocks: int = 5
    # Unroll the residual-trunk and ConvLSTM scans (same numbers; much faster backward on XLA:CPU,
    # longer compile). See ResidualTrunk.
    unroll: bool = True
    # 'none' (the paper: no global skip) or 'bicubic': add the two-stage baseline (MATLAB bicubic x4
    # of each input frame, in-between frames = mean of the two neighbouring ones) to the output and
    # zero-initialise the last conv, so training starts exactly at the baseline. Not in the paper;
    # it makes short CPU trainings meaningful. No extra parameters.
    residual: str = "none"


class ResidualBlockNoBN(nnx.Module):
    """conv-ReLU-conv plus identity, no normalisation; Kaiming init scaled by 0.1."""

    def __init__(self, nf: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(nf, nf, rngs, init_scale=0.1)
        self.conv2 = _conv(nf, nf, rngs, init_scale=0.1)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return x + self.conv2(jax.nn.relu(self.conv1(x)))


class ResidualTrunk(nnx.Module):
    """``n`` residual blocks with stacked parameters, applied with ``lax.scan``.

    ``unroll=True`` unrolls the scan: the same parameters and numbers and a longer compile, but on
    XLA:CPU the backward pass of the rolled loop was measured ~25x slower than the unrolled one (6
    blocks of 32 channels, 14 x 16x16 inputs: 0.72 s vs 0.03 s). ``unroll=False`` keeps compile
    time flat in ``n`` (accelerators, very deep trunks).
    """

    def __init__(self, nf: int, n: int, *, unroll: bool = True, rngs: nnx.Rngs):
        @nnx.split_rngs(splits=n)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make(r: nnx.Rngs) -> ResidualBlockNoBN:
            return ResidualBlockNoBN(nf, rngs=r)

        self.n = n
        self.unroll = bool(unroll)
        self.blocks = make(rngs) if n else None

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if not self.n:
            return x
        graphdef, params = nnx.split(self.blocks)

        def body(h, block_params):
            return nnx.merge(graphdef, block_params)(h), None

        return jax.lax.scan(body, x, params, unroll=self.unroll)[0]


class PyramidFeatures(nnx.Module):
    """L1 -> (L1, L2, L3): two stride-2 stages, each LReLU(conv s2) -> LReLU(conv)."""

    def __init__(self, nf: int, *, rngs: nnx.Rngs):
        self.l2_conv1 = _conv(nf, nf, rngs, stride=2)
        self.l2_conv2 = _conv(nf, nf, rngs)
        self.l3_conv1 = _conv(nf, nf, rngs, stride=2)
        self.l3_conv2 = _conv(nf, nf, rngs)

    def __call__(self, l1: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        l2 = _lrelu(self.l2_conv2(_lrelu(self.l2_conv1(l1))))
        l3 = _lrelu(self.l3_conv2(_lrelu(self.l3_conv1(l2))))
        return l1, l2, l3


class PCDLevel(nnx.Module):
    """One pyramid level of one alignment direction."""

    def __init__(self, nf: int, groups: int, *, coarsest: bool, rngs: nnx.Rngs):
        self.coarsest = coarsest
        self.offset_conv1 = _conv(2 * nf, nf, rngs)
        if coarsest:
            self.offset_conv2 = _conv(nf, nf, rngs)
        else:
            self.offset_conv2 = _conv(2 * nf, nf, rngs)
            self.offset_conv3 = _conv(nf, nf, rngs)
            self.fea_conv = _conv(2 * nf, nf, rngs)
        self.dcn = ModulatedDeformConv(nf, nf, deformable_groups=groups, rngs=rngs)


class PCDDirection(nnx.Module):
    """Aligns ``a`` to ``b`` coarse to fine (EDVR-style PCD without the extra cascading DCN)."""

    def __init__(self, nf: int, groups: int, *, rngs: nnx.Rngs):
        self.l3 = PCDLevel(nf, groups, coarsest=True, rngs=rngs)
        self.l2 = PCDLevel(nf, groups, coarsest=False, rngs=rngs)
        self.l1 = PCDLevel(nf, groups, coarsest=False, rngs=rngs)

    def __call__(self, a: tuple, b: tuple, stats: list | None = None) -> jnp.ndarray:
        a1, a2, a3 = a
        b1, b2, b3 = b
        off3 = _lrelu(self.l3.offset_conv1(jnp.concatenate([a3, b3], -1)))
        off3 = _lrelu(self.l3.offset_conv2(off3))
        fea3 = _lrelu(_deform(self.l3.dcn, a3, off3, stats))

        off2 = _lrelu(self.l2.offset_conv1(jnp.concatenate([a2, b2], -1)))
        off2 = _lrelu(self.l2.offset_conv2(jnp.concatenate([off2, 2.0 * _up2(off3)], -1)))
        off2 = _lrelu(self.l2.offset_conv3(off2))
        fea2 = _deform(self.l2.dcn, a2, off2, stats)
        fea2 = _lrelu(self.l2.fea_conv(jnp.concatenate([fea2, _up2(fea3)], -1)))

        off1 = _lrelu(self.l1.offset_conv1(jnp.concatenate([a1, b1], -1)))
        off1 = _lrelu(self.l1.offset_conv2(jnp.concatenate([off1, 2.0 * _up2(off2)], -1)))
        off1 = _lrelu(self.l1.offset_conv3(off1))
        fea1 = _deform(self.l1.dcn, a1, off1, stats)
        return self.l1.fea_conv(jnp.concatenate([fea1, _up2(fea2)], -1))


class BidirectionalPCD(nnx.Module):
    """Aligns a->b and b->a with separate weights; returns both aligned features."""

    def __init__(self, nf: int, groups: int, *, rngs: nnx.Rngs):
        self.forward_dir = PCDDirection(nf, groups, rngs=rngs)
        self.backward_dir = PCDDirection(nf, groups, rngs=rngs)

    def __call__(self, a: tuple, b: tuple, stats: list | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
        return self.forward_dir(a, b, stats), self.backward_dir(b, a, stats)


class EasyPCD(nnx.Module):
    """Own pyramid for both inputs, two-direction PCD, 1x1 fusion: aligns a state to the input."""

    def __init__(self, nf: int, groups: int, *, rngs: nnx.Rngs):
        self.pyramid = PyramidFeatures(nf, rngs=rngs)
        self.pcd = BidirectionalPCD(nf, groups, rngs=rngs)
        self.fusion = _conv(2 * nf, nf, rngs, k=1)

    def __call__(self, x: jnp.ndarray, state: jnp.ndarray, stats: list | None = None) -> jnp.ndarray:
        # One pyramid pass for both inputs (batched), then split.
        levels = self.pyramid(jnp.concatenate([x, state], axis=0))
        b = x.shape[0]
        xs = tuple(lv[:b] for lv in levels)
        ss = tuple(lv[b:] for lv in levels)
        aligned_x, aligned_s = self.pcd(xs, ss, stats)
        return self.fusion(jnp.concatenate([aligned_x, aligned_s], -1))


class DeformableConvLSTMCell(nnx.Module):
    """ConvLSTM cell whose hidden and cell states are first aligned to the input."""

    def __init__(self, nf: int, groups: int, *, rngs: nnx.Rngs):
        self.pcd_h = EasyPCD(nf, groups, rngs=rngs)
        self.pcd_c = EasyPCD(nf, groups, rngs=rngs)
        self.gates = _conv(2 * nf, 4 * nf, rngs)

    def __call__(
        self, x: jnp.ndarray, h: jnp.ndarray, c: jnp.ndarray, stats: list | None = None
    ) -> tuple[jnp.ndarray, jnp.ndarray]:
        h_aligned = self.pcd_h(x, h, stats)
        c_aligned = self.pcd_c(x, c, stats)
        i, f, o, g = jnp.split(self.gates(jnp.concatenate([x, h_aligned], -1)), 4, axis=-1)
        c_new = jax.nn.sigmoid(f) * c_aligned + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        return h_new, c_new


class ZoomingSlowMo(nnx.Module):
    """``[B, N, h, w, 3]`` LR frames -> ``[B, 2N-1, scale*h, scale*w, 3]`` HR frames."""

    def __init__(self, config: ZSMConfig = ZSMConfig(), *, rngs: nnx.Rngs):
        if config.scale != 4:
            raise ValueError(f"ZoomingSlowMo upsamples by two pixel-shuffle x2 stages: scale must be 4, got {config.scale}")
        if config.residual not in RESIDUALS:
            raise ValueError(f"ZSMConfig.residual must be one of {RESIDUALS}, got {config.residual!r}")
        nf, groups = config.nf, config.groups
        self.config = config
        self.conv_first = _conv(3, nf, rngs)
        self.feature_trunk = ResidualTrunk(nf, config.front_blocks, unroll=config.unroll, rngs=rngs)
        self.pyramid = PyramidFeatures(nf, rngs=rngs)
        self.interp_pcd = BidirectionalPCD(nf, groups, rngs=rngs)
        self.interp_fusion = _conv(2 * nf, nf, rngs, k=1)
        self.lstm_cell = DeformableConvLSTMCell(nf, groups, rngs=rngs)
        self.lstm_fusion = _conv(2 * nf, nf, rngs, k=1)
        self.recon_trunk = ResidualTrunk(nf, config.back_blocks, unroll=config.unroll, rngs=rngs)
        self.upconv1 = _conv(nf, 4 * nf, rngs)
        self.upconv2 = _conv(nf, 4 * nf, rngs)
        self.hr_conv = _conv(nf, nf, rngs)
        self.conv_last = _conv(nf, 3, rngs)
        if config.residual == "bicubic":
            self.conv_last.kernel.value = jnp.zeros_like(self.conv_last.kernel.value)
            self.conv_last.bias.value = jnp.zeros_like(self.conv_last.bias.value)
        if config.gfi:
            self.gfi_trunk = ResidualTrunk(nf, config.gfi_blocks, unroll=config.unroll, rngs=rngs)
            self.gfi_out = _conv(nf, 3, rngs)

    # -- pieces ---------------------------------------------------------------------------------
    def _interpolate(self, fa: tuple, fb: tuple, stats: list | None = None) -> jnp.ndarray:
        ta, tb = self.interp_pcd(fa, fb, stats)
        return self.interp_fusion(jnp.concatenate([ta, tb], -1))

    def _bidirectional_lstm(self, seq: jnp.ndarray, monitor: bool = False) -> tuple[jnp.ndarray, jnp.ndarray | None]:
        """``seq [T, B, h, w, nf]`` -> fused hidden states ``[T, B, h, w, nf]`` and, with ``monitor``,
        the mean |offset| of each of the cell's DCN layers over all time steps (``[n_layers]``)."""
        # Forward and backward passes share weights: run them as one batch of 2B sequences.
        both = jnp.concatenate([seq, seq[::-1]], axis=1)
        graphdef, state = nnx.split(self.lstm_cell)

        def step(carry, x_t):
            stats: list | None = [] if monitor else None
            h, c = nnx.merge(graphdef, state)(x_t, *carry, stats)
            return (h, c), (h, jnp.stack(stats) if monitor else None)

        zeros = jnp.zeros_like(both[0])
        _, (hs, step_stats) = jax.lax.scan(step, (zeros, zeros), both, unroll=self.config.unroll)
        b = seq.shape[1]
        forward_h, backward_h = hs[:, :b], hs[::-1, b:]
        fused = self.lstm_fusion(jnp.concatenate([forward_h, backward_h], -1))
        # Every step sees the same number of offsets, so the mean over steps is the layer's mean.
        return fused, (jnp.mean(step_stats, axis=0) if monitor else None)

    def _reconstruct(self, feats: jnp.ndarray) -> jnp.ndarray:
        x = self.recon_trunk(feats)
        x = _lrelu(pixel_shuffle(self.upconv1(x), 2))
        x = _lrelu(pixel_shuffle(self.upconv2(x), 2))
        return self.conv_last(_lrelu(self.hr_conv(x)))

    def _gfi_rgb(self, feats: jnp.ndarray) -> jnp.ndarray:
        return self.gfi_out(self.gfi_trunk(feats))

    # -- forward --------------------------------------------------------------------------------
    def forward_with_aux(
        self, frames: jnp.ndarray, *, monitor_offsets: bool = False
    ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
        """HR frames plus, with ``gfi=True``, the GFI head's LR predictions.

        ``monitor_offsets=True`` adds ``aux['offset_abs_layers']`` (``[18]``: for each DCN layer of
        the main forward pass, in order the 6 of the interpolation PCD then the 12 of the ConvLSTM
        cell, the mean absolute predicted offset in LR pixels over everything that layer processed),
        ``aux['offset_abs_mean']`` (their mean) and ``aux['offset_abs_max']`` (their maximum); all
        outside the gradient.

        ``aux['gfi_first']``  ``[B, N-1, h, w, 3]``: rho of the interpolated features (targets: LR
        frames 2, 4, ... of the full sequence). ``aux['gfi_second']`` ``[B, N-2, h, w, 3]``: rho of
        features re-interpolated from consecutive interpolated ones (targets: LR frames 3, 5, ...).
        """
        if frames.ndim != 5 or frames.shape[-1] != 3 or frames.shape[1] < 2:
            raise ValueError(f"ZoomingSlowMo expects frames [B, N>=2, h, w, 3], got shape {tuple(frames.shape)}")
        b, n, h, w, _ = frames.shape
        inputs = frames
        ph, pw = (-h) % 4, (-w) % 4
        if ph or pw:
            frames = jnp.pad(frames, ((0, 0), (0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        hp, wp = h + ph, w + pw
        nf = self.config.nf

        flat = frames.reshape(b * n, hp, wp, 3)
        l1 = self.feature_trunk(_lrelu(self.conv_first(flat)))
        levels = [lv.reshape(b, n, *lv.shape[1:]) for lv in self.pyramid(l1)]

        def pairs(level_list, first, second):
            return tuple(lv[:, first].reshape(-1, *lv.shape[2:]) for lv in level_list), tuple(
                lv[:, second].reshape(-1, *lv.shape[2:]) for lv in level_list
            )

        # All N-1 adjacent pairs at once, batched as (B*(N-1)).
        fa, fb = pairs(levels, slice(0, n - 1), slice(1, n))
        interp_stats: list | None = [] if monitor_offsets else None
        interp = self._interpolate(fa, fb, interp_stats).reshape(b, n - 1, hp, wp, nf)

        seq = jnp.zeros((b, 2 * n - 1, hp, wp, nf), l1.dtype)
        seq = seq.at[:, 0::2].set(levels[0]).at[:, 1::2].set(interp)
        fused, lstm_stats = self._bidirectional_lstm(seq.transpose(1, 0, 2, 3, 4), monitor_offsets)
        fused = fused.transpose(1, 0, 2, 3, 4)

        t = 2 * n - 1
        hr = self._reconstruct(fused.reshape(b * t, hp, wp, nf))
        s = self.config.scale
        hr = hr.reshape(b, t, hp * s, wp * s, 3)[:, :, : h * s, : w * s]
        if self.config.residual == "bicubic":
            hr = hr + two_stage_baseline(inputs, s).astype(hr.dtype)

        aux: dict[str, jnp.ndarray] = {}
        if monitor_offsets:
            layers = jnp.concatenate([jnp.stack(interp_stats), lstm_stats])
            aux.update(offset_abs_layers=layers, offset_abs_mean=jnp.mean(layers), offset_abs_max=jnp.max(layers))
        if self.config.gfi:
            first = self._gfi_rgb(interp.reshape(b * (n - 1), hp, wp, nf))
            aux["gfi_first"] = first.reshape(b, n - 1, hp, wp, 3)[:, :, :h, :w]
            if n >= 3:
                # Second order: interpolate between consecutive interpolated features.
                ilevels = [lv.reshape(b, n - 1, *lv.shape[1:]) for lv in self.pyramid(interp.reshape(-1, hp, wp, nf))]
                ia, ib = pairs(ilevels, slice(0, n - 2), slice(1, n - 1))
                second = self._gfi_rgb(self._interpolate(ia, ib))
                aux["gfi_second"] = second.reshape(b, n - 2, hp, wp, 3)[:, :, :h, :w]
        return hr, aux

    def __call__(self, frames: jnp.ndarray) -> jnp.ndarray:
        return self.forward_with_aux(frames)[0]


def two_stage_baseline(frames: jnp.ndarray, scale: int = 4) -> jnp.ndarray:
    """``[B, N, h, w, 3]`` -> ``[B, 2N-1, scale*h, scale*w, 3]``: MATLAB bicubic x``scale`` of every
    frame, with the mean of each pair of neighbouring bicubic frames in between."""
    from restore_jax.ops.resize import imresize_up_integer

    b, n, h, w, c = frames.shape
    up = imresize_up_integer(frames.reshape(b * n, h, w, c), scale).reshape(b, n, h * scale, w * scale, c)
    mid = 0.5 * (up[:, :-1] + up[:, 1:])
    # interleave: [f0, m01, f1, m12, ...]
    both = jnp.stack([up[:, :-1], mid], axis=2).reshape(b, 2 * (n - 1), h * scale, w * scale, c)
    return jnp.concatenate([both, up[:, -1:]], axis=1)
