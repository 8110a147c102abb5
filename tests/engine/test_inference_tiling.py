"""Spatial tiling and temporal chunking (restore_jax.inference.tiling / chunking).

References: the model applied to the whole image / whole video in one call, NumPy re-statements
(``np.repeat`` upsampling, brute-force window ownership), never the tiling code itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from restore_jax.inference import chunking, tiling
from restore_jax.inference.chunking import (
    chunked_video_apply,
    num_output_frames,
    per_frame_apply,
    plan_windows,
    sliding_window_apply,
)
from restore_jax.inference.tiling import blend_weights_1d, tiled_apply, tile_starts
from restore_jax.ops.pixel import pixel_shuffle


def _conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _weights(out_last: int, seed: int = 0):
    rng = np.random.default_rng(seed)  # NumPy: jax.random would compile its samplers eagerly
    shapes = [(3, 3, 3, 8), (3, 3, 8, 8), (3, 3, 8, out_last)]
    return [jnp.asarray(rng.normal(size=s).astype(np.float32) * 0.3) for s in shapes]


W1 = _weights(3)
W2 = _weights(12, seed=1)


def conv3_net(x):
    """3 layers of 3x3 convs: the output depends on inputs within a radius of 3 pixels."""
    h = jnp.tanh(_conv(x, W1[0]))
    h = jnp.tanh(_conv(h, W1[1]))
    return _conv(h, W1[2]) + x


def conv3_x2_net(x):
    """Same receptive field, x2 output through a pixel shuffle."""
    h = jnp.tanh(_conv(x, W2[0]))
    h = jnp.tanh(_conv(h, W2[1]))
    return pixel_shuffle(_conv(h, W2[2]), 2)


conv3 = jax.jit(conv3_net)
conv3_x2 = jax.jit(conv3_x2_net)


def _img(*shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


# ------------------------------------------------------------------------------------ tiling


@pytest.mark.parametrize("fn,scale", [(conv3, 1), (conv3_x2, 2)], ids=["x1", "x2-pixel-shuffle"])
def test_tiled_equals_untiled(fn, scale):
    x = _img(45, 70, 3)
    ref = np.asarray(fn(x[None]))[0]
    # margin 3 = receptive radius: every blended tile output is exact. No padding is needed
    # (45, 70 >= tile, multiple 1), so tiled == untiled on the whole image, borders included.
    y = tiled_apply(fn, x, tile=16, overlap=8, margin=3, scale=scale, batch_tiles=4)
    assert y.shape == (45 * scale, 70 * scale, 3)
    np.testing.assert_allclose(y, ref, atol=2e-5, rtol=0)


def _upsample_nearest(x, s):
    return jnp.repeat(jnp.repeat(x, s, axis=1), s, axis=2)


up4 = jax.jit(lambda x: _upsample_nearest(x, 4) * 1.2 - 0.1)  # exact under tiling; values leave [0, 1]


def test_streamed_uint8_output_equals_rounded_float_output():
    # Regression (issue 14, host memory): the tiled result can be written band by band straight into a
    # uint8 / uint16 array; it must equal rounding the float result, clipped, for every pixel.
    x = _img(37, 52, 3, seed=3)
    ref = np.asarray(up4(x[None]))[0]
    for dtype, maxval in ((np.uint8, 255.0), (np.uint16, 65535.0)):
        out = np.zeros((37 * 4, 52 * 4, 3), dtype)
        got = tiled_apply(up4, x, tile=16, overlap=8, scale=4, batch_tiles=3, out=out, finalize=tiling.quantizer(dtype))
        assert np.shares_memory(got, out)
        want = np.round(np.clip(ref.astype(np.float64), 0, 1) * maxval)  # NumPy rounds half to even too
        # the blend normalises with float32 reciprocals: a value may sit 1 ulp from a rounding tie
        assert np.abs(out.astype(np.int64) - want).max() <= 1 and np.mean(out == want) > 0.995
    with pytest.raises(ValueError, match="out has shape"):
        tiled_apply(up4, x, tile=16, overlap=8, scale=4, out=np.zeros((10, 10, 3), np.uint8))


def test_tiled_host_memory_is_the_output_plus_a_band():
    # numpy allocations are traced by tracemalloc: the peak while tiling a 1024 x 384 image at x4 into a
    # preallocated uint8 output is a few float32 bands of tile rows, far below one float32 copy of the
    # output (4 x the uint8 size), which the whole-canvas accumulation (plus a float64 weight plane) needed.
    import tracemalloc

    x = _img(1024, 384, 3, seed=4)
    out = np.zeros((4096, 1536, 3), np.uint8)
    quant = tiling.quantizer(np.uint8)
    tiled_apply(up4, x, tile=64, overlap=16, scale=4, batch_tiles=2, out=out, finalize=quant)  # compile first
    tracemalloc.start()
    try:
        tiled_apply(up4, x, tile=64, overlap=16, scale=4, batch_tiles=2, out=out, finalize=quant)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    band = 64 * 4 * 1536 * 3 * 4  # one float32 band of tile rows at full output width
    assert peak < 3 * band, (peak, band)
    assert peak < out.nbytes * 4 / 5, (peak, out.nbytes)


def test_tiled_batch_and_padded_border():
    x = _img(2, 12, 37, 3, seed=1)  # 12 < tile: padded (reflect) to 16 rows
    ref = np.asarray(conv3(x))
    y = tiled_apply(conv3, x, tile=16, overlap=8, margin=3, batch_tiles=3)
    assert y.shape == x.shape
    # The padding changes only outputs within the receptive radius of the padded bottom edge.
    np.testing.assert_allclose(y[:, : 12 - 3], ref[:, : 12 - 3], atol=2e-5, rtol=0)
    assert np.abs(y[:, -1] - ref[:, -1]).max() > 1e-3  # reflection, not the model's zero padding


def test_default_margin_is_close_but_not_exact_for_larger_receptive_field():
    x = _img(45, 70, 3, seed=2)
    ref = np.asarray(conv3(x[None]))[0]
    y = tiled_apply(conv3, x, tile=16, overlap=8, batch_tiles=4)  # margin 2 < radius 3
    err = np.abs(y - ref)
    assert 1e-4 < err.max() < 0.5  # seams are blended, not exact: the radius exceeds the margin
    np.testing.assert_allclose(y[:5, :5], ref[:5, :5], atol=2e-5)  # corner: one tile, exact there


@pytest.mark.parametrize("multiple", [1, 4])
def test_tiled_nearest_upsample_exact_everywhere(multiple):
    up = jax.jit(lambda t: jnp.repeat(jnp.repeat(t, 2, axis=1), 2, axis=2))
    x = _img(45, 70, 2, seed=3)
    y = tiled_apply(up, x, tile=16, overlap=8, scale=2, multiple=multiple, batch_tiles=5)
    np.testing.assert_allclose(y, np.repeat(np.repeat(x, 2, 0), 2, 1), atol=1e-6)


def test_one_compilation_across_input_sizes():
    traces = []

    @jax.jit
    def fn(t):
        traces.append(t.shape)  # Python side effect: runs once per trace
        return conv3_net(t)

    for shape in [(45, 70, 3), (12, 20, 3), (2, 33, 17, 3), (5, 5, 3), (64, 16, 3)]:
        tiled_apply(fn, _img(*shape), tile=16, overlap=8, batch_tiles=4)
    assert traces == [(4, 16, 16, 3)]
    assert fn._cache_size() == 1


def test_blend_weights_partition_of_unity():
    for size, overlap, margin in [(16, 8, 0), (16, 8, 2), (16, 8, 3), (32, 6, 1), (10, 5, 2)]:
        a = blend_weights_1d(size, overlap, margin, True, True)
        b = blend_weights_1d(size, overlap, margin, True, True)
        # the last `overlap` pixels of a coincide with the first `overlap` pixels of b
        np.testing.assert_allclose(a[size - overlap :] + b[:overlap], 1.0, atol=1e-12)
        assert np.all(a[:margin] == 0) and np.all(a[size - margin :] == 0)
        assert np.all(blend_weights_1d(size, overlap, margin, False, False) == 1)


def test_tile_starts_cover_and_align():
    for length in range(16, 80):
        starts = tile_starts(length, 16, 8)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s : s + 16] = True
        assert covered.all() and starts[0] == 0 and starts[-1] == length - 16
        assert all(b - a <= 8 for a, b in zip(starts, starts[1:]))


def test_tiling_errors():
    x = _img(20, 20, 3)
    with pytest.raises(ValueError, match="multiples"):
        tiled_apply(conv3, x, tile=18, overlap=8, multiple=4)
    with pytest.raises(ValueError, match="overlap"):
        tiled_apply(conv3, x, tile=16, overlap=9)
    with pytest.raises(ValueError, match="margin"):
        tiled_apply(conv3, x, tile=16, overlap=8, margin=4)
    with pytest.raises(ValueError, match="scale"):
        tiled_apply(conv3, x, tile=16, overlap=8, scale=2)
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        tiled_apply(conv3, x[..., 0], tile=16, overlap=8)


def test_progress_bar(capsys):
    tiled_apply(conv3, _img(20, 30, 3), tile=16, overlap=8, batch_tiles=4, progress=True)
    assert "tiles" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ chunking


def _brute_force_owner(num_frames, window, stride, k):
    """Windows by enumeration; each output frame owned by the window whose centre is nearest
    (ties: the later window); -1 where no window contains the frame."""
    if num_frames <= window:
        starts = [0]
    else:
        starts = sorted(set(range(0, num_frames - window + 1, stride)) | {num_frames - window})
    owner = []
    for g in range((num_frames - 1) * k + 1):
        best = None
        for i, s in enumerate(starts):
            if s * k <= g <= s * k + (window - 1) * k:
                key = (abs(2 * g - (2 * s * k + (window - 1) * k)), -i)
                best = min(best, (key, i)) if best else (key, i)
        owner.append(best[1] if best else -1)
    return starts, owner


def test_plan_windows_against_brute_force():
    checked = 0
    for k in (1, 2, 3):
        for window in range(2 if k > 1 else 1, 7):
            for stride in range(1, (window if k == 1 else window - 1) + 1):
                for t in range(1, 22):
                    plan = plan_windows(t, window, stride, k)
                    starts, owner = _brute_force_owner(t, window, stride, k)
                    assert [w.start for w in plan] == starts
                    produced = []
                    for i, w in enumerate(plan):
                        assert 0 <= w.keep_start < w.keep_stop <= (window - 1) * k + 1
                        assert w.out_offset == w.start * k
                        kept = list(range(w.out_offset + w.keep_start, w.out_offset + w.keep_stop))
                        assert kept == [g for g, o in enumerate(owner) if o == i]
                        produced += kept
                    # every output frame produced exactly once, in order
                    assert produced == list(range(num_output_frames(t, k)))
                    checked += 1
    assert checked > 500


def test_plan_zsm_example():
    # N = 4 inputs -> 7 outputs; stride 3: consecutive windows share one input frame.
    plan = plan_windows(10, 4, 3, temporal_scale=2)
    assert [(w.start, w.keep_start, w.keep_stop) for w in plan] == [(0, 0, 6), (3, 0, 6), (6, 0, 7)]
    # 11 frames: regular windows at 0, 3, 6 stop at frame 9; the tail window starts at 7.
    plan = plan_windows(11, 4, 3, temporal_scale=2)
    assert [w.start for w in plan] == [0, 3, 6, 7]
    assert sum(w.keep_stop - w.keep_start for w in plan) == 21


def test_plan_errors():
    with pytest.raises(ValueError, match="stride"):
        plan_windows(10, 4, 4, temporal_scale=2)  # frame between windows never produced
    with pytest.raises(ValueError, match="stride"):
        plan_windows(10, 4, 5)
    with pytest.raises(ValueError, match="no frames"):
        plan_windows(0, 4, 2)


def _interp_model(spatial):
    """Window model: spatial net on each frame, then x2 temporal interpolation (ZSM-shaped)."""

    def fn(x):  # [b, n, h, w, c] -> [b, 2n - 1, h', w', c']
        b, n = x.shape[:2]
        y = spatial(x.reshape((b * n,) + x.shape[2:]))
        y = y.reshape((b, n) + y.shape[1:])
        j = np.arange(2 * n - 1)
        return (y[:, j // 2] + y[:, (j + 1) // 2]) / 2

    return jax.jit(fn)


@pytest.mark.parametrize("num_frames", [3, 8, 11])
def test_chunked_video_time_indices(num_frames):
    frames = np.arange(num_frames, dtype=np.float32)[:, None, None, None] * np.ones((1, 5, 6, 2), np.float32)
    out = chunked_video_apply(_interp_model(lambda t: t), frames, window=4, stride=3, temporal_scale=2, batch_windows=2)
    assert out.shape == (2 * num_frames - 1, 5, 6, 2)
    np.testing.assert_allclose(out, (np.arange(2 * num_frames - 1) / 2)[:, None, None, None] * np.ones_like(out))


def test_chunked_video_tiled_equals_whole_video():
    frames = _img(9, 20, 27, 3, seed=4)
    model = _interp_model(conv3_x2_net)
    ref = np.asarray(model(frames[None]))[0]  # the whole video as one window
    out = chunked_video_apply(
        model, frames, window=3, stride=2, temporal_scale=2, tile=16, overlap=8, margin=3, scale=2, batch_tiles=4
    )
    assert out.shape == ref.shape == (17, 40, 54, 3)
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=0)


def test_chunked_video_same_rate_and_multiple_padding():
    frames = _img(7, 10, 13, 3, seed=5)
    model = jax.jit(lambda x: x * 2.0)  # [b, n, h, w, c] -> same
    seen = []

    def fn(x):
        seen.append(x.shape)
        return model(x)

    out = chunked_video_apply(fn, frames, window=3, stride=3, multiple=4, batch_windows=2)
    np.testing.assert_allclose(out, frames * 2.0, atol=1e-6)
    assert set(seen) == {(2, 3, 12, 16, 3)}  # padded to the multiple, one shape


def test_sliding_window_against_numpy():
    frames = _img(6, 8, 9, 3, seed=6)
    mean = jax.jit(lambda x: jnp.mean(x, axis=1))
    for mode in ("reflect", "edge"):
        idx = np.pad(np.arange(6), 2, mode=mode)
        ref = np.stack([frames[idx[t : t + 5]].mean(0) for t in range(6)])
        out = sliding_window_apply(mean, frames, radius=2, batch=4, temporal_pad=mode)
        np.testing.assert_allclose(out, ref, atol=1e-6)
    tiled = sliding_window_apply(mean, frames, radius=2, tile=8, overlap=4, batch_tiles=3)
    idx = np.pad(np.arange(6), 2, mode="reflect")
    np.testing.assert_allclose(tiled, np.stack([frames[idx[t : t + 5]].mean(0) for t in range(6)]), atol=1e-6)


def test_per_frame_apply_matches_direct():
    frames = _img(5, 18, 21, 3, seed=7)
    ref = np.asarray(conv3_x2(frames))
    np.testing.assert_allclose(per_frame_apply(conv3_x2, frames, batch=3, scale=2), ref, atol=1e-5)
    tiled = per_frame_apply(conv3_x2, frames, tile=16, overlap=8, margin=3, scale=2, batch_tiles=4)
    np.testing.assert_allclose(tiled, ref, atol=2e-5)


def test_modules_export_names():
    assert set(tiling.__all__) >= {"tiled_apply", "tile_starts"}
    assert set(chunking.__all__) >= {"chunked_video_apply", "plan_windows", "per_frame_apply"}
