"""Image input / output for restoration: keep what the model does not touch, write it back.

Reading (:func:`read_image_for_restore`) reuses the project's decoders in
``input_pipelines/image_io.py`` (16-bit colour PNGs, palettes, EXIF orientation, error messages)
but, unlike training, keeps the information a restored file must carry back out:

* **Bit depth**: 8-bit values are divided by 255, 16-bit by 65535 (same rule as training).
  :func:`write_restored` writes a 16-bit PNG for a 16-bit input (PNG output), else 8 bits.
* **Grayscale** (L, 1-bit, 16-bit grey, grey + alpha) is replicated to RGB for the model; the
  output is converted back to one channel with the BT.601 luma weights
  ``Y = 0.299 R + 0.587 G + 0.114 B`` (full range, the weights of Pillow's ``convert('L')``).
* **Alpha** (RGBA, LA, palette or ``tRNS`` transparency): the model restores the stored colour
  channels as they are (no compositing, straight alpha), and the alpha channel is carried through
  unchanged. If the model changes the size (super-resolution), the alpha is resized to the output
  size: ``alpha_resize='bicubic'`` (default; MATLAB-compatible bicubic from
  :mod:`restore_jax.ops.resize`, clipped to ``[0, 1]``; smooth anti-aliased edges) or
  ``'nearest'`` (pixel ``i`` of the output takes input pixel ``floor((i + 0.5) * in / out)``;
  for an integer scale ``s`` that is ``i // s``: hard masks stay binary).

Writing: PNG (8 or 16 bits, grey / grey + alpha / RGB / RGBA; 16-bit files are encoded here,
since Pillow cannot write 16-bit colour), JPEG and WebP (8 bits; JPEG has no alpha). Frame
sequences (:func:`write_frames`): GIF (Pillow), MP4 / MOV / MKV (H.264 through
``input_pipelines/video_io.py``, the project's one PyAV module), or a folder of PNGs.

Unreadable files raise :class:`ImageReadError` (from ``input_pipelines.image_io``) naming the
file and the fix; unsupported output formats raise ``ValueError`` listing the supported ones.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import struct
import zlib
from collections.abc import Iterable
from typing import Union

import numpy as np

from input_pipelines.image_io import (
    ImageReadError,
    decode_png16,
    is_png16_colour,
    to_float_rgb,
)

__all__ = [
    "ImageInfo",
    "ImageReadError",
    "read_image_for_restore",
    "decode_image_for_restore",
    "restore_output",
    "rgb_to_gray",
    "resize_alpha",
    "write_image",
    "write_restored",
    "check_restored_output",
    "write_frames",
    "check_frames_output",
    "sequence_path",
    "encode_png16",
    "IMAGE_OUTPUT_EXTENSIONS",
    "VIDEO_OUTPUT_EXTENSIONS",
]

PathLike = Union[str, os.PathLike]
IMAGE_OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_OUTPUT_EXTENSIONS = (".gif", ".mp4", ".mov", ".mkv")
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What :func:`restore_output` needs to give a restored image its input's form back."""

    height: int
    width: int
    bit_depth: int  # 8 or 16
    grayscale: bool
    alpha: np.ndarray | None  # float32 [H, W] in [0, 1] (straight alpha), or None
    format: str  # "PNG", "JPEG", "WEBP", ... as decoded
    name: str = "image"

    @property
    def channels(self) -> int:
        """Channel count of the file: 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)."""
        return (1 if self.grayscale else 3) + (self.alpha is not None)


def _decode_raw(data: bytes, name: str) -> tuple[np.ndarray, int, str]:
    """Bytes -> (integer array [H, W, C] with C in 1..4, bit depth, format) without compositing."""
    if is_png16_colour(data):
        return decode_png16(data, name=name), 16, "PNG"
    from PIL import Image, ImageOps, UnidentifiedImageError

    # The mode conversion rules (palette, tRNS, 16-bit grey, ...) are the training reader's.
    from input_pipelines.image_io import _pil_to_array

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or "unknown"
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im)
            arr, depth = _pil_to_array(im, name)
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{name}: not a readable image (PNG/JPEG/WebP expected); remove or replace the file") from exc
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise ImageReadError(f"{name}: corrupt or truncated image ({exc}); re-export or remove the file") from exc
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if depth is None:
        depth = 16 if arr.dtype.itemsize >= 2 else 8
    return arr, depth, fmt


def decode_image_for_restore(data: bytes, *, name: str = "image") -> tuple[np.ndarray, ImageInfo]:
    """Decode image bytes to (float32 RGB ``[H, W, 3]`` in ``[0, 1]``, :class:`ImageInfo`)."""
    if not data:
        raise ImageReadError(f"{name}: empty file; remove or replace it")
    arr, depth, fmt = _decode_raw(data, name)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(f"{name}: unsupported channel layout {arr.shape}; convert it to grey or RGB(A)")
    c = arr.shape[-1]
    alpha = None
    if c in (2, 4):
        alpha = (arr[..., -1].astype(np.float64) / float((1 << depth) - 1)).astype(np.float32)
        arr = arr[..., :-1]
    rgb = to_float_rgb(arr, bit_depth=depth, name=name)  # grey -> 3 equal channels, / (2^depth - 1)
    info = ImageInfo(
        height=rgb.shape[0], width=rgb.shape[1], bit_depth=depth, grayscale=arr.shape[-1] == 1,
        alpha=alpha, format=fmt, name=name,
    )
    return rgb, info


def read_image_for_restore(path: PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file for restoration: (float32 RGB ``[H, W, 3]`` in ``[0, 1]``, :class:`ImageInfo`)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot open ({exc.strerror or exc}); check the path and permissions") from exc
    return decode_image_for_restore(data, name=path)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3]`` -> ``[..., 1]`` with the BT.601 luma weights (float64 sum, input dtype out)."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_gray expects [..., 3], got shape {rgb.shape}")
    y = rgb.astype(np.float64) @ np.asarray(LUMA_WEIGHTS)
    return y[..., None].astype(rgb.dtype if np.issubdtype(rgb.dtype, np.floating) else np.float32)


def resize_alpha(alpha: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """Resize an alpha plane ``[H, W]`` in ``[0, 1]`` to ``size = (H', W')`` (see module doc)."""
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.shape == tuple(size):
        return alpha
    if method == "nearest":
        rows = np.minimum(((np.arange(size[0]) + 0.5) * alpha.shape[0] / size[0]).astype(np.int64), alpha.shape[0] - 1)
        cols = np.minimum(((np.arange(size[1]) + 0.5) * alpha.shape[1] / size[1]).astype(np.int64), alpha.shape[1] - 1)
        return alpha[rows[:, None], cols[None, :]]
    if method == "bicubic":
        from restore_jax.ops.resize import imresize_np

        out = imresize_np(alpha[:, :, None], size=tuple(size))[:, :, 0]
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"alpha_resize must be 'bicubic' or 'nearest', got {method!r}")


def output_bit_depth(path: PathLike, info: ImageInfo) -> int:
    """Bit depth a restored image is written with: the input's for PNG output, else 8."""
    return info.bit_depth if pathlib.Path(path).suffix.lower() == ".png" else 8


_ROWS_PER_CHUNK = 256  # integer outputs are converted in row chunks: host memory stays ~ the output


def _gray_ints(y: np.ndarray) -> np.ndarray:
    """BT.601 luma of an integer RGB image, rounded, same dtype, computed in row chunks."""
    out = np.empty(y.shape[:2] + (1,), y.dtype)
    weights = np.asarray(LUMA_WEIGHTS, np.float64)
    for r in range(0, y.shape[0], _ROWS_PER_CHUNK):
        out[r : r + _ROWS_PER_CHUNK, :, 0] = np.rint(y[r : r + _ROWS_PER_CHUNK].astype(np.float64) @ weights)
    return out


def restore_output(y: np.ndarray, info: ImageInfo, *, alpha_resize: str = "bicubic") -> np.ndarray:
    """Give a restored RGB image ``y [H', W', 3]`` its input's form: grey back to one channel,
    the input's alpha appended (resized to ``H' x W'`` if needed).

    Float input gives float32 ``[H', W', C]``; uint8 / uint16 input (a large tiled result, already
    rounded) stays in its dtype, converted in row chunks so no float copy of the image is made."""
    y = np.asarray(y)
    if y.ndim != 3 or y.shape[-1] != 3:
        raise ValueError(f"restore_output expects an RGB image [H, W, 3], got shape {y.shape}")
    if y.dtype in (np.uint8, np.uint16):
        out = _gray_ints(y) if info.grayscale else y
        if info.alpha is not None:
            a = resize_alpha(info.alpha, y.shape[:2], alpha_resize)
            maxval = float(np.iinfo(y.dtype).max)
            a = np.rint(np.clip(a, 0.0, 1.0) * maxval).astype(y.dtype)
            out = np.concatenate([out, a[:, :, None]], axis=-1)
        return out
    y = y.astype(np.float32, copy=False)
    out = rgb_to_gray(y) if info.grayscale else y
    if info.alpha is not None:
        a = resize_alpha(info.alpha, y.shape[:2], alpha_resize)
        out = np.concatenate([out, a[:, :, None]], axis=-1)
    return out


# --------------------------------------------------------------------------------------------
# Writing.


def _to_ints(image: np.ndarray, bit_depth: int, name: str) -> np.ndarray:
    """Float in [0, 1] (clipped) or uint8 / uint16 -> uint8 / uint16 ``[H, W, C]``."""
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4) or min(x.shape[:2]) < 1:
        raise ValueError(f"{name}: expected an image [H, W] or [H, W, C] with C in 1..4, got shape {x.shape}")
    if bit_depth not in (8, 16):
        raise ValueError(f"{name}: bit_depth must be 8 or 16, got {bit_depth}")
    target = np.uint8 if bit_depth == 8 else np.uint16
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: the image contains NaN or infinite values; nothing was written")
        maxval = float((1 << bit_depth) - 1)
        out = np.empty(x.shape, target)  # row chunks: no float64 copy of a large image
        for r in range(0, x.shape[0], _ROWS_PER_CHUNK):
            out[r : r + _ROWS_PER_CHUNK] = np.round(np.clip(x[r : r + _ROWS_PER_CHUNK].astype(np.float64), 0.0, 1.0) * maxval)
        return out
    if x.dtype == target:
        return x
    raise ValueError(f"{name}: expected float values in [0, 1] or {np.dtype(target).name} for {bit_depth} bits, got {x.dtype}")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png16(image: np.ndarray, *, compress_level: int = 6) -> bytes:
    """uint16 ``[H, W, C]`` (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) -> 16-bit PNG bytes.

    Scanlines use filter type 0 (none); samples are big-endian as PNG requires.
    """
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.dtype != np.uint16 or x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"encode_png16 expects uint16 [H, W, C] with C in 1..4, got {x.dtype} {x.shape}")
    h, w, c = x.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = x.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, compress_level))
        + _png_chunk(b"IEND", b"")
    )


def write_image(path: PathLike, image: np.ndarray, *, bit_depth: int = 8, quality: int = 95) -> pathlib.Path:
    """Write ``image`` (float ``[H, W, C]`` in ``[0, 1]``, clipped; or uint8 / uint16) to ``path``.

    Format from the extension: ``.png`` (8 or 16 bits, 1-4 channels), ``.jpg`` / ``.jpeg`` (8 bits,
    grey or RGB, ``quality``), ``.webp`` (8 bits, ``quality``; lossless when ``quality=100``).
    """
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_OUTPUT_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported image format {ext or '(no extension)'!r}; use one of {', '.join(IMAGE_OUTPUT_EXTENSIONS)}"
        )
    if bit_depth == 16 and ext != ".png":
        raise ValueError(f"{path}: 16-bit output needs PNG ({ext} stores 8 bits); write a .png or pass bit_depth=8")
    arr = _to_ints(image, bit_depth, str(path))
    c = arr.shape[-1]
    if ext in (".jpg", ".jpeg") and c in (2, 4):
        raise ValueError(f"{path}: JPEG has no alpha channel; write a .png (or .webp) to keep the alpha")
    path.parent.mkdir(parents=True, exist_ok=True)
    if bit_depth == 16:
        path.write_bytes(encode_png16(arr))
        return path
    from PIL import Image

    im = Image.fromarray(arr[:, :, 0] if c == 1 else arr)  # uint8: L, LA, RGB or RGBA by shape
    mode = im.mode
    if ext == ".png":
        im.save(path, format="PNG")
    elif ext in (".jpg", ".jpeg"):
        im.save(path, format="JPEG", quality=int(quality))
    else:
        if mode in ("L", "LA"):
            im = im.convert("RGBA" if mode == "LA" else "RGB")
        im.save(path, format="WEBP", quality=int(quality), lossless=int(quality) >= 100)
    return path


def check_restored_output(path: PathLike, info: ImageInfo) -> None:
    """Raise ``ValueError`` (saying what to do) if ``path`` cannot store a restoration of an image
    read as ``info``: an unsupported extension, or an alpha channel into a JPEG. Cheap: call it
    before running a model, so a run is not lost on the write."""
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_OUTPUT_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported image format {ext or '(no extension)'!r}; use one of {', '.join(IMAGE_OUTPUT_EXTENSIONS)}"
        )
    if ext in (".jpg", ".jpeg") and info.alpha is not None:
        raise ValueError(
            f"{path}: {info.name} has an alpha channel (transparency) and JPEG cannot store one; "
            "write a .png or .webp to keep it (or remove the alpha from the input first)"
        )


def write_restored(
    path: PathLike,
    y: np.ndarray,
    info: ImageInfo,
    *,
    bit_depth: int | None = None,
    alpha_resize: str = "bicubic",
    quality: int = 95,
) -> pathlib.Path:
    """Write a restored RGB image ``y`` in its input's form (:func:`restore_output`).

    ``bit_depth`` defaults to the input's for PNG output (16-bit in -> 16-bit out) and 8 otherwise.
    """
    out = restore_output(y, info, alpha_resize=alpha_resize)
    if bit_depth is None:
        bit_depth = output_bit_depth(path, info)
    return write_image(path, out, bit_depth=bit_depth, quality=quality)


def _frames_uint8(frames: Iterable[np.ndarray], name: str) -> Iterable[np.ndarray]:
    for i, f in enumerate(frames):
        a = _to_ints(f, 8, f"{name} frame {i}")
        if a.shape[-1] == 1:
            a = np.repeat(a, 3, axis=-1)
        elif a.shape[-1] != 3:
            raise ValueError(f"{name}: video frames must be grey or RGB (no alpha), frame {i} has {a.shape[-1]} channels")
        yield a


def _even(frames: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """H.264 in yuv420p needs even sizes: repeat the last row / column when odd."""
    for f in frames:
        ph, pw = f.shape[0] % 2, f.shape[1] % 2
        yield np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge") if (ph or pw) else f


def check_frames_output(path: PathLike) -> str:
    """What a frame-sequence output path means: ``'video'`` (``VIDEO_OUTPUT_EXTENSIONS``),
    ``'pattern'`` (a printf pattern of PNG files such as ``out/u_%03d.png``) or ``'folder'`` (no
    extension: ``frame_000000.png ...`` inside). Anything else raises ``ValueError`` saying what works."""
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    if "%" in path.name:
        if ext != ".png":
            raise ValueError(f"{path}: a frame pattern must name PNG files, e.g. {path.parent / 'frame_%04d.png'}")
        try:
            a, b = path.name % 0, path.name % 1
        except (TypeError, ValueError):
            raise ValueError(f"{path}: a frame pattern needs exactly one integer field such as %04d") from None
        if a == b:
            raise ValueError(f"{path}: a frame pattern needs an integer field such as %04d")
        return "pattern"
    if ext in VIDEO_OUTPUT_EXTENSIONS:
        return "video"
    if ext == "":
        return "folder"
    raise ValueError(
        f"{path}: unsupported frame-sequence output {ext!r}; use one of {', '.join(VIDEO_OUTPUT_EXTENSIONS)}, "
        "a folder (no extension) or a PNG pattern such as out/frame_%04d.png"
    )


def sequence_path(path: PathLike, index: int) -> pathlib.Path:
    """File of frame ``index`` in a PNG-sequence output: ``path % index`` for a pattern, else
    ``path / frame_{index:06d}.png`` (a folder)."""
    path = pathlib.Path(path)
    if "%" in path.name:
        return path.parent / (path.name % index)
    return path / f"frame_{index:06d}.png"


def write_frames(
    path: PathLike,
    frames: Union[np.ndarray, Iterable[np.ndarray]],
    *,
    fps: float = 25.0,
    bit_depth: int = 8,
    crf: int = 18,
) -> pathlib.Path:
    """Write a frame sequence (``[T, H, W, C]`` float in ``[0, 1]`` or uint8, or an iterable of frames).

    * ``.gif``: Pillow, 8-bit palette per frame (lossy colour), looping, ``1000 / fps`` ms a frame;
    * ``.mp4`` / ``.mov`` / ``.mkv``: H.264 (libx264, yuv420p, ``crf``) via ``input_pipelines.video_io``;
      odd widths / heights get their last row / column repeated (the codec needs even sizes);
    * a path without extension: a folder of PNGs ``frame_000000.png, ...`` (``bit_depth`` 8 or 16);
    * a PNG pattern with one integer field, e.g. ``out/u_%02d.png`` (frame ``i`` -> ``path % i``).
    """
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    kind = check_frames_output(path)
    if kind != "video":
        if kind == "folder":
            path.mkdir(parents=True, exist_ok=True)
        n = 0
        for i, f in enumerate(frames):
            write_image(sequence_path(path, i), f, bit_depth=bit_depth)
            n += 1
        if n == 0:
            raise ValueError(f"{path}: no frames given")
        return path
    if bit_depth != 8:
        raise ValueError(f"{path}: {ext} stores 8 bits per channel; write a PNG folder for 16 bits")
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".gif":
        from PIL import Image

        ims = [Image.fromarray(a) for a in _frames_uint8(frames, str(path))]
        if not ims:
            raise ValueError(f"{path}: no frames given")
        ims[0].save(path, format="GIF", save_all=True, append_images=ims[1:], duration=round(1000.0 / fps), loop=0)
        return path
    from input_pipelines.video_io import write_video

    write_video(path, _even(_frames_uint8(frames, str(path))), fps=fps, codec="libx264", crf=crf, pix_fmt="yuv420p")
    return path
