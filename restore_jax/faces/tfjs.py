"""Reader for TensorFlow.js "layers/graph model" weight files (manifest JSON + binary shards), NumPy only.

A TF.js weights manifest (``*-weights_manifest.json``) is a JSON list of *groups*. Each group has

* ``paths``: the shard files (relative to the manifest), whose bytes are concatenated in order;
* ``weights``: the tensors stored back to back in that byte stream, each with ``name``, ``shape``,
  ``dtype`` (``float32``, ``int32`` or ``bool``) and optionally ``quantization``.

A quantized tensor is stored with ``quantization["dtype"]`` (``uint8`` or ``uint16``: one or two
bytes per element) and dequantizes affinely as ``value = q * scale + min``; ``float16``
quantization stores IEEE half floats. Multi-byte values are little-endian (TF.js writes the
platform's byte order, which is little-endian everywhere it runs).

This module only parses; it knows nothing about the networks. Everything is returned as float32.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["TfjsWeightsError", "load_tfjs_weights", "read_manifest"]

# Stored element types (unquantized) and their NumPy dtypes.
_PLAIN_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
}
# Quantized storage types.
_QUANT_DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
}


class TfjsWeightsError(ValueError):
    """A TF.js manifest or shard is missing, malformed or inconsistent."""


def read_manifest(manifest_path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Parse and sanity-check a ``*-weights_manifest.json``; returns its list of groups."""
    path = pathlib.Path(manifest_path)
    if not path.is_file():
        raise FileNotFoundError(f"TF.js weights manifest not found: {path}")
    try:
        groups = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TfjsWeightsError(f"{path} is not valid JSON ({err}); expected a TF.js weights manifest") from err
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        raise TfjsWeightsError(f"{path}: expected a JSON list of groups with 'paths' and 'weights'")
    for i, group in enumerate(groups):
        for key in ("paths", "weights"):
            if key not in group or not isinstance(group[key], list):
                raise TfjsWeightsError(f"{path}: group {i} has no list '{key}'")
        for entry in group["weights"]:
            missing = [k for k in ("name", "shape", "dtype") if k not in entry]
            if missing:
                raise TfjsWeightsError(f"{path}: group {i} weight entry {entry!r} lacks {missing}")
    return groups


def _storage_dtype(entry: Mapping[str, Any], where: str) -> tuple[np.dtype, Mapping[str, Any] | None]:
    quant = entry.get("quantization")
    if quant is not None:
        qdtype = quant.get("dtype")
        if qdtype not in _QUANT_DTYPES:
            raise TfjsWeightsError(
                f"{where}: tensor {entry['name']!r} has unknown quantization dtype {qdtype!r} "
                f"(supported: {sorted(_QUANT_DTYPES)})"
            )
        if qdtype != "float16" and ("scale" not in quant or "min" not in quant):
            raise TfjsWeightsError(f"{where}: tensor {entry['name']!r}: {qdtype} quantization needs 'scale' and 'min'")
        return _QUANT_DTYPES[qdtype], quant
    dtype = entry["dtype"]
    if dtype not in _PLAIN_DTYPES:
        raise TfjsWeightsError(
            f"{where}: tensor {entry['name']!r} has unknown dtype {dtype!r} (supported: {sorted(_PLAIN_DTYPES)})"
        )
    return _PLAIN_DTYPES[dtype], None


def _decode(raw: bytes, entry: Mapping[str, Any], dtype: np.dtype, quant: Mapping[str, Any] | None) -> np.ndarray:
    shape = tuple(int(s) for s in entry["shape"])
    values = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if quant is None or quant["dtype"] == "float16":
        return values.astype(np.float32)
    # Affine dequantization, computed in float64 then rounded once to float32.
    return (values.astype(np.float64) * float(quant["scale"]) + float(quant["min"])).astype(np.float32)


def load_tfjs_weights(manifest_path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """All tensors of a TF.js weights manifest as ``{name: float32 array}`` (dequantized).

    Raises ``FileNotFoundError`` for a missing manifest or shard and :class:`TfjsWeightsError` for
    unknown dtypes, duplicate names or shards whose total size does not match the manifest
    (e.g. a truncated download).
    """
    path = pathlib.Path(manifest_path)
    groups = read_manifest(path)
    out: dict[str, np.ndarray] = {}
    for gi, group in enumerate(groups):
        shard_paths: Sequence[pathlib.Path] = [path.parent / p for p in group["paths"]]
        for shard in shard_paths:
            if not shard.is_file():
                raise FileNotFoundError(f"TF.js weight shard {shard} (listed in {path.name}) not found")
        buffer = b"".join(shard.read_bytes() for shard in shard_paths)
        plan = []
        total = 0
        for entry in group["weights"]:
            dtype, quant = _storage_dtype(entry, str(path))
            count = int(np.prod([int(s) for s in entry["shape"]], dtype=np.int64))
            plan.append((entry, dtype, quant, total, count * dtype.itemsize))
            total += count * dtype.itemsize
        if len(buffer) != total:
            names = ", ".join(p.name for p in shard_paths)
            raise TfjsWeightsError(
                f"{path.name} group {gi}: the manifest describes {total} bytes but {names} hold {len(buffer)} "
                f"bytes ({'truncated' if len(buffer) < total else 'extra data'}); re-fetch the files"
            )
        for entry, dtype, quant, offset, nbytes in plan:
            name = entry["name"]
            if name in out:
                raise TfjsWeightsError(f"{path.name}: tensor name {name!r} appears twice")
            out[name] = _decode(buffer[offset : offset + nbytes], entry, dtype, quant)
    return out
