"""Reading still images into float32 RGB ``[H, W, 3]`` arrays in ``[0, 1]`` (the conversion rules).

Every image that enters a pipeline goes through :func:`read_image` / :func:`decode_image` (files) or
:func:`to_float_rgb` (arrays from TFDS / ArrayRecord), so one set of rules holds everywhere:

* **Output**: float32, channel-last ``[H, W, 3]``, RGB, values in ``[0, 1]``.
* **Bit depth**: 8-bit values are divided by 255, 16-bit values by 65535 (computed in float64 and
  rounded once to float32, so ``v / 65535`` is exact to float32 precision); 1-bit images map to
  0 / 1. Pillow silently truncates 16-bit *colour* PNGs to 8 bits, so 16-bit RGB / RGBA / grey+alpha
  PNGs are decoded here by a small NumPy PNG decoder (:func:`decode_png16`) instead.
* **Grayscale** (L, 1-bit, 16-bit grey) is replicated to three identical channels.
* **Palette** images are expanded through their palette (with its transparency, if any).
* **Alpha** (RGBA, LA, palette or ``tRNS`` transparency) is composited over a background colour,
  ``out = alpha * rgb + (1 - alpha) * background`` with straight (unassociated) alpha as PNG and
  WebP store it. The default background is **white** ``(1, 1, 1)``: transparent regions of face
  cut-outs and logos are usually meant to be seen on white, and white does not darken the
  anti-aliased edges the way dropping the alpha (black under premultiplication) does.
* **Orientation**: the EXIF orientation tag (phone JPEGs) is applied, so the array is upright.
* **Animated** PNG / WebP: the first frame. **Colour profiles** (ICC, gAMA): ignored; values are
  taken as stored (sRGB assumed).
* Other modes (CMYK, YCbCr JPEGs) are converted to RGB by Pillow.

Bad content (not an image, corrupt, truncated, unsupported mode) raises :class:`ImageReadError`
(a ``ValueError``), whose message names the file, what was wrong and what to do; sources turn it
into a skip or an error according to their ``on_error`` policy. Failing to read the file at all
raises ``OSError``, which sources never skip (it may be transient).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Sequence
from typing import Union

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "decode_image",
    "decode_png16",
    "is_png16_colour",
    "read_image",
    "to_float_rgb",
    "parse_background",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")

Background = Union[float, Sequence[float], str]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> number of samples per pixel.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


class ImageReadError(ValueError):
    """An image file could not be read or converted (message says which file and why)."""


def parse_background(background: Background) -> np.ndarray:
    """``'white'`` / ``'black'`` / a grey level / an RGB triple in ``[0, 1]`` -> float64 ``[3]``."""
    if isinstance(background, str):
        named = {"white": 1.0, "black": 0.0, "gray": 0.5, "grey": 0.5}
        if background.lower() not in named:
            raise ValueError(f"background must be 'white', 'black', 'gray', a number or an RGB triple; got {background!r}")
        bg = np.full(3, named[background.lower()], dtype=np.float64)
    else:
        bg = np.asarray(background, dtype=np.float64).reshape(-1)
        if bg.size == 1:
            bg = np.repeat(bg, 3)
        if bg.size != 3:
            raise ValueError(f"background must be a number or an RGB triple, got {background!r}")
    if not np.all((bg >= 0.0) & (bg <= 1.0)):
        raise ValueError(f"background values must lie in [0, 1] (not 0-255), got {background!r}")
    return bg


def to_float_rgb(
    array: np.ndarray,
    *,
    background: Background = "white",
    bit_depth: int | None = None,
    name: str = "array",
) -> np.ndarray:
    """Convert a decoded image array to float32 RGB ``[H, W, 3]`` in ``[0, 1]`` by the rules above.

    ``array``: ``[H, W]`` or ``[H, W, C]`` with ``C`` in 1 (grey), 2 (grey + alpha), 3 (RGB),
    4 (RGBA); uint8, uint16, bool, or float already in ``[0, 1]``. ``bit_depth`` overrides the
    scale of integer input (e.g. 16 for 16-bit values stored in an int32 array).
    """
    x = np.asarray(array)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(
            f"{name}: expected an image [H, W] or [H, W, C] with C in 1..4, got shape {x.shape}"
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ImageReadError(f"{name}: empty image of shape {x.shape}")
    if x.dtype == np.bool_:
        v = x.astype(np.float64)
    elif np.issubdtype(x.dtype, np.integer):
        depth = bit_depth or (16 if x.dtype.itemsize >= 2 else 8)
        maxval = float((1 << depth) - 1)
        if x.min() < 0 or x.max() > maxval:
            raise ImageReadError(
                f"{name}: integer values outside [0, {int(maxval)}] for a {depth}-bit image "
                f"(min {x.min()}, max {x.max()}); pass the right bit_depth"
            )
        v = x.astype(np.float64) / maxval
    elif np.issubdtype(x.dtype, np.floating):
        v = x.astype(np.float64)
        lo, hi = float(np.min(v)), float(np.max(v))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            hint = " It looks like 0-255 data: divide by 255." if hi > 2.0 else ""
            raise ImageReadError(f"{name}: float image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}].{hint}")
    else:
        raise ImageReadError(f"{name}: unsupported dtype {x.dtype}")
    c = v.shape[-1]
    if c in (2, 4):
        alpha = v[..., -1:]
        colour = v[..., :-1]
        if c == 2:
            colour = np.repeat(colour, 3, axis=-1)
        v = alpha * colour + (1.0 - alpha) * parse_background(background)
    elif c == 1:
        v = np.repeat(v, 3, axis=-1)
    return np.ascontiguousarray(v, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# 16-bit colour PNG decoder (Pillow reduces these to 8 bits).


def _png_chunks(data: bytes, name: str):
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageReadError(f"{name}: not a PNG file")
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ImageReadError(f"{name}: PNG file is truncated (chunk {ctype!r} cut short); re-export or remove it")
        yield ctype, body
        if ctype == b"IEND":
            return
        pos += 12 + length
    raise ImageReadError(f"{name}: PNG file is truncated (no IEND chunk); re-export or remove it")


def _png_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit depth, colour type, interlace) from the IHDR of PNG bytes, else None."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def is_png16_colour(data: bytes) -> bool:
    """True for 16-bit PNGs with colour or alpha (the ones Pillow would truncate to 8 bits)."""
    hdr = _png_header(data)
    return hdr is not None and hdr[2] == 16 and hdr[3] in (2, 4, 6)


def _unfilter(filtered: np.ndarray, ftypes: np.ndarray, name: str) -> np.ndarray:
    """Undo PNG scanline filters. ``filtered``: uint8 ``[H, W, bpp]``; returns uint8 ``[H, W, bpp]``.

    Pixel (r, x) depends on its left (a), upper (b) and upper-left (c) neighbours, so all pixels on
    one anti-diagonal ``r + x = d`` are independent: the loop runs over ``H + W - 1`` diagonals with
    vectorised work on each (fast enough for any realistic size without a compiled extension).
    """
    if np.any(ftypes > 4):
        raise ImageReadError(f"{name}: corrupt PNG (unknown scanline filter type {int(ftypes.max())})")
    h, w, bpp = filtered.shape
    if np.all(ftypes <= 2):  # None / Sub / Up only: row-wise vectorised.
        out = np.empty((h, w, bpp), dtype=np.uint8)
        prev = np.zeros((w, bpp), dtype=np.uint8)
        for r in range(h):
            row = filtered[r]
            t = ftypes[r]
            if t == 1:
                row = np.cumsum(row, axis=0, dtype=np.uint8)
            elif t == 2:
                row = row + prev  # uint8 wraps modulo 256 as PNG requires
            out[r] = row
            prev = out[r]
        return out
    recon = np.zeros((h + 1, w + 1, bpp), dtype=np.int32)  # zero row/column = "outside" pixels
    f32 = filtered.astype(np.int32)
    t_all = ftypes.astype(np.int32)
    for d in range(h + w - 1):
        r = np.arange(max(0, d - w + 1), min(h - 1, d) + 1)
        x = d - r
        a = recon[r + 1, x]
        b = recon[r, x + 1]
        c = recon[r, x]
        t = t_all[r][:, None]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([t == 1, t == 2, t == 3, t == 4], [a, b, (a + b) >> 1, paeth], 0)
        recon[r + 1, x + 1] = (f32[r, x] + pred) & 255
    return recon[1:, 1:].astype(np.uint8)


def decode_png16(data: bytes, *, name: str = "png") -> np.ndarray:
    """Decode a non-interlaced 16-bit PNG (grey, grey+alpha, RGB, RGBA) to uint16 ``[H, W, C]``.

    A ``tRNS`` transparent colour is returned as an extra alpha channel (65535 or 0).
    """
    width = height = depth = ctype = interlace = None
    idat = []
    trns = None
    for kind, body in _png_chunks(data, name):
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"tRNS":
            trns = body
    if width is None or depth != 16 or ctype not in (0, 2, 4, 6):
        raise ImageReadError(f"{name}: decode_png16 handles 16-bit grey/RGB(A) PNGs only")
    if interlace:
        raise ImageReadError(
            f"{name}: interlaced (Adam7) 16-bit colour PNGs are not supported; re-save the file "
            "without interlacing (e.g. `convert in.png -interlace none out.png`)"
        )
    channels = _PNG_CHANNELS[ctype]
    bpp = 2 * channels
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise ImageReadError(f"{name}: corrupt or truncated PNG data ({exc}); re-export or remove it") from exc
    stride = 1 + width * bpp
    if len(raw) < stride * height:
        raise ImageReadError(f"{name}: PNG image data is truncated; re-export or remove it")
    rows = np.frombuffer(raw, dtype=np.uint8, count=stride * height).reshape(height, stride)
    pix = _unfilter(rows[:, 1:].reshape(height, width, bpp), rows[:, 0], name)
    pix = pix.reshape(height, width, channels, 2).astype(np.uint16)
    out = (pix[..., 0] << 8) | pix[..., 1]
    if trns is not None and ctype in (0, 2) and len(trns) >= 2 * channels:
        key = np.array(struct.unpack(">" + "H" * channels, trns[: 2 * channels]), dtype=np.uint16)
        alpha = np.where(np.all(out == key, axis=-1), 0, 65535).astype(np.uint16)
        out = np.concatenate([out, alpha[..., None]], axis=-1)
    return out


# --------------------------------------------------------------------------------------------
# Pillow path.


def _pil_to_array(im, name: str) -> tuple[np.ndarray, int | None]:
    """A loaded Pillow image -> (array, bit depth override) following the module's rules."""
    from PIL import Image  # noqa: F401  (Pillow is imported lazily: workers that never read files skip it)

    mode = im.mode
    has_trns = "transparency" in im.info
    if mode == "1":
        return np.asarray(im.convert("L")), None
    if mode in ("P", "PA"):
        return np.asarray(im.convert("RGBA" if (has_trns or mode == "PA") else "RGB")), None
    if mode == "L" and has_trns:
        return np.asarray(im.convert("LA")), None
    if mode == "RGB" and has_trns:
        return np.asarray(im.convert("RGBA")), None
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im), None
    if mode in ("RGBa", "La"):  # premultiplied -> straight alpha
        return np.asarray(im.convert("RGBA" if mode == "RGBa" else "LA")), None
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.uint16)
        if has_trns:
            key = im.info["transparency"]
            alpha = np.where(arr == key, 0, 65535).astype(np.uint16)
            arr = np.stack([arr, alpha], axis=-1)
        return arr, 16
    if mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageReadError(f"{name}: 32-bit integer image with values outside 0..65535 is not supported")
        return arr.astype(np.uint16), 16
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB")), None
    raise ImageReadError(
        f"{name}: unsupported image mode {mode!r}; convert it to 8/16-bit grey or RGB(A) PNG/JPEG/WebP"
    )


def decode_image(data: bytes, *, background: Background = "white", name: str = "image") -> np.ndarray:
    """Decode PNG / JPEG / WebP bytes to float32 RGB ``[H, W, 3]`` in ``[0, 1]`` (module rules)."""
    if is_png16_colour(data):
        arr = decode_png16(data, name=name)
        return to_float_rgb(arr, background=background, bit_depth=16, name=name)
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im)
            arr, depth = _pil_to_array(im, name)
    except UnidentifiedImageError as exc:
        raise ImageReadError(
            f"{name}: not a readable image (PNG/JPEG/WebP expected); remove or replace the file"
        ) from exc
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise ImageReadError(f"{name}: corrupt or truncated image ({exc}); re-export or remove the file") from exc
    return to_float_rgb(arr, background=background, bit_depth=depth, name=name)


def read_image(path: Union[str, os.PathLike], *, background: Background = "white") -> np.ndarray:
    """Read an image file to float32 RGB ``[H, W, 3]`` in ``[0, 1]`` (module rules)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        # An I/O failure stays an OSError (not an ImageReadError): it may be transient, so sources
        # never replace such a file silently (that would make the data depend on timing).
        raise type(exc)(exc.errno, f"{path}: cannot read ({exc.strerror or exc}); check the path, permissions and storage") from exc
    if not data:
        raise ImageReadError(f"{path}: empty file; remove or replace it")
    return decode_image(data, background=background, name=path)


def check_image_file(path: Union[str, os.PathLike], *, level: str = "header") -> None:
    """Cheap validity check used when indexing folders; raises :class:`ImageReadError`.

    ``level='header'``: the file opens as an image and Pillow's ``verify()`` passes (catches
    non-images, empty and most truncated PNGs). ``'decode'``: full decode (catches everything,
    costs one read per file). ``'none'``: nothing.
    """
    if level == "none":
        return
    path = os.fspath(path)
    if level == "decode":
        read_image(path)
        return
    if level != "header":
        raise ValueError(f"validate must be 'header', 'decode' or 'none', got {level!r}")
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            raise ImageReadError(f"{path}: empty file; remove or replace it")
        with open(path, "rb") as f:
            head = f.read(64)
        if is_png16_colour(head):
            with open(path, "rb") as f:
                for _ in _png_chunks(f.read(), path):
                    pass
            return
        with Image.open(path) as im:
            im.verify()
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{path}: not a readable image (PNG/JPEG/WebP expected); remove or replace the file") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise ImageReadError(f"{path}: corrupt or truncated image ({exc}); re-export or remove the file") from exc
