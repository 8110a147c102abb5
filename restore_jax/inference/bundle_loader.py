"""Load an exported restoration bundle with nothing but ``jax`` and ``numpy``.

This file imports only the standard library, NumPy and JAX (no Flax, no other ``restore_jax``
module), so it also works as a stand-alone copy: :func:`restore_jax.inference.export.export_bundle`
puts one into every bundle, and ::

    import sys; sys.path.insert(0, "path/to/bundle")
    from bundle_loader import load_bundle
    restore = load_bundle("path/to/bundle")
    y = restore(x, u=0.3)          # x: float [H, W, C] or [B, H, W, C] in the manifest's input range

Bundle layout (see ``docs/inference.md``)::

    manifest.json        what the function expects (scale, size multiple, ranges, controls, ...)
    function.jaxexport   jax.export serialization of f(params, x, controls) -> y, symbolic b/h/w
    params.npz           the parameters, one array per flattened path (no pickle)
    bundle_loader.py     a copy of this file

The loaded callable pads the input (bottom / right, ``manifest['pad_mode']``) to the size
multiple, checks and fills in the controls, runs the exported function and crops the output.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Bundle", "BundleError", "load_bundle", "BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION"]

BUNDLE_FORMAT = "restore_jax.bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
# jax.default_backend() says "gpu"; exported functions name the GPU platform "cuda" or "rocm".
_PLATFORM_ALIASES = {"gpu": ("cuda", "rocm")}


class BundleError(ValueError):
    """A bundle is missing, incomplete or used with inputs it does not accept (message says which)."""


def _control_array(name: str, spec: Mapping[str, Any], value: Any, batch: int) -> np.ndarray:
    shape = tuple(spec.get("shape", ()))
    dtype = np.dtype(spec.get("dtype", "float32"))
    arr = np.asarray(value)
    if arr.dtype == object:
        raise BundleError(f"control {name!r}: expected a number or an array, got {value!r}")
    if arr.shape == shape:
        arr = np.broadcast_to(arr, (batch,) + shape)
    elif arr.shape != (batch,) + shape:
        raise BundleError(
            f"control {name!r}: expected shape {shape} (one value for the whole batch) or "
            f"{(batch,) + shape} (one per image), got {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise BundleError(f"control {name!r}: values must be finite, got {value!r}")
    lo, hi = spec.get("min"), spec.get("max")
    if arr.size and lo is not None and float(np.min(arr)) < lo:
        raise BundleError(f"control {name!r}: {float(np.min(arr))} is below its minimum {lo} (range [{lo}, {hi}])")
    if arr.size and hi is not None and float(np.max(arr)) > hi:
        raise BundleError(f"control {name!r}: {float(np.max(arr))} is above its maximum {hi} (range [{lo}, {hi}])")
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(arr == np.round(arr)):
            raise BundleError(f"control {name!r}: expected integer values, got {value!r}")
    return np.ascontiguousarray(arr.astype(dtype))


class Bundle:
    """A loaded bundle: call it like the model, ``bundle(x, **controls) -> np.ndarray``.

    Attributes: ``manifest`` (dict), ``exported`` (``jax.export.Exported``), ``params`` (flat dict
    of device arrays), ``scale``, ``multiple``, ``controls`` (name -> spec dict).
    """

    def __init__(
        self, path: pathlib.Path, manifest: dict, exported: Any, params: dict[str, jax.Array], device: Any = None
    ):
        self.path = path
        self.device = device
        self.manifest = manifest
        self.exported = exported
        self.params = params
        self.scale = int(manifest["scale"])
        self.multiple = int(manifest["multiple"])
        self.pad_mode = str(manifest.get("pad_mode", "reflect"))
        self.controls: dict[str, dict] = dict(manifest.get("controls", {}))
        self.channels = int(manifest["input"]["channels"])
        self.input_dtype = np.dtype(manifest["input"]["dtype"])
        self.input_range = tuple(manifest["input"].get("range", (0.0, 1.0)))
        self._run = jax.jit(exported.call)

    def __repr__(self) -> str:
        names = ", ".join(self.controls) or "none"
        return (
            f"Bundle(method={self.manifest.get('method')!r}, scale={self.scale}, multiple={self.multiple}, "
            f"controls: {names}, platforms={list(self.exported.platforms)})"
        )

    def control_arrays(self, batch: int, **controls: Any) -> dict[str, np.ndarray]:
        """Checked control arrays ``[batch, *shape]``: given values, else the manifest defaults."""
        unknown = sorted(set(controls) - set(self.controls))
        if unknown:
            known = ", ".join(sorted(self.controls)) or "none"
            raise BundleError(f"unknown control(s) {unknown}; this bundle accepts: {known}")
        out = {}
        for name, spec in self.controls.items():
            value = controls.get(name, spec.get("default"))
            if value is None:
                raise BundleError(f"control {name!r} has no default in the manifest; pass {name}=...")
            out[name] = _control_array(name, spec, value, batch)
        return out

    def _check_input(self, x: Any) -> tuple[jax.Array, bool]:
        squeeze = False
        arr = x if isinstance(x, jax.Array) else np.asarray(x)
        if arr.ndim == 3:
            arr, squeeze = arr[None], True
        if arr.ndim != 4:
            raise BundleError(f"expected an image [H, W, C] or a batch [B, H, W, C], got shape {tuple(arr.shape)}")
        if arr.shape[-1] != self.channels:
            raise BundleError(
                f"expected {self.channels} channels (layout NHWC, {self.manifest['input'].get('color', '')}), "
                f"got shape {tuple(arr.shape)}"
            )
        if min(arr.shape[:3]) < 1:
            raise BundleError(f"empty input of shape {tuple(arr.shape)}")
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            lo, hi = self.input_range
            raise BundleError(
                f"expected floating-point input in [{lo}, {hi}], got dtype {arr.dtype}; "
                f"convert first (e.g. uint8: x / 255 for range [0, 1])"
            )
        arr = jnp.asarray(arr, dtype=self.input_dtype)
        return (arr if self.device is None else jax.device_put(arr, self.device)), squeeze

    def apply_padded(self, x: jax.Array, controls: Mapping[str, Any]) -> jax.Array:
        """The raw exported function on ``x [B, H, W, C]`` whose H and W are multiples of ``multiple``."""
        return self._run(self.params, x, dict(controls))

    def __call__(self, x: Any, **controls: Any) -> np.ndarray:
        """Restore ``x`` (float ``[H, W, C]`` or ``[B, H, W, C]`` in the manifest's input range).

        Controls are scalars (whole batch) or ``[B, *shape]`` arrays; omitted ones take their
        manifest default. Returns a NumPy array ``[..., H*scale, W*scale, C_out]``.
        """
        arr, squeeze = self._check_input(x)
        b, h, w, _ = arr.shape
        ctrl = self.control_arrays(b, **controls)
        m = self.multiple
        ph, pw = -h % m, -w % m
        if ph or pw:
            arr = jnp.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=self.pad_mode)
        y = self.apply_padded(arr, ctrl)
        y = np.asarray(y[:, : h * self.scale, : w * self.scale])
        return y[0] if squeeze else y

    def tile_fn(self, **controls: Any):
        """A function ``[n, t, t, C] -> [n, t*scale, t*scale, C_out]`` with these controls, for
        ``restore_jax.inference.tiled_apply`` (tile size a multiple of ``multiple``)."""
        self.control_arrays(1, **controls)  # validate now, not per tile

        def fn(xb):
            ctrl = self.control_arrays(xb.shape[0], **controls)
            return self.apply_padded(jnp.asarray(xb, self.input_dtype), ctrl)

        return fn


def _read_manifest(path: pathlib.Path) -> dict:
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise BundleError(f"{path}: no {MANIFEST_FILE}; is this a bundle written by restore_jax export_bundle?")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc}); re-export the bundle") from exc
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{mpath}: not a {BUNDLE_FORMAT} manifest (format={manifest.get('format')!r})")
    if int(manifest.get("format_version", 0)) > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{mpath}: bundle format version {manifest.get('format_version')} is newer than this loader "
            f"({BUNDLE_FORMAT_VERSION}); use the bundle_loader.py shipped inside the bundle"
        )
    return manifest


def _load_params(path: pathlib.Path, manifest: dict, expected: Mapping[str, Any]) -> dict[str, np.ndarray]:
    info = manifest["params"]
    ppath = path / info["file"]
    if not ppath.is_file():
        raise BundleError(f"{path}: parameter file {info['file']} is missing; re-export the bundle")
    stored = info.get("stored_dtypes", {})
    params = {}
    try:
        with np.load(ppath, allow_pickle=False) as npz:
            for key in npz.files:
                arr = npz[key]
                if key in stored:  # e.g. bfloat16 saved as its uint16 bit pattern
                    arr = arr.view(np.dtype(jnp.dtype(stored[key])))
                params[key] = arr
    except (OSError, ValueError) as exc:
        raise BundleError(f"{ppath}: unreadable parameter file ({exc}); re-export the bundle") from exc
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:
        raise BundleError(f"{ppath} does not match the exported function: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, aval in expected.items():
        if params[key].shape != tuple(aval.shape) or params[key].dtype != aval.dtype:
            raise BundleError(
                f"{ppath}: parameter {key!r} has {params[key].dtype}{list(params[key].shape)}, "
                f"the exported function expects {aval.dtype}{list(aval.shape)}"
            )
    return params


def load_bundle(path: Union[str, os.PathLike], *, device: Any = None) -> Bundle:
    """Load the bundle in directory ``path``; parameters go to ``device`` (default: JAX's default)."""
    path = pathlib.Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: bundle directory not found")
    manifest = _read_manifest(path)
    fpath = path / manifest["function"]["file"]
    try:
        blob = fpath.read_bytes()
    except OSError as exc:
        raise BundleError(f"{fpath}: cannot read the exported function ({exc}); re-export the bundle") from exc
    try:
        exported = jax.export.deserialize(bytearray(blob))
    except Exception as exc:  # noqa: BLE001 - any failure here means the same thing to the user
        raise BundleError(
            f"{fpath}: cannot deserialize the exported function ({type(exc).__name__}: {exc}). It was written "
            f"with jax {manifest.get('jax_version')}; this is jax {jax.__version__} (serialized functions load in "
            "the same or a newer jax within the compatibility window)"
        ) from exc
    platform = jax.default_backend() if device is None else device.platform
    accepted = _PLATFORM_ALIASES.get(platform, (platform,))
    if not any(p in exported.platforms for p in accepted):
        raise BundleError(
            f"{path}: exported for platforms {list(exported.platforms)}, but this machine runs on {platform!r}; "
            f"re-export with platforms=({', '.join(repr(p) for p in exported.platforms)}, {platform!r})"
        )
    (param_avals, _x_aval, _controls_avals), _ = jax.tree_util.tree_unflatten(exported.in_tree, exported.in_avals)
    params = _load_params(path, manifest, param_avals)
    params = jax.device_put(params, device)
    return Bundle(path, manifest, exported, params, device)
