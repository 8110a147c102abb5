"""ArrayRecord conversion: write any source's records to ``.array_record`` files and read them back.

Record format: each record is the bytes of an **uncompressed NumPy ``.npz`` archive**
(``np.savez``; ``np.savez_compressed`` with ``compress=True``) holding one array per key of the
source record (keys such as ``deg/sigma`` are kept verbatim). It needs nothing but NumPy to read,
never unpickles (``allow_pickle=False``), and keeps dtypes and shapes exactly.

Image arrays (keys ``image``, ``frames``, ``images``, ``views`` by default) are stored compactly
but **losslessly**: with ``image_dtype='auto'`` a float array in ``[0, 1]`` is stored as uint8 when
``round(x * 255) / 255`` reproduces it bit for bit (8-bit sources), else as uint16 when
``round(x * 65535) / 65535`` does (16-bit sources), else as float32. On reading, uint8 / uint16
image arrays are converted back to float32 by ``/ 255`` / ``/ 65535`` (computed in float64, like
:mod:`input_pipelines.image_io`), so a converted folder gives byte-identical records.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np

__all__ = ["IMAGE_KEYS", "encode_record", "decode_record", "write_arrayrecord", "open_reader"]

IMAGE_KEYS: tuple[str, ...] = ("image", "frames", "images", "views")
_IMAGE_DTYPES = ("auto", "uint8", "uint16", "float32")


def _quantize(x: np.ndarray, image_dtype: str) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.floating):
        return x
    if image_dtype == "float32":
        return x.astype(np.float32)
    x32 = x.astype(np.float32)
    for dtype, scale in ((np.uint8, 255.0), (np.uint16, 65535.0)):
        if image_dtype not in ("auto", np.dtype(dtype).name):
            continue
        q = np.round(x32.astype(np.float64) * scale)
        if q.min(initial=0) < 0 or q.max(initial=0) > scale:
            if image_dtype != "auto":
                raise ValueError(f"image values outside [0, 1] cannot be stored as {image_dtype}")
            continue
        q = q.astype(dtype)
        if image_dtype != "auto" or np.array_equal((q.astype(np.float64) / scale).astype(np.float32), x32):
            return q
    return x32


def encode_record(
    record: Mapping[str, Any],
    *,
    image_dtype: str = "auto",
    image_keys: Sequence[str] = IMAGE_KEYS,
    compress: bool = False,
) -> bytes:
    """Serialize a dict of arrays to ``.npz`` bytes (images quantized as described above)."""
    if image_dtype not in _IMAGE_DTYPES:
        raise ValueError(f"image_dtype must be one of {_IMAGE_DTYPES}, got {image_dtype!r}")
    arrays = {}
    for key, value in record.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"record key {key!r} holds Python objects; only numeric/bool/str arrays can be stored")
        arrays[key] = _quantize(arr, image_dtype) if key in image_keys else arr
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def decode_record(data: bytes, *, image_keys: Sequence[str] = IMAGE_KEYS) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_record`: quantized images come back as float32 in ``[0, 1]``."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        out = {k: npz[k] for k in npz.files}
    for key in image_keys:
        if key in out and out[key].dtype in (np.uint8, np.uint16):
            scale = 255.0 if out[key].dtype == np.uint8 else 65535.0
            out[key] = (out[key].astype(np.float64) / scale).astype(np.float32)
    return out


def open_reader(paths: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]):
    """An ``array_record`` random-access data source over one or more files (picklable)."""
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return ArrayRecordDataSource([os.fspath(p) for p in paths])


def write_arrayrecord(
    source: Union[Sequence[Mapping[str, Any]], Iterable[Mapping[str, Any]]],
    path: Union[str, os.PathLike],
    *,
    image_dtype: str = "auto",
    image_keys: Sequence[str] = IMAGE_KEYS,
    compress: bool = False,
    indices: Iterable[int] | None = None,
    group_size: int = 1,
) -> int:
    """Write every record of ``source`` (or ``source[i]`` for ``i`` in ``indices``) to ``path``.

    ``source``: any random-access source (e.g. ``ImageFolderSource``) or an iterable of dicts.
    ``group_size=1`` (records individually addressable) is what random access wants. The file is
    written to ``path + '.tmp'`` and renamed when complete, so an interrupted conversion leaves no
    half file behind. Returns the number of records written. Read it back with
    ``ArrayRecordSource(path)`` / ``make_source({'name': 'arrayrecord', 'kwargs': {'paths': path}})``.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    if indices is not None:
        records: Iterable[Mapping[str, Any]] = (source[i] for i in indices)  # type: ignore[index]
    elif hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        records = (source[i] for i in range(len(source)))  # type: ignore[arg-type]
    else:
        records = source
    tmp = path + ".tmp"
    writer = ArrayRecordWriter(tmp, f"group_size:{int(group_size)}")
    count = 0
    try:
        for rec in records:
            writer.write(encode_record(rec, image_dtype=image_dtype, image_keys=image_keys, compress=compress))
            count += 1
    finally:
        writer.close()
    if count == 0:
        os.remove(tmp)
        raise ValueError("write_arrayrecord: the source has no records")
    os.replace(tmp, path)
    return count
