"""Load an exported restoration bundle with ``jax``, ``numpy`` and ``flatbuffers`` only.

This file imports only the standard library, NumPy and JAX (no Flax, no other ``restore_jax``
module), so it also works as a stand-alone copy: :func:`restore_jax.inference.export.export_bundle`
puts one into every bundle, and ::

    import sys; sys.path.insert(0, "path/to/bundle")
    from bundle_loader import load_bundle
    restore = load_bundle("path/to/bundle")
    y = restore(x, u=0.3)          # image bundle: x float [H, W, C] or [B, H, W, C]
    y = restore(frames)            # window bundle: frames [T, H, W, C] or [B, T, H, W, C], T fixed

Bundle layout (see ``docs/inference.md``)::

    manifest.json        what the function expects (kind, scale, size multiple, ranges, controls, ...)
    function.jaxexport   jax.export serialization of f(params, x, controls) -> y, symbolic b/h/w
    params.npz           the parameters, one array per flattened path (no pickle)
    bundle_loader.py     a copy of this file
    requirements.txt     what loading and running it needs (BUNDLE_REQUIREMENTS): pip install -r

What a bundle needs (:data:`BUNDLE_REQUIREMENTS`, measured in a fresh virtual environment): ``jax``,
which brings ``jaxlib``, ``numpy``, ``ml_dtypes``, ``opt_einsum`` and ``scipy`` (all of them are
imported when a bundle runs), and ``flatbuffers``, which ``jax.export``'s deserializer imports
although jax does not depend on it. Nothing else: no Flax, Orbax or ``restore_jax``.

The loaded callable pads the input (bottom / right, ``manifest['pad_mode']``) to the size
multiple, checks and fills in the controls, runs the exported function and crops the output.
The manifest is checked against itself and against the exported function's signature before
use: a bundle whose manifest does not describe its function is refused with a :class:`BundleError`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import zipfile
from collections.abc import Mapping
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Bundle",
    "BundleError",
    "load_bundle",
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_INPUT_KINDS",
    "BUNDLE_REQUIREMENTS",
]

BUNDLE_FORMAT = "restore_jax.bundle"
# 1: image bundles (``x [b, H, W, C]``); 2: adds window bundles (``x [b, T, H, W, C]``).
BUNDLE_FORMAT_VERSION = 2
#: Input kinds a bundle can have: one image per batch element, or a fixed window of frames.
BUNDLE_INPUT_KINDS = ("image", "window")
MANIFEST_FILE = "manifest.json"
REQUIREMENTS_FILE = "requirements.txt"
#: The packages loading and running a bundle needs (pip requirement strings; the bundle's
#: ``requirements.txt`` raises jax's bound to the exporting version). ``jax`` pulls in ``jaxlib``,
#: ``numpy``, ``ml_dtypes``, ``opt_einsum`` and ``scipy``; ``flatbuffers`` is needed by
#: ``jax.export.deserialize`` but is not a dependency of jax. pyproject.toml's ``bundle`` extra repeats it.
BUNDLE_REQUIREMENTS = ("jax>=0.10", "numpy>=1.26", "flatbuffers")
PAD_MODES = ("reflect", "symmetric", "edge", "constant")
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


# -- manifest checks -------------------------------------------------------------------------------


def _positive_int(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BundleError(f"{where}: {name} must be a positive integer, got {value!r}; the manifest is damaged, re-export the bundle")
    return value


def _section(where: str, manifest: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = manifest.get(name)
    if not isinstance(value, Mapping):
        raise BundleError(f"{where}: the manifest has no {name!r} section (got {value!r}); re-export the bundle")
    return value


def _file_name(where: str, section: Mapping[str, Any], what: str) -> str:
    """A plain file name inside the bundle (no directories: a manifest cannot point elsewhere)."""
    name = section.get("file")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise BundleError(f"{where}: the {what} file name must be a plain file name inside the bundle, got {name!r}")
    return name


def _dtype(where: str, name: str, value: Any) -> np.dtype:
    try:
        return np.dtype(jnp.dtype(value))
    except TypeError as exc:
        raise BundleError(f"{where}: {name} {value!r} is not a dtype ({exc})") from exc


def _check_controls(where: str, controls: Any) -> dict[str, dict]:
    if not isinstance(controls, Mapping):
        raise BundleError(f"{where}: 'controls' must be a mapping of name -> spec, got {controls!r}")
    out = {}
    for name, spec in controls.items():
        if not isinstance(spec, Mapping):
            raise BundleError(f"{where}: control {name!r} must be a spec mapping, got {spec!r}")
        shape = spec.get("shape", [])
        if not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise BundleError(f"{where}: control {name!r} has shape {shape!r}; expected a list of sizes")
        dtype = _dtype(where, f"control {name!r} dtype", spec.get("dtype", "float32"))
        for key in ("min", "max"):
            v = spec.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise BundleError(f"{where}: control {name!r} has {key}={v!r}; expected a finite number or null")
        out[str(name)] = {**spec, "shape": tuple(shape), "dtype": dtype.name}
    return out


def _signature(exported: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(param_avals, x_aval, {control: aval})`` of an exported ``f(params, x, controls)``."""
    try:
        (param_avals, x_aval, ctrl_avals), kwargs = jax.tree_util.tree_unflatten(exported.in_tree, exported.in_avals)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"the exported function is not f(params, x, controls) ({exc}); was it written by export_bundle?") from exc
    if kwargs or not isinstance(param_avals, Mapping) or not isinstance(ctrl_avals, Mapping):
        raise BundleError("the exported function is not f(params: dict, x, controls: dict); was it written by export_bundle?")
    return param_avals, x_aval, dict(ctrl_avals)


def _check_manifest(path: pathlib.Path, manifest: Mapping[str, Any], exported: Any) -> dict[str, Any]:
    """The manifest's fields, checked against themselves and the exported function's signature."""
    where = str(path / MANIFEST_FILE)
    kind = manifest.get("kind", "image")  # format 1 bundles have no kind: images
    if kind not in BUNDLE_INPUT_KINDS:
        raise BundleError(
            f"{where}: unknown input kind {kind!r}; this loader reads {', '.join(BUNDLE_INPUT_KINDS)} bundles "
            "(a newer export? use the bundle_loader.py shipped inside the bundle)"
        )
    fields: dict[str, Any] = {"kind": kind, "window": 0, "temporal_scale": 1, "stride": None}
    if kind == "window":
        fields["window"] = _positive_int(where, "window", manifest.get("window"))
        fields["temporal_scale"] = _positive_int(where, "temporal_scale", manifest.get("temporal_scale", 1))
        if manifest.get("stride") is not None:
            fields["stride"] = _positive_int(where, "stride", manifest["stride"])
    fields["scale"] = _positive_int(where, "scale", manifest.get("scale"))
    fields["multiple"] = _positive_int(where, "multiple", manifest.get("multiple"))
    pad_mode = manifest.get("pad_mode", "reflect")
    if pad_mode not in PAD_MODES:
        raise BundleError(f"{where}: pad_mode {pad_mode!r} is not one of {PAD_MODES}")
    fields["pad_mode"] = pad_mode
    limit = manifest.get("max_batch_pixels")
    fields["max_batch_pixels"] = None if limit is None else _positive_int(where, "max_batch_pixels", limit)
    inp = _section(where, manifest, "input")
    fields["channels"] = _positive_int(where, "input channels", inp.get("channels"))
    fields["input_dtype"] = _dtype(where, "input dtype", inp.get("dtype", "float32"))
    rng = inp.get("range", (0.0, 1.0))
    if (
        not isinstance(rng, (list, tuple)) or len(rng) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in rng)
        or rng[0] >= rng[1]
    ):
        raise BundleError(f"{where}: input range must be [low, high] with low < high, got {rng!r}")
    fields["input_range"] = (float(rng[0]), float(rng[1]))
    fields["controls"] = _check_controls(where, manifest.get("controls", {}))
    fields["function_file"] = _file_name(where, _section(where, manifest, "function"), "function")
    fields["params_file"] = _file_name(where, _section(where, manifest, "params"), "params")

    # The manifest must describe the exported function (it is what the loader pads, crops and checks by).
    param_avals, x_aval, ctrl_avals = _signature(exported)
    ndim = 5 if kind == "window" else 4
    described = f"kind={kind!r}" + (f", window={fields['window']}" if kind == "window" else "")
    if x_aval.ndim != ndim or x_aval.shape[-1] != fields["channels"] or (
        kind == "window" and x_aval.shape[1] != fields["window"]
    ):
        raise BundleError(
            f"{where}: the manifest says {described}, {fields['channels']} channels, but the exported function "
            f"takes x of shape {tuple(x_aval.shape)}; the manifest does not match function file, re-export the bundle"
        )
    if np.dtype(x_aval.dtype) != fields["input_dtype"]:
        raise BundleError(f"{where}: input dtype {fields['input_dtype']} but the exported function takes {x_aval.dtype}")
    outs = list(exported.out_avals)
    if len(outs) != 1 or outs[0].ndim != ndim:
        raise BundleError(f"{where}: the manifest says {described} but the exported function returns {outs}")
    if kind == "window":
        t_out = fields["temporal_scale"] * (fields["window"] - 1) + 1
        if outs[0].shape[1] != t_out:
            raise BundleError(
                f"{where}: window={fields['window']}, temporal_scale={fields['temporal_scale']} mean {t_out} output "
                f"frames, but the exported function returns {tuple(outs[0].shape)}"
            )
    if set(ctrl_avals) != set(fields["controls"]):
        raise BundleError(
            f"{where}: the manifest lists controls {sorted(fields['controls'])}, the exported function takes {sorted(ctrl_avals)}"
        )
    for name, spec in fields["controls"].items():
        aval = ctrl_avals[name]
        if tuple(aval.shape[1:]) != spec["shape"] or np.dtype(aval.dtype) != np.dtype(spec["dtype"]):
            raise BundleError(
                f"{where}: control {name!r} is {spec['dtype']}{list(spec['shape'])} per item in the manifest, "
                f"the exported function takes {aval.dtype}{list(aval.shape)}"
            )
    _check_scale_and_multiple(where, fields, exported, param_avals, x_aval, ctrl_avals)
    return fields


def _check_scale_and_multiple(
    where: str, fields: Mapping[str, Any], exported: Any, param_avals: Mapping[str, Any], x_aval: Any,
    ctrl_avals: Mapping[str, Any],
) -> None:
    """The exported function must take a ``multiple x multiple`` input and return it ``scale`` times
    larger: the loader pads to ``multiple`` and crops to ``scale`` times the input, so an edited
    ``scale`` would crop (or leave) pixels silently and an edited ``multiple`` fail inside jax.
    Checked by abstract evaluation of the exported call (no compile)."""
    m, s = fields["multiple"], fields["scale"]
    frames = (fields["window"],) if fields["kind"] == "window" else ()
    probe = (
        {k: jax.ShapeDtypeStruct(tuple(a.shape), a.dtype) for k, a in param_avals.items()},
        jax.ShapeDtypeStruct((1, *frames, m, m, fields["channels"]), x_aval.dtype),
        {k: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype) for k, a in ctrl_avals.items()},
    )
    try:
        out = jax.eval_shape(exported.call, *probe)
    except Exception as exc:  # noqa: BLE001 - jax says why the shape is refused; the cause is the field
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise BundleError(
            f"{where}: multiple={m}, but the exported function does not take a {m}x{m} input ({reason}); "
            "the manifest does not match the function file, re-export the bundle"
        ) from exc
    got = tuple(int(d) for d in out.shape[-3:-1])
    if got != (m * s, m * s):
        raise BundleError(
            f"{where}: scale={s}, but the exported function maps a {m}x{m} input to {got[0]}x{got[1]} "
            f"(scale {got[0] / m:g}); the manifest does not match the function file, re-export the bundle"
        )


# -- the loaded bundle -----------------------------------------------------------------------------


class Bundle:
    """A loaded bundle: call it like the model, ``bundle(x, **controls) -> np.ndarray``.

    Attributes: ``manifest`` (dict), ``exported`` (``jax.export.Exported``), ``params`` (flat dict
    of device arrays), ``kind`` (``'image'`` or ``'window'``), ``scale``, ``multiple``, ``controls``
    (name -> spec dict), ``max_batch_pixels``; window bundles also ``window`` (frames per call),
    ``temporal_scale``, ``output_frames`` and ``stride`` (``None`` when not recorded).
    """

    def __init__(
        self, path: pathlib.Path, manifest: dict, exported: Any, params: dict[str, jax.Array], device: Any = None
    ):
        fields = _check_manifest(path, manifest, exported)
        self.path = path
        self.device = device
        self.manifest = manifest
        self.exported = exported
        self.params = params
        self.kind: str = fields["kind"]
        self.window: int = fields["window"]
        self.temporal_scale: int = fields["temporal_scale"]
        self.stride: int | None = fields["stride"]
        self.output_frames: int = self.temporal_scale * (self.window - 1) + 1 if self.kind == "window" else 0
        self.scale: int = fields["scale"]
        self.multiple: int = fields["multiple"]
        self.pad_mode: str = fields["pad_mode"]
        self.max_batch_pixels: int | None = fields["max_batch_pixels"]
        self.controls: dict[str, dict] = fields["controls"]
        self.channels: int = fields["channels"]
        self.input_dtype = fields["input_dtype"]
        self.input_range = fields["input_range"]
        self._run = jax.jit(exported.call)

    def __repr__(self) -> str:
        names = ", ".join(self.controls) or "none"
        kind = f"window of {self.window} -> {self.output_frames} frames" if self.kind == "window" else "image"
        return (
            f"Bundle(method={self.manifest.get('method')!r}, {kind}, scale={self.scale}, multiple={self.multiple}, "
            f"controls: {names}, platforms={list(self.exported.platforms)})"
        )

    def _describe_input(self) -> str:
        c = self.channels
        if self.kind == "window":
            t = self.window
            return f"a window of {t} frames [{t}, H, W, {c}] or a batch of windows [B, {t}, H, W, {c}]"
        return f"an image [H, W, {c}] or a batch [B, H, W, {c}]"

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
        one = 4 if self.kind == "window" else 3  # dims of one item
        if arr.ndim == one:
            arr, squeeze = arr[None], True
        if arr.ndim != one + 1:
            raise BundleError(f"expected {self._describe_input()}, got shape {tuple(arr.shape)}")
        if self.kind == "window" and arr.shape[1] != self.window:
            step = f" (stride {self.stride})" if self.stride else ""
            raise BundleError(
                f"this bundle takes windows of exactly {self.window} frames ({self._describe_input()}), got "
                f"{arr.shape[1]} frames in shape {tuple(arr.shape)}; split a longer video into windows of "
                f"{self.window} frames{step}"
            )
        if arr.shape[-1] != self.channels:
            raise BundleError(
                f"expected {self.channels} channels (layout {self.manifest['input'].get('layout', 'NHWC')}, "
                f"{self.manifest['input'].get('color', '')}), got shape {tuple(arr.shape)}"
            )
        if min(arr.shape) < 1:
            raise BundleError(f"empty input of shape {tuple(arr.shape)}")
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            lo, hi = self.input_range
            raise BundleError(
                f"expected floating-point input in [{lo}, {hi}], got dtype {arr.dtype}; "
                f"convert first (e.g. uint8: x / 255 for range [0, 1])"
            )
        arr = jnp.asarray(arr, dtype=self.input_dtype)
        return (arr if self.device is None else jax.device_put(arr, self.device)), squeeze

    def _check_size(self, shape: tuple[int, ...]) -> None:
        """Refuse a call above ``max_batch_pixels`` (batch x height x width, padded) with a clear message."""
        b, h, w = shape[0], shape[-3], shape[-2]
        if self.max_batch_pixels is not None and b * h * w > self.max_batch_pixels:
            raise BundleError(
                f"a call of this bundle takes at most {self.max_batch_pixels} pixels (batch x padded height x width); "
                f"got {b} x {h} x {w} = {b * h * w}. Split the batch, or tile the input "
                "(bundle.tile_fn with restore_jax.inference.tiled_apply)"
            )

    def apply_padded(self, x: jax.Array, controls: Mapping[str, Any]) -> jax.Array:
        """The raw exported function on ``x`` (``[B, H, W, C]``, or ``[B, T, H, W, C]`` for window
        bundles) whose H and W are multiples of ``multiple``."""
        self._check_size(tuple(x.shape))
        return self._run(self.params, x, dict(controls))

    def __call__(self, x: Any, **controls: Any) -> np.ndarray:
        """Restore ``x`` in the manifest's input range: image bundles take float ``[H, W, C]`` or
        ``[B, H, W, C]``, window bundles ``[T, H, W, C]`` or ``[B, T, H, W, C]`` with ``T = window``.

        Controls are scalars (whole batch) or ``[B, *shape]`` arrays (one per image / window);
        omitted ones take their manifest default. Returns a NumPy array ``[..., H*scale, W*scale,
        C_out]`` (``[..., output_frames, H*scale, W*scale, C_out]`` for windows).
        """
        arr, squeeze = self._check_input(x)
        b, h, w = arr.shape[0], arr.shape[-3], arr.shape[-2]
        ctrl = self.control_arrays(b, **controls)
        m = self.multiple
        ph, pw = -h % m, -w % m
        self._check_size((b, h + ph, w + pw, self.channels))  # before padding a too large input
        if ph or pw:
            pad = [(0, 0)] * (arr.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
            arr = jnp.pad(arr, pad, mode=self.pad_mode)
        y = self.apply_padded(arr, ctrl)
        y = np.asarray(y[..., : h * self.scale, : w * self.scale, :])
        return y[0] if squeeze else y

    def tile_fn(self, **controls: Any):
        """A function ``[n, t, t, C] -> [n, t*scale, t*scale, C_out]`` (window bundles: ``[n, T, t, t,
        C] -> [n, output_frames, t*scale, t*scale, C_out]``) with these controls, for
        ``restore_jax.inference.tiled_apply`` (tile size a multiple of ``multiple``)."""
        self.control_arrays(1, **controls)  # validate now, not per tile

        def fn(xb):
            ctrl = self.control_arrays(xb.shape[0], **controls)
            return self.apply_padded(jnp.asarray(xb, self.input_dtype), ctrl)

        return fn


# -- loading ---------------------------------------------------------------------------------------


def _read_manifest(path: pathlib.Path) -> dict:
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise BundleError(f"{path}: no {MANIFEST_FILE}; is this a bundle written by restore_jax export_bundle?")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{mpath}: unreadable manifest ({exc}); re-export the bundle") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{mpath}: not a {BUNDLE_FORMAT} manifest (format={found!r})")
    version = manifest.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise BundleError(f"{mpath}: format_version must be an integer, got {version!r}")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{mpath}: bundle format version {version} is newer than this loader "
            f"({BUNDLE_FORMAT_VERSION}); use the bundle_loader.py shipped inside the bundle"
        )
    return manifest


def _load_params(path: pathlib.Path, manifest: dict, file_name: str, expected: Mapping[str, Any]) -> dict[str, np.ndarray]:
    ppath = path / file_name
    if not ppath.is_file():
        raise BundleError(f"{path}: parameter file {file_name} is missing; re-export the bundle")
    stored = manifest["params"].get("stored_dtypes", {})
    if not isinstance(stored, Mapping):
        raise BundleError(f"{path / MANIFEST_FILE}: params.stored_dtypes must be a mapping, got {stored!r}")
    params = {}
    try:
        with np.load(ppath, allow_pickle=False) as npz:
            for key in npz.files:
                arr = npz[key]
                if key in stored:  # e.g. bfloat16 saved as its uint16 bit pattern
                    arr = arr.view(_dtype(str(path / MANIFEST_FILE), f"stored dtype of {key!r}", stored[key]))
                params[key] = arr
    except BundleError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # truncated / damaged .npz
        raise BundleError(
            f"{ppath}: unreadable parameter file ({type(exc).__name__}: {exc}); it is damaged or incomplete "
            "(e.g. a truncated copy), re-export the bundle"
        ) from exc
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
    where = str(path / MANIFEST_FILE)
    fpath = path / _file_name(where, _section(where, manifest, "function"), "function")
    try:
        blob = fpath.read_bytes()
    except OSError as exc:
        raise BundleError(f"{fpath}: cannot read the exported function ({exc}); re-export the bundle") from exc
    try:
        exported = jax.export.deserialize(bytearray(blob))
    except ImportError as exc:  # jax.export's deserializer imports flatbuffers, not a jax dependency
        raise BundleError(
            f"{fpath}: cannot deserialize the exported function: {exc}. Loading a bundle needs "
            f"{', '.join(BUNDLE_REQUIREMENTS)}: pip install -r {path / REQUIREMENTS_FILE}"
        ) from exc
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
    fields = _check_manifest(path, manifest, exported)  # before touching the parameters
    param_avals, _, _ = _signature(exported)
    params = _load_params(path, manifest, fields["params_file"], param_avals)
    params = jax.device_put(params, device)
    return Bundle(path, manifest, exported, params, device)
