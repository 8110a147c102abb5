"""JPEG compression artefacts via Pillow (libjpeg), encoded and decoded in memory.

The float image is quantised to 8 bits (``round(clip(x) * 255)``), encoded at quality factor
``quality`` (1-100, IJG scaling of the standard tables, the same scaling MATLAB's ``imwrite``
uses) with the given chroma subsampling, decoded, and returned as float32 in ``[0, 1]``.
Chroma subsampling codes (Pillow's): ``"4:4:4" -> 0``, ``"4:2:2" -> 1``, ``"4:2:0" -> 2``; it is
ignored for single-channel images (still recorded). Only 1- or 3-channel inputs are accepted.

Sequences are compressed frame by frame (independent JPEG images, one quality factor per frame
or, with ``per_frame=False``, one per sequence); there is no inter-frame (video codec) coding.
Users: CAJNN (QF 10-100, seed_001 §C.2), Zooming Slow-Mo JPEG inputs (QF 10/20/30/40,
seed_001 §A.2), multi-frame face SR (per-frame JPEG, seed_004 §2.1).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from restore_jax.degradations._common import Params, Range, check_image, check_rng, draw_int, i32

__all__ = ["SUBSAMPLING", "jpeg_compress", "jpeg"]

#: Chroma subsampling name -> code recorded in ``params["subsampling"]`` (Pillow's codes).
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _subsampling_code(subsampling: str | int, fn: str) -> int:
    if isinstance(subsampling, str) and subsampling in SUBSAMPLING:
        return SUBSAMPLING[subsampling]
    if isinstance(subsampling, (int, np.integer)) and not isinstance(subsampling, bool) and int(subsampling) in (0, 1, 2):
        return int(subsampling)
    raise ValueError(f"{fn}: subsampling must be one of {list(SUBSAMPLING)} (or code 0/1/2), got {subsampling!r}")


def _jpeg_frame(frame: np.ndarray, quality: int, code: int) -> np.ndarray:
    u8 = np.floor(np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    img = Image.fromarray(u8[:, :, 0] if u8.shape[-1] == 1 else u8)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality), subsampling=code)
    buf.seek(0)
    with Image.open(buf) as dec:
        out = np.asarray(dec.convert(img.mode), dtype=np.float32) / 255.0
    return out.reshape(frame.shape)


def jpeg_compress(x: np.ndarray, quality: int | np.ndarray, subsampling: str | int = "4:2:0") -> np.ndarray:
    """JPEG round trip of an image ``[H, W, C]`` or sequence ``[T, H, W, C]`` (C in {1, 3}).

    ``quality``: an int (all frames) or, for sequences, an int array ``[T]`` (one per frame).
    """
    fn = "jpeg_compress"
    x = check_image(x, fn, channels=(1, 3))
    code = _subsampling_code(subsampling, fn)
    frames = x.reshape((-1,) + x.shape[-3:])
    q = np.asarray(quality)
    if not (q.ndim == 0 or (q.ndim == 1 and x.ndim == 4 and q.shape[0] == frames.shape[0])):
        raise ValueError(f"{fn}: quality must be an int or, for a sequence, one int per frame; got {quality!r}")
    q = np.broadcast_to(q, (frames.shape[0],))
    if not np.issubdtype(q.dtype, np.number) or np.any(q < 1) or np.any(q > 100) or np.any(q != np.round(q)):
        raise ValueError(f"{fn}: quality must be integer(s) in [1, 100], got {quality!r}")
    out = np.stack([_jpeg_frame(f, int(qi), code) for f, qi in zip(frames, q)])
    return out.reshape(x.shape)


def jpeg(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    quality: Range = (10, 100),
    subsampling: str | int | list = "4:2:0",
    per_frame: bool = True,
) -> tuple[np.ndarray, Params]:
    """JPEG at a random quality factor (inclusive integer range or list, e.g. ``[10, 20, 30, 40]``).

    ``subsampling``: a name/code or a list of them to pick from (one pick per call). For a
    sequence, ``per_frame=True`` draws one QF per frame, otherwise one for the whole sequence.
    Params: ``quality`` (int32; 0-d for an image, ``[T]`` for a sequence), ``subsampling`` (int32).
    """
    fn = "jpeg"
    check_rng(rng, fn)
    x = check_image(x, fn, channels=(1, 3))
    choices = subsampling if isinstance(subsampling, list) else [subsampling]
    if not choices:
        raise ValueError(f"{fn}: subsampling list must not be empty")
    codes = [_subsampling_code(s, fn) for s in choices]
    if x.ndim == 4:
        n = x.shape[0] if per_frame else 1
        qs = np.array([draw_int(rng, quality, "quality", fn, low=1, high=100) for _ in range(n)], dtype=np.int32)
        qs = np.broadcast_to(qs, (x.shape[0],)).copy()
    else:
        qs = np.asarray(draw_int(rng, quality, "quality", fn, low=1, high=100), dtype=np.int32)
    code = codes[min(int(rng.random() * len(codes)), len(codes) - 1)]
    return jpeg_compress(x, qs, code), {"quality": i32(qs), "subsampling": i32(code)}
