"""Spatial tiling: run an image model on fixed-size overlapping tiles and blend them seam-free.

Why: a restoration network applied to a whole high-resolution image needs activation memory that
grows with the image, and every new input size costs a new XLA compilation. :func:`tiled_apply`
cuts the (padded) image into tiles of ONE fixed shape, runs the model on fixed-size batches of
tiles and blends the outputs with feathered weights, so

* the model is compiled once, whatever the input size (edge tiles are shifted inwards, the image
  is padded only up to the size multiple or up to one tile, and the last batch is filled up);
* device memory is bounded by ``batch_tiles`` tiles (input + activations + output), at most two
  batches in flight (the next batch is dispatched before the previous one is copied back);
  host memory holds the input, the output (in the caller's dtype: ``out`` / ``finalize``) and one
  float32 band of tile rows; the blend's normaliser is separable (two 1-D sums), so no weight plane.

Tile grid along one axis (input pixels; ``L`` the length, ``m`` the size multiple)::

    Lp     = max(tile, ceil(L / m) * m)          # padded length (pad at the end, ``pad_mode``)
    stride = tile - overlap
    starts = 0, stride, 2*stride, ...  while start + tile <= Lp,  plus  Lp - tile  if not covered

``tile`` and ``overlap`` must be multiples of ``m`` so that every tile start is a multiple of
``m`` (models that downsample by ``m`` are translation-equivariant only for such shifts).

Blending (output pixels, ``s = scale``): along an axis, a tile's weight at distance ``d`` from an
edge it shares with another tile is::

    w(d) = 0                                   d <  s*margin
    w(d) = 1/2 - 1/2 cos(pi * t)               t = (d - s*margin + 1/2) / (s*overlap - 2*s*margin)
    w(d) = 1                                   d >= s*(overlap - margin)

(a raised-cosine ramp over the middle of the overlap). Edges on the image border get no ramp.
The 2-D weight is the outer product of the two axes' weights; the blended output is
``sum_k w_k * y_k / sum_k w_k``. For two tiles overlapping by exactly ``overlap`` the two ramps
sum to 1 (the normalisation is then a no-op); the last tile, aligned to the end, may overlap more
and the normalisation keeps the blend a convex combination.

Seam-free property. In the interior every output pixel is a convex combination of tile outputs,
and a tile only gets a non-zero weight at pixels at least ``margin`` input pixels from its
shared edges. So for a translation-equivariant model whose output depends on inputs within a
radius ``r`` (a receptive field of ``2r + 1`` pixels), with ``r <= margin``, every contributing
tile output equals the untiled output there, and tiled == untiled up to float rounding. With the
default ``margin = overlap // 4`` this holds when the receptive field is at most ``overlap / 2``
pixels wide; ``margin`` can go up to ``(overlap - 1) // 2`` (narrowest feather, widest exact
radius) or down to 0 (widest feather, for models with large receptive fields where exactness is
out of reach and a soft transition hides the seams). Near the image border, results differ from
the untiled model only where padding was added (images smaller than one tile, or sizes that are
not a multiple of ``m``): a model with zero padding sees a reflection there instead of zeros.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np

__all__ = ["tiled_apply", "tile_starts", "blend_weights_1d", "pad_spatial", "apply_in_batches", "quantizer"]

PAD_MODES = ("reflect", "symmetric", "edge", "constant")


def _check_pad_mode(pad_mode: str) -> None:
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")


def pad_spatial(x: np.ndarray, pad_h: int, pad_w: int, pad_mode: str = "reflect") -> np.ndarray:
    """Pad the two spatial axes ``[..., H, W, C]`` at the end (bottom / right) by ``pad_h, pad_w``."""
    _check_pad_mode(pad_mode)
    if pad_h == 0 and pad_w == 0:
        return x
    widths = [(0, 0)] * (x.ndim - 3) + [(0, pad_h), (0, pad_w), (0, 0)]
    return np.pad(x, widths, mode=pad_mode)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` (``length >= tile``).

    Regular steps of ``tile - overlap``; a last tile aligned to the end if the regular ones do not
    reach it (so no tile ever needs padding beyond ``length``).
    """
    if length < tile:
        raise ValueError(f"tile_starts: length {length} is smaller than the tile {tile}; pad first")
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def blend_weights_1d(size: int, overlap: int, margin: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """Feather weights (float64 ``[size]``) of one tile along one axis, in output pixels.

    ``ramp_start`` / ``ramp_end``: whether that edge is shared with another tile (image borders get
    no ramp). See the module docstring for the formula.
    """
    w = np.ones(size, dtype=np.float64)
    if overlap == 0:
        return w
    width = overlap - 2 * margin
    d = np.arange(size, dtype=np.float64)
    t = np.clip((d - margin + 0.5) / width, 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * t)
    ramp[d < margin] = 0.0
    if ramp_start:
        w = w * ramp
    if ramp_end:
        w = w * ramp[::-1]
    return w


def _as_jitted(fn: Callable) -> Callable:
    """``fn`` itself if it is already a ``jax.jit`` function (keeps its compilation cache)."""
    return fn if hasattr(fn, "lower") else jax.jit(fn)


def apply_in_batches(
    fn: Callable,
    items: Sequence[np.ndarray] | Iterator[np.ndarray],
    batch: int,
    *,
    num_items: int | None = None,
    progress: bool = False,
    desc: str = "batches",
) -> Iterator[np.ndarray]:
    """Yield ``fn`` outputs item by item, calling ``fn`` on stacks of exactly ``batch`` items.

    All items must share one shape; the last stack is filled up by repeating its last item so the
    shape seen by ``fn`` never changes (one compilation). One stack is kept in flight: stack
    ``k + 1`` is dispatched before the outputs of stack ``k`` are copied to the host.
    """
    if batch < 1:
        raise ValueError(f"batch size must be >= 1, got {batch}")
    fn = _as_jitted(fn)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = None if num_items is None else math.ceil(num_items / batch)
        bar = tqdm(total=total, desc=desc, unit="batch")

    def collect(pending):
        out, n = pending
        host = np.asarray(out)
        if host.ndim < 1 or host.shape[0] != batch:
            raise ValueError(
                f"the model returned shape {host.shape} for a batch of {batch}; it must keep the batch axis first"
            )
        if bar is not None:
            bar.update(1)
        return [host[i] for i in range(n)]

    pending = None
    group: list[np.ndarray] = []
    shape = None
    try:
        for item in items:
            item = np.asarray(item)
            if shape is None:
                shape = item.shape
            elif item.shape != shape:
                raise ValueError(f"apply_in_batches: item shape {item.shape} differs from the first {shape}")
            group.append(item)
            if len(group) == batch:
                current = (fn(np.stack(group)), batch)
                group = []
                if pending is not None:
                    yield from collect(pending)
                pending = current
        if group:
            n = len(group)
            group.extend([group[-1]] * (batch - n))
            current = (fn(np.stack(group)), n)
            if pending is not None:
                yield from collect(pending)
            pending = current
        if pending is not None:
            yield from collect(pending)
    finally:
        if bar is not None:
            bar.close()


def _check_tiling_args(tile: int, overlap: int, margin: int | None, scale: int, multiple: int) -> int:
    for name, v in (("tile", tile), ("scale", scale), ("multiple", multiple)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if overlap < 0 or 2 * overlap > tile:
        raise ValueError(f"overlap must lie in [0, tile / 2] = [0, {tile // 2}], got {overlap}")
    if tile % multiple or overlap % multiple:
        raise ValueError(
            f"tile ({tile}) and overlap ({overlap}) must be multiples of the model's size multiple {multiple}, "
            f"e.g. tile={max(multiple, tile // multiple * multiple)} overlap={overlap // multiple * multiple}"
        )
    if margin is None:
        margin = overlap // 4
    if overlap == 0 and margin != 0:
        raise ValueError("margin must be 0 when overlap is 0")
    if overlap > 0 and not 0 <= margin <= (overlap - 1) // 2:
        raise ValueError(f"margin must lie in [0, (overlap - 1) // 2] = [0, {(overlap - 1) // 2}], got {margin}")
    return int(margin)


def _separable_weight_sum(starts: Sequence[int], weights: Sequence[np.ndarray], length: int, scale: int) -> np.ndarray:
    """``sum_k w_k`` along one axis (output pixels, float64): the blend's normaliser is the outer
    product of the two axes' sums, so no 2-D weight plane is ever held."""
    total = np.zeros(length, dtype=np.float64)
    for start, w in zip(starts, weights):
        total[start * scale : start * scale + len(w)] += w
    return total


def _tiled_core(
    fn: Callable,
    x: np.ndarray,
    *,
    n_inner: int,
    tile: int,
    overlap: int,
    margin: int | None,
    scale: int,
    multiple: int,
    batch_tiles: int,
    pad_mode: str,
    progress: bool,
    out: np.ndarray | None = None,
    finalize: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Tiled application to ``x`` of shape ``[B, *inner, H, W, C]`` (``len(inner) == n_inner``).

    ``fn`` maps ``[n, *inner, tile, tile, C]`` to ``[n, *inner_out, tile*scale, tile*scale, C_out]``
    (``inner_out`` may differ from ``inner``, e.g. more frames, or none for many-to-one video
    models); the result is ``[B, *inner_out, H*scale, W*scale, C_out]``.

    Host memory is bounded by the output plus one band of tile rows: tiles arrive row by row, a
    float32 band of ``tile * scale`` output rows accumulates the weighted tiles of one tile row,
    and the rows no later tile touches are normalised, passed through ``finalize`` (e.g. rounding
    to uint8) and written into ``out`` (preallocated by the caller in its own dtype, or a float32
    array made here) before the next tile row starts.
    """
    margin = _check_tiling_args(tile, overlap, margin, scale, multiple)
    _check_pad_mode(pad_mode)
    if x.ndim != 4 + n_inner:
        raise ValueError(f"expected an array of rank {4 + n_inner}, got shape {x.shape}")
    bsz, h, w = x.shape[0], x.shape[-3], x.shape[-2]
    if h < 1 or w < 1 or bsz < 1:
        raise ValueError(f"empty input of shape {x.shape}")
    hp = max(tile, -(-h // multiple) * multiple)
    wp = max(tile, -(-w // multiple) * multiple)
    xp = pad_spatial(x, hp - h, wp - w, pad_mode) if (hp, wp) != (h, w) else x
    ys, xs = tile_starts(hp, tile, overlap), tile_starts(wp, tile, overlap)
    jobs = [(b, i, j) for b in range(bsz) for i in range(len(ys)) for j in range(len(xs))]

    def tiles():
        for b, i, j in jobs:
            yield xp[b, ..., ys[i] : ys[i] + tile, xs[j] : xs[j] + tile, :]

    to, oo, mo = tile * scale, overlap * scale, margin * scale
    wy = [blend_weights_1d(to, oo, mo, i > 0, i < len(ys) - 1) for i in range(len(ys))]
    wx = [blend_weights_1d(to, oo, mo, j > 0, j < len(xs) - 1) for j in range(len(xs))]
    inv_y = (1.0 / _separable_weight_sum(ys, wy, hp * scale, scale)).astype(np.float32)
    inv_x = (1.0 / _separable_weight_sum(xs, wx, wp * scale, scale)[: w * scale]).astype(np.float32)
    h_out, w_out = h * scale, w * scale
    band: np.ndarray | None = None  # float32 [*inner_out, to, wp * scale, C_out]: rows ys[i]*s ...

    def emit(b: int, top: int, rows: int) -> None:
        """Normalise band rows ``[0, rows)`` (output rows ``top + ...``) and write them to ``out``."""
        rows = min(rows, h_out - top)
        if rows <= 0:
            return
        values = band[..., :rows, :w_out, :] * inv_y[top : top + rows, None, None]  # a fresh array: finalize may reuse it
        values *= inv_x[:, None]
        out[b, ..., top : top + rows, :, :] = values if finalize is None else finalize(values)

    outputs = apply_in_batches(fn, tiles(), batch_tiles, num_items=len(jobs), progress=progress, desc="tiles")
    current = None
    for (b, i, j), y in zip(jobs, outputs):
        if y.ndim < 3 or y.shape[-3:-1] != (to, to):
            raise ValueError(
                f"the model returned a tile of shape {y.shape} for an input tile of shape "
                f"{xp.shape[1:-3] + (tile, tile, xp.shape[-1])}; expected spatial size {to}x{to} "
                f"(tile {tile} x scale {scale}) - check scale="
            )
        if band is None:
            band = np.zeros(y.shape[:-3] + (to, wp * scale, y.shape[-1]), dtype=np.float32)
            want = (bsz,) + y.shape[:-3] + (h_out, w_out, y.shape[-1])
            if out is None:  # the dtype finalize produces (probed on one pixel), else float32
                probe = np.zeros((1, 1, y.shape[-1]), np.float32)
                out = np.empty(want, dtype=np.float32 if finalize is None else finalize(probe).dtype)
            elif tuple(out.shape) != want:
                raise ValueError(f"out has shape {tuple(out.shape)}, the tiled result has {want}")
        if current != (b, i):
            if current is not None:  # the previous tile row is complete
                pb, pi = current
                top = ys[pi] * scale
                if pb == b:  # rows above the next tile row are final; the rest carries over
                    done = ys[i] * scale - top
                    emit(pb, top, done)
                    band[..., : to - done, :, :] = band[..., done:, :, :]
                    band[..., to - done :, :, :] = 0.0
                else:
                    emit(pb, top, to)
                    band[...] = 0.0
            current = (b, i)
        x0 = xs[j] * scale
        band[..., :, x0 : x0 + to, :] += np.outer(wy[i], wx[j]).astype(np.float32)[:, :, None] * y
    if current is not None:
        emit(current[0], ys[current[1]] * scale, to)
    return out


def quantizer(dtype) -> Callable[[np.ndarray], np.ndarray]:
    """``finalize`` for :func:`tiled_apply`: float in [0, 1] -> ``uint8`` / ``uint16`` (clip, scale,
    round half to even), working in place on the band it is given (no extra float copies)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"quantizer: dtype must be uint8 or uint16, got {dtype}")
    maxval = float(np.iinfo(dtype).max)

    def finalize(values: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(values)):
            raise ValueError("the model output contains NaN or infinite values; nothing was written")
        np.clip(values, 0.0, 1.0, out=values)
        values *= maxval
        np.rint(values, out=values)
        return values.astype(dtype)

    return finalize


def tiled_apply(
    fn: Callable,
    x: np.ndarray,
    *,
    tile: int,
    overlap: int,
    scale: int = 1,
    multiple: int = 1,
    batch_tiles: int = 8,
    margin: int | None = None,
    pad_mode: str = "reflect",
    progress: bool = False,
    out: np.ndarray | None = None,
    finalize: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Apply an image model ``fn`` to ``x`` (``[H, W, C]`` or ``[B, H, W, C]``) tile by tile.

    ``fn`` maps a batch of tiles ``[batch_tiles, tile, tile, C]`` to
    ``[batch_tiles, tile*scale, tile*scale, C_out]``; pass a ``jax.jit`` function (a plain one is
    wrapped in ``jax.jit``) with parameters and controls bound, e.g.
    ``jax.jit(functools.partial(apply, params, u=0.5))``. It is only ever called with that one
    shape. ``tile`` and ``overlap`` are in input pixels and must be multiples of ``multiple``;
    ``overlap <= tile / 2``. ``margin`` (default ``overlap // 4``): the blend ignores a tile's
    outermost ``margin`` pixels at shared edges (see the module docstring for the exactness rule).
    ``pad_mode``: how the image is extended up to the size multiple / one tile (``numpy.pad``).
    Returns a NumPy array ``[H*scale, W*scale, C_out]`` (or with the batch axis), float32.

    ``out`` (optional): a preallocated result array of that shape in any dtype, filled row band by
    row band (made here, in the dtype ``finalize`` returns, when omitted); ``finalize`` converts
    each normalised float32 band before it is stored (e.g.
    :func:`quantizer` for uint8 / uint16), so a large output never exists in float32 on the host.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        return _tiled_core(
            fn, x[None], n_inner=0, tile=tile, overlap=overlap, margin=margin, scale=scale,
            multiple=multiple, batch_tiles=batch_tiles, pad_mode=pad_mode, progress=progress,
            out=None if out is None else out[None], finalize=finalize,
        )[0]
    if x.ndim != 4:
        raise ValueError(f"tiled_apply expects an image [H, W, C] or a batch [B, H, W, C], got shape {x.shape}")
    return _tiled_core(
        fn, x, n_inner=0, tile=tile, overlap=overlap, margin=margin, scale=scale,
        multiple=multiple, batch_tiles=batch_tiles, pad_mode=pad_mode, progress=progress,
        out=out, finalize=finalize,
    )
