"""Tests for ``restore_jax.ops.deform_conv.deform_conv2d`` against independent references.

References: a slow float64 NumPy loop written from the DCNv2 definition (forward values and, via
central finite differences, gradients) and ``torchvision.ops.deform_conv2d`` (forward and autograd).
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restore_jax.ops.deform_conv import _combine_corners, deform_conv2d


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _out_size(h, w, kh, kw, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def _bilinear_zero_outside(img, y, x):
    """Bilinear value of ``img [H, W, C]`` at ``(y, x)``; each corner outside the image counts as 0."""
    h, w, c = img.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - y0, x - x0
    value = np.zeros(c)
    for yy, xx, wgt in (
        (y0, x0, (1 - fy) * (1 - fx)),
        (y0, x0 + 1, (1 - fy) * fx),
        (y0 + 1, x0, fy * (1 - fx)),
        (y0 + 1, x0 + 1, fy * fx),
    ):
        if 0 <= yy < h and 0 <= xx < w:
            value += wgt * img[yy, xx]
    return value


def ref_deform_conv2d(x, offset, mask, kernel, bias=None, *, stride=1, padding=1, dilation=1, groups=1):
    """Plain loop DCNv2 in float64: x NHWC, kernel HWIO, offset/mask channels-last in torchvision order."""
    x = np.asarray(x, np.float64)
    offset = np.asarray(offset, np.float64)
    kernel = np.asarray(kernel, np.float64)
    b, h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    ho, wo = _out_size(h, w, kh, kw, stride, padding, dilation)
    taps = kh * kw
    cg = cin // groups
    out = np.zeros((b, ho, wo, cout))
    for bi in range(b):
        for oy in range(ho):
            for ox in range(wo):
                columns = np.zeros((kh, kw, cin))
                for g in range(groups):
                    img = x[bi, :, :, g * cg : (g + 1) * cg]
                    for ky in range(kh):
                        for kx in range(kw):
                            k = ky * kw + kx
                            dy = offset[bi, oy, ox, 2 * (g * taps + k)]
                            dx = offset[bi, oy, ox, 2 * (g * taps + k) + 1]
                            m = 1.0 if mask is None else float(mask[bi, oy, ox, g * taps + k])
                            y = oy * sh - ph + ky * dh + dy
                            xx = ox * sw - pw + kx * dw + dx
                            columns[ky, kx, g * cg : (g + 1) * cg] = m * _bilinear_zero_outside(img, y, xx)
                out[bi, oy, ox] = np.einsum("hwc,hwco->o", columns, kernel)
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out


def _frac_offsets(rng, shape, scale):
    """Offsets whose fractional part stays in [0.15, 0.85]: samples never land on integer coordinates."""
    whole = np.round(rng.normal(0.0, scale, shape))
    return whole + rng.uniform(0.15, 0.85, shape) * rng.choice([-1.0, 1.0], shape)


def _make_inputs(rng, *, b, h, w, cin, cout, kernel_size, groups, stride, padding, dilation, offset_scale,
                 with_mask=True, with_bias=True):
    kh, kw = kernel_size
    ho, wo = _out_size(h, w, kh, kw, stride, padding, dilation)
    x = rng.normal(size=(b, h, w, cin))
    offset = _frac_offsets(rng, (b, ho, wo, 2 * groups * kh * kw), offset_scale)
    mask = rng.uniform(0.0, 1.0, (b, ho, wo, groups * kh * kw)) if with_mask else None
    kernel = rng.normal(size=(kh, kw, cin, cout)) / np.sqrt(kh * kw * cin)
    bias = rng.normal(size=(cout,)) if with_bias else None
    return x, offset, mask, kernel, bias


FORWARD_CASES = [
    # name, dict(...)
    ("g1_s1_3x3_mask", dict(b=2, h=7, w=8, cin=4, cout=3, kernel_size=(3, 3), groups=1, stride=1, padding=1,
                            dilation=1, offset_scale=1.0)),
    ("g2_s2_nomask", dict(b=1, h=8, w=7, cin=4, cout=5, kernel_size=(3, 3), groups=2, stride=2, padding=1,
                          dilation=1, offset_scale=1.5, with_mask=False)),
    ("g4_dil2_pad2", dict(b=1, h=8, w=8, cin=8, cout=3, kernel_size=(3, 3), groups=4, stride=1, padding=2,
                          dilation=2, offset_scale=1.0, with_bias=False)),
    ("1x1_pad0", dict(b=2, h=6, w=5, cin=4, cout=2, kernel_size=(1, 1), groups=2, stride=1, padding=0,
                      dilation=1, offset_scale=1.0)),
    ("3x1_pairs", dict(b=1, h=7, w=6, cin=2, cout=3, kernel_size=(3, 1), groups=1, stride=(2, 1),
                       padding=(1, 0), dilation=(1, 2), offset_scale=1.0)),
    ("2x3_pad0_s2", dict(b=1, h=9, w=8, cin=6, cout=2, kernel_size=(2, 3), groups=3, stride=2, padding=(0, 1),
                         dilation=(2, 1), offset_scale=0.7)),
    ("large_offsets_outside", dict(b=1, h=8, w=8, cin=4, cout=3, kernel_size=(3, 3), groups=2, stride=1,
                                   padding=1, dilation=1, offset_scale=5.0)),
]


@pytest.mark.parametrize("name,cfg", FORWARD_CASES, ids=[c[0] for c in FORWARD_CASES])
def test_forward_matches_numpy_loop(name, cfg):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    conv = {k: cfg[k] for k in ("stride", "padding", "dilation")}
    x, offset, mask, kernel, bias = _make_inputs(rng, **cfg)
    want = ref_deform_conv2d(x, offset, mask, kernel, bias, groups=cfg["groups"], **conv)
    f32 = lambda a: None if a is None else jnp.asarray(a, jnp.float32)  # noqa: E731
    fn = jax.jit(lambda *a: deform_conv2d(*a, deformable_groups=cfg["groups"], **conv))
    got = fn(f32(x), f32(offset), f32(mask), f32(kernel), f32(bias))
    assert got.shape == want.shape and got.dtype == jnp.float32
    scale = np.abs(want).max()
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5 * scale)
    if name == "large_offsets_outside":
        # The case must really exercise samples that leave the image (fully or partly).
        ho, wo = want.shape[1:3]
        base = np.arange(ho)[:, None] - 1 + np.arange(3)[None, :]
        ys = base[None, :, None, None, :, None] + offset[..., 0::2].reshape(1, ho, wo, 2, 3, 3)
        assert (ys < 0).any() and (ys > 7).any()


def _fd_check(jax_grad, ref_loss, arg, rng, *, n_dirs=3, n_elems=6, eps=1e-6):
    """Central finite differences of the float64 reference loss vs the JAX gradient.

    Checks random directions (catch layout errors anywhere) and a few single elements.
    """
    arg = np.asarray(arg, np.float64)
    directions = [rng.normal(size=arg.shape) for _ in range(n_dirs)]
    for flat in rng.choice(arg.size, size=min(n_elems, arg.size), replace=False):
        e = np.zeros(arg.size)
        e[flat] = 1.0
        directions.append(e.reshape(arg.shape))
    for d in directions:
        fd = (ref_loss(arg + eps * d) - ref_loss(arg - eps * d)) / (2 * eps)
        an = float(np.sum(jax_grad * d))
        assert abs(fd - an) <= 1e-6 * (1.0 + abs(fd)), (fd, an)


GRAD_CASES = [
    ("g2_s1_mask", dict(b=1, h=5, w=6, cin=4, cout=3, kernel_size=(3, 3), groups=2, stride=1, padding=1,
                        dilation=1, offset_scale=1.5)),
    ("g1_s2_dil2", dict(b=2, h=6, w=5, cin=2, cout=2, kernel_size=(3, 2), groups=1, stride=2, padding=2,
                        dilation=2, offset_scale=2.0)),
]


@pytest.mark.parametrize("name,cfg", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradients_match_finite_differences(name, cfg):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    conv = {k: cfg[k] for k in ("stride", "padding", "dilation")}
    groups = cfg["groups"]
    x, offset, mask, kernel, bias = _make_inputs(rng, **cfg)
    ho, wo = _out_size(cfg["h"], cfg["w"], *cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["dilation"])
    cot = rng.normal(size=(cfg["b"], ho, wo, cfg["cout"]))
    args = [x, offset, mask, kernel, bias]

    def ref_loss_at(i):
        def loss(value):
            a = list(args)
            a[i] = value
            return float(np.sum(ref_deform_conv2d(*a, groups=groups, **conv) * cot))
        return loss

    with jax.enable_x64(True):
        def loss(*a):
            return jnp.sum(deform_conv2d(*a, deformable_groups=groups, **conv) * cot)

        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))(*[jnp.asarray(a, jnp.float64) for a in args])
        assert all(g.dtype == jnp.float64 for g in grads)
        grads = [np.asarray(g) for g in grads]
    for i, g in enumerate(grads):
        _fd_check(g, ref_loss_at(i), args[i], rng)


def _torch_reference(x, offset, mask, kernel, bias, *, stride, padding, dilation):
    torch = pytest.importorskip("torch")
    tv_ops = pytest.importorskip("torchvision.ops")

    def nchw(a):
        a = np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))
        return torch.tensor(a, dtype=torch.float32, requires_grad=True)

    tx, toff = nchw(x), nchw(offset)
    tmask = None if mask is None else nchw(mask)
    tw = torch.tensor(np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1))), dtype=torch.float32,
                      requires_grad=True)
    tb = torch.tensor(bias, dtype=torch.float32, requires_grad=True)
    out = tv_ops.deform_conv2d(tx, toff, tw, tb, stride=stride, padding=padding, dilation=dilation, mask=tmask)
    return out, (tx, toff, tmask, tw, tb)


TORCH_CASES = [
    ("g2_s2_mask", dict(b=2, h=9, w=8, cin=4, cout=3, kernel_size=(3, 3), groups=2, stride=2, padding=1,
                        dilation=1, offset_scale=1.5)),
    ("g4_dil2_nomask", dict(b=1, h=8, w=9, cin=8, cout=4, kernel_size=(3, 3), groups=4, stride=1, padding=2,
                            dilation=2, offset_scale=2.0, with_mask=False)),
    ("g1_3x1_pairs", dict(b=1, h=7, w=6, cin=3, cout=2, kernel_size=(3, 1), groups=1, stride=(1, 2),
                          padding=(1, 0), dilation=(2, 1), offset_scale=1.0)),
]


@pytest.mark.parametrize("name,cfg", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_torchvision_forward_and_gradients(name, cfg):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    conv = {k: cfg[k] for k in ("stride", "padding", "dilation")}
    x, offset, mask, kernel, bias = _make_inputs(rng, **cfg)
    out_t, leaves = _torch_reference(x, offset, mask, kernel, bias, **conv)
    cot = rng.normal(size=tuple(out_t.shape))  # NCHW
    (out_t * out_t.new_tensor(cot)).sum().backward()

    cot_nhwc = jnp.asarray(np.transpose(cot, (0, 2, 3, 1)), jnp.float32)
    with_mask = mask is not None

    def loss(x, offset, mask, kernel, bias):
        out = deform_conv2d(x, offset, mask if with_mask else None, kernel, bias,
                            deformable_groups=cfg["groups"], **conv)
        return jnp.sum(out * cot_nhwc), out

    f32 = lambda a: jnp.asarray(a if a is not None else np.zeros(1), jnp.float32)  # noqa: E731
    grads, out_j = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))(
        f32(x), f32(offset), f32(mask), f32(kernel), f32(bias)
    )
    want = out_t.detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(out_j), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())

    tx, toff, tmask, tw, tb = leaves
    pairs = [
        ("x", grads[0], tx.grad.numpy().transpose(0, 2, 3, 1)),
        ("offset", grads[1], toff.grad.numpy().transpose(0, 2, 3, 1)),
        ("kernel", grads[3], tw.grad.numpy().transpose(2, 3, 1, 0)),
        ("bias", grads[4], tb.grad.numpy()),
    ]
    if with_mask:
        pairs.append(("mask", grads[2], tmask.grad.numpy().transpose(0, 2, 3, 1)))
    for label, got, ref in pairs:
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(),
                                   err_msg=f"gradient w.r.t. {label}")


def _small_case(rng, dtype=jnp.float32):
    x, offset, mask, kernel, bias = _make_inputs(rng, b=2, h=8, w=8, cin=8, cout=4, kernel_size=(3, 3), groups=2,
                                                 stride=1, padding=1, dilation=1, offset_scale=1.5)
    return [jnp.asarray(a, dtype) for a in (x, offset, mask, kernel, bias)]


def test_bfloat16_close_to_float32_and_jit():
    rng = np.random.default_rng(0)
    args32 = _small_case(rng)
    fn = jax.jit(lambda *a: deform_conv2d(*a, deformable_groups=2))
    out32 = fn(*args32)
    out16 = fn(*[a.astype(jnp.bfloat16) for a in args32])
    assert out16.dtype == jnp.bfloat16 and out16.shape == out32.shape
    err = np.abs(np.asarray(out16, np.float32) - np.asarray(out32))
    scale = np.abs(np.asarray(out32)).max()
    assert err.max() <= 0.03 * scale, (err.max(), scale)
    # bfloat16 inputs differentiate too; gradients come back in bfloat16 and close to float32 ones.
    grad = jax.jit(jax.grad(lambda *a: deform_conv2d(*a, deformable_groups=2).astype(jnp.float32).sum(),
                            argnums=(0, 1, 2, 3)))
    g32 = grad(*args32)
    g16 = grad(*[a.astype(jnp.bfloat16) for a in args32])
    for a, b in zip(g16, g32):
        assert a.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b), atol=0.05 * np.abs(b).max(), rtol=0)


def test_chunk_rows_matches_whole_image():
    rng = np.random.default_rng(1)
    args = _small_case(rng)

    @jax.jit
    def run(x, offset, mask, kernel, bias):
        def loss(chunk_rows, use_mask, *a):
            m = a[2] if use_mask else None
            out = deform_conv2d(a[0], a[1], m, *a[3:], deformable_groups=2, chunk_rows=chunk_rows)
            return jnp.sum(out**2), out

        results = {}
        for chunk_rows in (0, 3):  # 0: whole image; 3 does not divide Ho = 8: the last chunk is padded and cropped
            for use_mask in (True, False):
                results[chunk_rows, use_mask] = jax.grad(loss, argnums=(2, 3, 4, 5, 6), has_aux=True)(
                    chunk_rows or None, use_mask, x, offset, mask, kernel, bias)
        return results

    results = run(*args)
    for (chunk_rows, use_mask), (grads, out) in results.items():
        want_grads, want_out = results[0, use_mask]
        np.testing.assert_allclose(np.asarray(out), np.asarray(want_out), rtol=1e-6, atol=1e-6)
        for gc, gw in zip(grads, want_grads):
            np.testing.assert_allclose(np.asarray(gc), np.asarray(gw), rtol=1e-5, atol=1e-5 * np.abs(gw).max())


def test_corner_strategies_agree():
    """The fused (accelerator) and looped (CPU) corner combinations give the same columns."""
    rng = np.random.default_rng(2)
    x_rows = jnp.asarray(rng.normal(size=(50, 3)), jnp.float32)
    index = jnp.asarray(rng.integers(0, 50, size=(4, 7, 4)), jnp.int32)
    weights = jnp.asarray(rng.uniform(size=(4, 7, 4)), jnp.float32)
    want = np.einsum("...qc,...q->...c", np.asarray(x_rows)[np.asarray(index)], np.asarray(weights))
    for loop in (False, True):
        got = jax.jit(lambda a, i, w: _combine_corners(a, i, w, loop=loop))(x_rows, index, weights)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


def test_zero_offsets_full_mask_equal_regular_convolution():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(1, 7, 6, 4)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 4, 5)), jnp.float32)
    offset = jnp.zeros((1, 4, 3, 2 * 2 * 9))
    got = jax.jit(lambda x, o, k: deform_conv2d(x, o, None, k, stride=2, padding=1, deformable_groups=2))(
        x, offset, kernel)
    want = jax.lax.conv_general_dilated(x, kernel, (2, 2), [(1, 1), (1, 1)],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_bad_shapes_raise_helpful_errors():
    x = jnp.zeros((1, 6, 6, 4))
    kernel = jnp.zeros((3, 3, 4, 2))
    offset = jnp.zeros((1, 6, 6, 18))
    mask = jnp.zeros((1, 6, 6, 9))
    jax.eval_shape(deform_conv2d, x, offset, mask, kernel)  # valid
    with pytest.raises(ValueError, match=r"offset must have shape .*\(1, 6, 6, 36\).*dy"):
        deform_conv2d(x, offset, None, kernel, deformable_groups=2)
    with pytest.raises(ValueError, match=r"mask must have shape .*\(1, 6, 6, 9\)"):
        deform_conv2d(x, offset, jnp.zeros((1, 6, 6, 18)), kernel)
    with pytest.raises(ValueError, match="divisible by deformable_groups=3"):
        deform_conv2d(x, jnp.zeros((1, 6, 6, 54)), None, kernel, deformable_groups=3)
    with pytest.raises(ValueError, match="input channels but x has 4"):
        deform_conv2d(x, offset, mask, jnp.zeros((3, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"\[B, H, W, Cin\]"):
        deform_conv2d(jnp.zeros((6, 6, 4)), offset, mask, kernel)
    with pytest.raises(ValueError, match="HWIO"):
        deform_conv2d(x, offset, mask, jnp.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match="bias must have shape"):
        deform_conv2d(x, offset, mask, kernel, jnp.zeros((3,)))
    with pytest.raises(ValueError, match="stride must be an int or a"):
        deform_conv2d(x, offset, mask, kernel, stride=(1, 1, 1))
    with pytest.raises(ValueError, match="output would be empty"):
        deform_conv2d(x, jnp.zeros((1, 0, 0, 18)), None, kernel, padding=0, dilation=4)
