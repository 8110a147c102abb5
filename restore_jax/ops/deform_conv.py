"""Modulated deformable convolution (DCNv2) in NHWC, as a pure jittable, differentiable function.

Layout (NHWC / HWIO)
    ``x [B, H, W, Cin]``, ``kernel [kh, kw, Cin, Cout]``, ``bias [Cout]``, output ``[B, Ho, Wo, Cout]``
    with ``Ho = (H + 2*pad_h - dil_h*(kh-1) - 1) // stride_h + 1`` (same for ``Wo``).

    ``offset [B, Ho, Wo, 2*G*kh*kw]`` and ``mask [B, Ho, Wo, G*kh*kw]`` use the channel order of
    ``torchvision.ops.deform_conv2d`` and of the DCNv2 CUDA op, moved to the last axis: for deformable
    group ``g`` and kernel tap ``k = ky*kw + kx``, channel ``2*(g*kh*kw + k)`` is the row offset ``dy``,
    channel ``2*(g*kh*kw + k) + 1`` the column offset ``dx``, and mask channel ``g*kh*kw + k`` the
    modulation scalar (already in ``[0, 1]``, e.g. after a sigmoid). Input channel ``c`` belongs to
    group ``c // (Cin // G)``. Weights ported from PyTorch (``[Cout, Cin, kh, kw]``) become HWIO with
    ``w.transpose(2, 3, 1, 0)``.

Sampling
    Output pixel ``(oy, ox)``, tap ``(ky, kx)``, group ``g`` reads ``x`` at
    ``y = oy*stride_h - pad_h + ky*dil_h + dy`` and ``x = ox*stride_w - pad_w + kx*dil_w + dx`` (pixel
    centres at integers) by bilinear interpolation where each of the four corner neighbours outside
    the image contributes zero (:func:`restore_jax.ops.sampling.bilinear_corners`), multiplied by the
    mask. The sampled "columns" are contracted with the kernel over (tap, input channel) in one matrix
    product. Coordinates and corner weights are computed in float32 (float64 under x64) whatever the
    input dtype; the kernel is cast to ``x``'s dtype, the matrix product accumulates in float32 and
    the output has ``x``'s dtype. Differentiable in reverse mode (custom VJP; ``jax.jvp`` is not
    supported).

Memory
    The dominant intermediate is the "columns" tensor of ``B*Ho*Wo*kh*kw*Cin`` elements in ``x``'s
    dtype (B=8, 64x64, 3x3, Cin=64: 18.9M elements, 75 MB in float32), contracted with the kernel
    reshaped to ``[kh*kw*Cin, Cout]`` in one matrix product. The four bilinear corners are gathered
    and weighted before the columns are materialised, so no ``4x`` corner tensor is formed. The int32
    index and float32 weight tensors add ``2 * B*Ho*Wo*kh*kw*G*4`` elements (as much as the columns
    when ``Cin == 8*G``). A custom VJP keeps only those indices and weights as residuals and
    re-gathers one corner at a time in the backward pass. Measured XLA:CPU temporaries at the size
    above: forward 227 MB (~3x columns), gradient w.r.t. all inputs 453 MB (~6x columns).

    To bound memory pass ``chunk_rows=r``: output rows are processed ``r`` at a time in a
    ``lax.map`` whose body is rematerialised in the backward pass, so every term above scales with
    ``r / Ho`` (the example with ``r=16``: 93 MB forward, 184 MB gradient) at the cost of a
    sequential loop over ``ceil(Ho / r)`` chunks. Splitting the batch works the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from restore_jax.ops.sampling import bilinear_corners

IntOrPair = int | Sequence[int]


def _pair(value: IntOrPair, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        pair = (value, value)
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"deform_conv2d: {name} must be an int or a (h, w) pair, got {value!r}")
    return pair  # type: ignore[return-value]


def _columns(
    x: jnp.ndarray,
    offset: jnp.ndarray,
    mask: jnp.ndarray | None,
    row_start: jnp.ndarray | int,
    *,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> jnp.ndarray:
    """Modulated bilinear samples ``[B, R, Wo, kh*kw*Cin]`` for output rows ``row_start .. row_start+R-1``.

    ``offset [B, R, Wo, 2*G*K]`` and ``mask [B, R, Wo, G*K]`` hold those rows only. The last axis is
    ordered (tap, group, channel-in-group), i.e. (tap, input channel), matching an HWIO kernel
    reshaped to ``[kh*kw*Cin, Cout]``.
    """
    b, h, w, cin = x.shape
    _, rows, wo, _ = offset.shape
    kh, kw = kernel_size
    k = kh * kw
    cg = cin // groups
    coord_dtype = jnp.promote_types(jnp.promote_types(offset.dtype, x.dtype), jnp.float32)

    # [B, R, Wo, G, K, 2] -> dy, dx of shape [B, R, Wo, K, G] (tap-major to match the kernel).
    off = offset.astype(coord_dtype).reshape(b, rows, wo, groups, k, 2)
    dy = jnp.swapaxes(off[..., 0], -1, -2)
    dx = jnp.swapaxes(off[..., 1], -1, -2)
    taps = jnp.arange(k)
    oy = row_start + jnp.arange(rows)
    ox = jnp.arange(wo)
    base_y = (oy * stride[0] - padding[0])[:, None] + (taps // kw) * dilation[0]  # [R, K]
    base_x = (ox * stride[1] - padding[1])[:, None] + (taps % kw) * dilation[1]  # [Wo, K]
    ys = base_y.astype(coord_dtype)[None, :, None, :, None] + dy
    xs = base_x.astype(coord_dtype)[None, None, :, :, None] + dx
    flat, weights = bilinear_corners(h, w, ys, xs)  # [B, R, Wo, K, G, 4]
    if mask is not None:
        m = jnp.swapaxes(mask.astype(coord_dtype).reshape(b, rows, wo, groups, k), -1, -2)
        weights = weights * m[..., None]

    # One row per (pixel, group) in x: row index = (b*H*W + pixel)*G + g.
    x_rows = x.reshape(b * h * w * groups, cg)
    bi = (jnp.arange(b, dtype=jnp.int32) * (h * w))[:, None, None, None, None, None]
    gi = jnp.arange(groups, dtype=jnp.int32)[:, None]
    index = (bi + flat) * groups + gi  # [B, R, Wo, K, G, 4]
    cols = _gather_combine(x_rows, index, weights.astype(jnp.promote_types(x.dtype, jnp.float32)))
    return cols.astype(x.dtype).reshape(b, rows, wo, k * cin)


def _combine_corners(x_rows: jnp.ndarray, index: jnp.ndarray, weights: jnp.ndarray, *, loop: bool) -> jnp.ndarray:
    """``sum_q weights[..., q] * x_rows[index[..., q]]`` -> ``[..., C]`` in ``weights``' dtype.

    ``loop=False`` gathers and weights the four corners in one fused elementwise loop (no
    ``[..., 4, C]`` tensor, one pass over the output); used off CPU, where recomputing the index and
    weight per output element inside the fusion should be cheap (not benchmarked here: no GPU).
    ``loop=True`` walks the corners in a ``fori_loop`` whose boundary makes XLA:CPU materialise the
    indices and weights once instead of recomputing them for every channel inside the gather fusion;
    it measured 1.4-2x faster on a shared 2-core CPU.
    """
    if loop:
        corner_index = jnp.moveaxis(index, -1, 0)
        corner_weights = jnp.moveaxis(weights, -1, 0)

        def body(q, acc):
            v = x_rows.at[corner_index[q]].get(mode="promise_in_bounds").astype(weights.dtype)
            return acc + v * corner_weights[q][..., None]

        init = jnp.zeros(index.shape[:-1] + x_rows.shape[-1:], weights.dtype)
        return lax.fori_loop(0, 4, body, init)
    out = None
    for q in range(4):
        v = x_rows.at[index[..., q]].get(mode="promise_in_bounds").astype(weights.dtype)
        out = v * weights[..., q, None] if out is None else out + v * weights[..., q, None]
    return out


@jax.custom_vjp
def _gather_combine(x_rows: jnp.ndarray, index: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """:func:`_combine_corners` with the per-platform strategy and a memory-lean custom VJP.

    The VJP keeps only the (small) indices and weights as residuals and re-gathers one corner at a
    time in the backward pass, instead of saving the four gathered corners.
    """
    return lax.platform_dependent(
        x_rows, index, weights,
        cpu=lambda *a: _combine_corners(*a, loop=True),
        default=lambda *a: _combine_corners(*a, loop=False),
    )


def _gather_combine_fwd(x_rows, index, weights):
    return _gather_combine(x_rows, index, weights), (x_rows, index, weights)


def _gather_combine_bwd(res, g):
    x_rows, index, weights = res
    g = g.astype(weights.dtype)
    corner_index = jnp.moveaxis(index, -1, 0)
    corner_weights = jnp.moveaxis(weights, -1, 0)

    # A loop over the corners (rather than an unrolled sum) keeps one corner's gathered values and
    # scatter updates alive at a time and stops XLA from sharing the gathers with the forward pass.
    def body(q, carry):
        d_rows, d_weights = carry
        idx = corner_index[q]
        v = x_rows.at[idx].get(mode="promise_in_bounds").astype(weights.dtype)
        d_weights = d_weights.at[q].set(jnp.sum(v * g, axis=-1))
        d_rows = d_rows.at[idx].add(corner_weights[q][..., None] * g, mode="promise_in_bounds")
        return d_rows, d_weights

    init = (jnp.zeros(x_rows.shape, weights.dtype), jnp.zeros(corner_weights.shape, weights.dtype))
    d_rows, d_weights = lax.fori_loop(0, 4, body, init)
    return d_rows.astype(x_rows.dtype), None, jnp.moveaxis(d_weights, 0, -1)


_gather_combine.defvjp(_gather_combine_fwd, _gather_combine_bwd)


def deform_conv2d(
    x: jnp.ndarray,
    offset: jnp.ndarray,
    mask: jnp.ndarray | None,
    kernel: jnp.ndarray,
    bias: jnp.ndarray | None = None,
    *,
    stride: IntOrPair = 1,
    padding: IntOrPair = 1,
    dilation: IntOrPair = 1,
    deformable_groups: int = 1,
    chunk_rows: int | None = None,
    precision: lax.PrecisionLike = None,
) -> jnp.ndarray:
    """Modulated deformable convolution (DCNv2; DCNv1 when ``mask`` is None), NHWC.

    Args:
      x: ``[B, H, W, Cin]`` input.
      offset: ``[B, Ho, Wo, 2*G*kh*kw]`` sampling offsets, torchvision channel order (see module doc).
      mask: ``[B, Ho, Wo, G*kh*kw]`` modulation in ``[0, 1]``, or None for all ones.
      kernel: ``[kh, kw, Cin, Cout]`` (HWIO).
      bias: optional ``[Cout]``.
      stride, padding, dilation: int or ``(h, w)`` pair.
      deformable_groups: ``G``; ``Cin`` must be divisible by it.
      chunk_rows: process this many output rows at a time to bound the columns memory
        (``B*chunk_rows*Wo*kh*kw*Cin`` elements); None processes the whole image at once.
      precision: passed to the final matrix product (e.g. ``lax.Precision.HIGHEST`` on TPU/GPU).

    Returns:
      ``[B, Ho, Wo, Cout]`` in ``x``'s dtype.

    Peak memory of the columns tensor is ``B*Ho*Wo*kh*kw*Cin`` elements (the four bilinear corners are
    combined before it is materialised); see the module docstring for measured totals and chunking.
    """
    x, offset, kernel = jnp.asarray(x), jnp.asarray(offset), jnp.asarray(kernel)
    mask = None if mask is None else jnp.asarray(mask)
    bias = None if bias is None else jnp.asarray(bias)
    stride_ = _pair(stride, "stride")
    padding_ = _pair(padding, "padding")
    dilation_ = _pair(dilation, "dilation")
    if min(stride_) < 1 or min(dilation_) < 1 or min(padding_) < 0:
        raise ValueError(
            f"deform_conv2d: need stride >= 1, dilation >= 1 and padding >= 0, got stride={stride_}, "
            f"dilation={dilation_}, padding={padding_}"
        )
    if x.ndim != 4:
        raise ValueError(f"deform_conv2d expects x of shape [B, H, W, Cin] (NHWC), got {tuple(x.shape)}")
    if kernel.ndim != 4:
        raise ValueError(
            f"deform_conv2d expects kernel of shape [kh, kw, Cin, Cout] (HWIO), got {tuple(kernel.shape)}; "
            "a PyTorch weight [Cout, Cin, kh, kw] converts with w.transpose(2, 3, 1, 0)"
        )
    b, h, w, cin = x.shape
    kh, kw, kcin, cout = kernel.shape
    if kcin != cin:
        raise ValueError(
            f"deform_conv2d: kernel {tuple(kernel.shape)} has {kcin} input channels but x has {cin} "
            "(kernel layout is [kh, kw, Cin, Cout]; grouped convolution is not supported)"
        )
    groups = int(deformable_groups)
    if groups < 1 or cin % groups:
        raise ValueError(
            f"deform_conv2d: input channels {cin} must be divisible by deformable_groups={deformable_groups}"
        )
    ho = (h + 2 * padding_[0] - dilation_[0] * (kh - 1) - 1) // stride_[0] + 1
    wo = (w + 2 * padding_[1] - dilation_[1] * (kw - 1) - 1) // stride_[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(
            f"deform_conv2d: output would be empty ({ho}x{wo}) for input {h}x{w}, kernel {kh}x{kw}, "
            f"padding {padding_}, dilation {dilation_}, stride {stride_}"
        )
    k = kh * kw
    want_offset = (b, ho, wo, 2 * groups * k)
    if tuple(offset.shape) != want_offset:
        raise ValueError(
            f"deform_conv2d: offset must have shape [B, Ho, Wo, 2*G*kh*kw] = {want_offset} "
            f"(G={groups}, kernel {kh}x{kw}, output {ho}x{wo}), got {tuple(offset.shape)}; channel "
            "2*(g*kh*kw + ky*kw + kx) is dy and the next one dx (torchvision order, channels last)"
        )
    if mask is not None and tuple(mask.shape) != (b, ho, wo, groups * k):
        raise ValueError(
            f"deform_conv2d: mask must have shape [B, Ho, Wo, G*kh*kw] = {(b, ho, wo, groups * k)} "
            f"(channel g*kh*kw + ky*kw + kx), got {tuple(mask.shape)}; pass mask=None for DCNv1"
        )
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"deform_conv2d: bias must have shape ({cout},), got {tuple(bias.shape)}")
    if b * h * w * groups >= 2**31:
        raise ValueError(
            f"deform_conv2d: B*H*W*G = {b * h * w * groups} overflows the int32 gather index; split the batch"
        )
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"deform_conv2d: chunk_rows must be a positive int or None, got {chunk_rows}")

    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    w2d = kernel.astype(x.dtype).reshape(k * cin, cout)  # row (ky*kw + kx)*Cin + c

    def rows_out(x, off, msk, w2d, row_start):
        cols = _columns(
            x, off, msk, row_start,
            kernel_size=(kh, kw), stride=stride_, padding=padding_, dilation=dilation_, groups=groups,
        )
        return lax.dot_general(
            cols, w2d, (((3,), (0,)), ((), ())), precision=precision, preferred_element_type=acc_dtype
        )

    if chunk_rows is None or chunk_rows >= ho:
        out = rows_out(x, offset, mask, w2d, 0)
    else:
        n = -(-ho // chunk_rows)
        pad = n * chunk_rows - ho

        def split(a):  # [B, Ho, ...] -> [n, B, chunk_rows, ...]
            a = jnp.pad(a, ((0, 0), (0, pad)) + ((0, 0),) * (a.ndim - 2))
            a = a.reshape((b, n, chunk_rows) + a.shape[2:])
            return jnp.moveaxis(a, 1, 0)

        starts = jnp.arange(n) * chunk_rows
        body = jax.checkpoint(lambda args: rows_out(x, args[0], args[1], w2d, args[2]))
        if mask is None:
            outs = lax.map(lambda a: body((a[0], None, a[1])), (split(offset), starts))
        else:
            outs = lax.map(body, (split(offset), split(mask), starts))
        out = jnp.moveaxis(outs, 0, 1).reshape(b, n * chunk_rows, wo, cout)[:, :ho]
    if bias is not None:
        out = out + bias.astype(acc_dtype)
    return out.astype(x.dtype)
