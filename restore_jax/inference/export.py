"""Export a restoration model to a self-contained bundle (``jax.export`` + ``.npz`` + manifest).

:func:`export_bundle` serializes ``f(params, x, controls) -> y`` with ``jax.export`` (StableHLO),
symbolic in the batch size and in height / width, with the parameters as an *argument*: the
weights live next to it in ``params.npz`` (plain arrays keyed by their flattened path, no
pickle), so one exported function serves any checkpoint of the same architecture. The bundle
loads with :func:`restore_jax.inference.bundle_loader.load_bundle`, which needs only ``jax`` (with
its dependencies jaxlib, numpy, ml_dtypes, opt_einsum, scipy) and ``flatbuffers`` (a copy of that
loader is written into the bundle, and the list into its ``requirements.txt`` and manifest).

Size multiple. The input is exported with shape ``(b, m*hk, m*wk, C)``: height and width are
``m`` times symbolic dimension variables, so the model's own reshapes (pixel-unshuffle,
down-sampling by ``m``) see sizes that are provably divisible, and calling the function with a
size that is not a multiple of ``m`` fails with "Division had remainder ...". jax 0.10 also accepts
``symbolic_shape("b, h, w", constraints=("mod(h, m) == 0", ...))``; we use the linear form
because its call-time error names the offending dimension. The loader pads inputs up to the
multiple (bottom / right, ``pad_mode``) and crops the output, so callers never see the rule.

Input kinds. ``input_kind='image'``: ``x [b, H, W, C] -> y [b, H*s, W*s, C_out]``.
``input_kind='window'`` (video models such as Zooming Slow-Mo): ``x [b, T, H, W, C] -> y [b,
T_out, H*s, W*s, C_out]`` with the window ``T`` fixed and ``T_out = temporal_scale * (T - 1) + 1``;
batch, height and width stay symbolic. The manifest records ``kind``, ``window``,
``temporal_scale`` (and ``stride``, the step between windows of a video, when given).

Size bound. The symbolic shape carries the constraint ``b * H * W <= max_batch_pixels`` (padded
input pixels of one call, per frame for windows; default :data:`DEFAULT_MAX_BATCH_PIXELS`, one
8K frame). Without a bound, size guards inside a model (e.g. ``deform_conv2d``'s int32
gather-index check ``B*H*W*G < 2**31``) cannot be decided for symbolic sizes and the export
fails. The bound is in the manifest and the loader checks it before a call.

Controls (e.g. a CFMD moment ``u`` in ``[0, 1]``) are exported as arrays ``[b, *shape]`` sharing
the batch dimension ``b`` with the input (one value per image or per window); the manifest lists
each one's range and default.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from restore_jax.inference import bundle_loader
from restore_jax.inference.bundle_loader import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    BUNDLE_INPUT_KINDS,
    BUNDLE_REQUIREMENTS,
    MANIFEST_FILE,
    REQUIREMENTS_FILE,
)

__all__ = [
    "ControlSpec",
    "DEFAULT_MAX_BATCH_PIXELS",
    "EXPORT_PLATFORMS",
    "bundle_requirements",
    "check_platforms",
    "export_bundle",
    "flatten_params",
    "unflatten_params",
    "FUNCTION_FILE",
    "PARAMS_FILE",
]

FUNCTION_FILE = "function.jaxexport"
PARAMS_FILE = "params.npz"
LOADER_FILE = "bundle_loader.py"
#: Default bound on ``batch * height * width`` (padded, per frame) of one call of a bundle: 2**25
#: pixels, one 7680 x 4320 frame. It leaves room for int32 index guards such as
#: ``deform_conv2d``'s ``B*H*W*G < 2**31`` (Zooming Slow-Mo's paper network exports with it).
DEFAULT_MAX_BATCH_PIXELS = 2**25
#: Platforms ``jax.export`` can lower for (it accepts any other name too, and writes a function that
#: nothing can load: :func:`check_platforms` refuses them first).
EXPORT_PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def check_platforms(platforms: Union[str, Sequence[str], None]) -> tuple[str, ...] | None:
    """Lowering platforms, checked: ``None`` (the current backend), or names from
    :data:`EXPORT_PLATFORMS` (a sequence, or one comma-separated string; case-insensitive,
    duplicates dropped). Anything else is a ``ValueError`` listing the valid names."""
    if platforms is None:
        return None
    names = platforms.split(",") if isinstance(platforms, str) else list(platforms)
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"platforms must be names from {', '.join(EXPORT_PLATFORMS)}; got {name!r}")
        key = name.strip().lower()
        if key not in EXPORT_PLATFORMS:
            hint = " ('gpu' is not a lowering platform: name 'cuda' or 'rocm')" if key == "gpu" else ""
            raise ValueError(
                f"unknown platform {name.strip()!r}{hint}; valid platforms: {', '.join(EXPORT_PLATFORMS)}"
            )
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"no platform given; valid platforms: {', '.join(EXPORT_PLATFORMS)} (or leave it out)")
    return tuple(out)


def bundle_requirements(jax_version: str = jax.__version__) -> list[str]:
    """:data:`BUNDLE_REQUIREMENTS` for a bundle exported with ``jax_version``: jax at least that
    version (a serialized function loads in the same or a newer jax within the compatibility window)."""
    return [f"jax>={jax_version}" if r.partition(">=")[0] == "jax" else r for r in BUNDLE_REQUIREMENTS]


def _requirements_text(requirements: Sequence[str], platforms: Sequence[str]) -> str:
    gpu = [p for p in platforms if p in ("cuda", "rocm")]
    lines = [
        "# What loading and running this bundle (bundle_loader.py) needs, and nothing else:",
        "#   pip install -r requirements.txt",
        "# jax brings jaxlib, numpy, ml_dtypes, opt_einsum and scipy; flatbuffers is needed by",
        "# jax.export's deserializer. No flax, orbax or restore_jax.",
    ]
    if gpu:
        lines.append(f"# Lowered for {', '.join(platforms)}: on a GPU install jax's GPU build too (e.g. jax[cuda12]).")
    return "\n".join([*lines, *requirements]) + "\n"


@dataclasses.dataclass(frozen=True)
class ControlSpec:
    """One control input of an exported model: per-image value of ``shape`` and ``dtype``,
    allowed range ``[min, max]`` (``None``: unbounded) and ``default`` (``None``: required)."""

    default: Any = None
    min: float | None = None
    max: float | None = None
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    description: str = ""

    @classmethod
    def of(cls, name: str, spec: Union["ControlSpec", Mapping[str, Any]]) -> "ControlSpec":
        if isinstance(spec, ControlSpec):
            out = spec
        elif isinstance(spec, Mapping):
            unknown = set(spec) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ValueError(f"control {name!r}: unknown spec keys {sorted(unknown)}")
            out = cls(**{**spec, "shape": tuple(spec.get("shape", ()))})
        else:
            raise TypeError(f"control {name!r}: expected a ControlSpec or a dict, got {type(spec).__name__}")
        dtype = np.dtype(out.dtype)
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer) or dtype == np.bool_):
            raise ValueError(f"control {name!r}: dtype must be a float, int or bool type, got {out.dtype}")
        if out.min is not None and out.max is not None and out.min > out.max:
            raise ValueError(f"control {name!r}: min {out.min} > max {out.max}")
        if out.default is not None:
            d = np.asarray(out.default)
            if d.shape not in ((), out.shape):
                raise ValueError(f"control {name!r}: default of shape {d.shape} does not match shape {out.shape}")
            if (out.min is not None and np.min(d) < out.min) or (out.max is not None and np.max(d) > out.max):
                raise ValueError(f"control {name!r}: default {out.default} lies outside [{out.min}, {out.max}]")
        return out

    def to_json(self) -> dict:
        default = self.default
        if default is not None:
            default = np.asarray(default).tolist()
        return {
            "default": default,
            "min": self.min,
            "max": self.max,
            "shape": list(self.shape),
            "dtype": np.dtype(self.dtype).name,
            "description": self.description,
        }


def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def flatten_params(params: Any) -> tuple[dict[str, np.ndarray], Any, list[str]]:
    """Pytree of arrays -> (``{path: array}``, treedef, keys in leaf order).

    A path joins the pytree keys with ``/`` (``"encoder/conv1/kernel"``); the trailing ``.value``
    of Flax NNX variables is dropped. Typed PRNG keys are refused (export only parameters).
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    flat: dict[str, np.ndarray] = {}
    keys = []
    for path, leaf in leaves:
        parts = [_key_name(p) for p in path]
        if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
            parts = parts[:-1]
        key = "/".join(parts) or "param"
        if key in flat:
            raise ValueError(f"two parameters flatten to the same name {key!r}; rename one of them")
        if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise ValueError(
                f"parameter {key!r} is a PRNG key array; export only the parameters "
                "(e.g. nnx.split(model, nnx.Param, ...) and pass the nnx.Param state)"
            )
        arr = np.asarray(jax.device_get(leaf))
        if arr.dtype == object:
            raise ValueError(f"parameter {key!r} is not an array (got {type(leaf).__name__})")
        flat[key] = arr
        keys.append(key)
    return flat, treedef, keys


def unflatten_params(flat: Mapping[str, Any], treedef: Any, keys: Sequence[str]) -> Any:
    """Inverse of :func:`flatten_params`."""
    return jax.tree_util.tree_unflatten(treedef, [flat[k] for k in keys])


def _storable(arr: np.ndarray) -> tuple[np.ndarray, str | None]:
    """NumPy's .npy has no bfloat16 / float8: store those as unsigned ints of the same width."""
    if arr.dtype.kind == "V" or not arr.dtype.isbuiltin:
        return arr.view(np.dtype(f"uint{8 * arr.dtype.itemsize}")), arr.dtype.name
    return arr, None


def _symbolic_input(
    kind: str, window: int, multiple: int, channels: int, max_batch_pixels: int | None
) -> tuple[tuple[Any, ...], str]:
    """Symbolic input shape (``b`` first) and its spec string, constrained by ``max_batch_pixels``."""
    m = multiple
    h, w = ("h", "w") if m == 1 else ("hk", "wk")
    hdim, wdim = (h, w) if m == 1 else (f"{m}*{h}", f"{m}*{w}")
    spec = ", ".join(["b", *([str(window)] if kind == "window" else []), hdim, wdim, str(channels)])
    constraints = ()
    if max_batch_pixels is not None:
        # b * (m*hk) * (m*wk) <= max  <=>  b*hk*wk <= max // m**2 (all integers)
        constraints = (f"b*{h}*{w} <= {max_batch_pixels // (m * m)}",)
    return tuple(jax.export.symbolic_shape(spec, constraints=constraints)), spec


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _example_shape(
    kind: str, shape: tuple[int, ...], window: int | None
) -> tuple[int, int, int, int, int]:
    """``(B, T, H, W, C)`` of ``example_input_shape`` (``T = 0`` for images), checked against the kind."""
    if kind == "image":
        if len(shape) not in (3, 4) or min(shape) < 1:
            raise ValueError(f"example_input_shape must be (H, W, C) or (B, H, W, C) with positive sizes, got {shape}")
        if window is not None:
            raise ValueError("window= is for input_kind='window'; image models take one image per batch element")
        b = shape[0] if len(shape) == 4 else 1
        return b, 0, shape[-3], shape[-2], shape[-1]
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise ValueError(
            f"input_kind='window': example_input_shape must be (T, H, W, C) or (B, T, H, W, C) with positive sizes, got {shape}"
        )
    b = shape[0] if len(shape) == 5 else 1
    t = shape[-4]
    if window is not None and _check_positive("window", window) != t:
        raise ValueError(f"window={window} but example_input_shape {shape} has {t} frames; they must agree")
    return b, t, shape[-3], shape[-2], shape[-1]


def export_bundle(
    apply_fn: Callable[..., Any],
    params: Any,
    out_dir: Union[str, pathlib.Path],
    *,
    example_input_shape: Sequence[int],
    dtype: Any = jnp.float32,
    multiple: int = 1,
    scale: int = 1,
    controls: Mapping[str, Union[ControlSpec, Mapping[str, Any]]] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
    method: str = "custom",
    input_range: tuple[float, float] = (0.0, 1.0),
    output_range: tuple[float, float] = (0.0, 1.0),
    pad_mode: str = "reflect",
    platforms: Sequence[str] | None = None,
    overwrite: bool = False,
    input_kind: str = "image",
    window: int | None = None,
    temporal_scale: int = 1,
    stride: int | None = None,
    max_batch_pixels: int | None = DEFAULT_MAX_BATCH_PIXELS,
) -> pathlib.Path:
    """Write a bundle for ``apply_fn(params, x, **controls) -> y`` to ``out_dir``; returns its path.

    ``input_kind='image'``: ``example_input_shape`` is ``(H, W, C)`` or ``(B, H, W, C)``;
    ``input_kind='window'``: ``(T, H, W, C)`` or ``(B, T, H, W, C)`` with ``T`` the (fixed) window,
    ``window`` (optional) must equal it, and the output must have ``temporal_scale * (T - 1) + 1``
    frames; ``stride`` (optional) is recorded for video restoration. The example fixes ``C`` (and
    ``T``) and is used to check (by abstract evaluation, no compile) that the output is ``scale``
    times larger. Batch, height and width are exported symbolically (height and width as multiples
    of ``multiple``, ``b * H * W <= max_batch_pixels``; ``None``: no bound). ``controls``: name ->
    :class:`ControlSpec` (or a dict of its fields); each is passed to ``apply_fn`` as an array
    ``[b, *shape]``. ``platforms``: lowering platforms from :data:`EXPORT_PLATFORMS`, e.g.
    ``("cpu", "cuda")`` (default: the current backend); the function runs only on those. ``manifest_extra`` is stored under
    ``manifest["extra"]`` (JSON-serialisable: checkpoint step, config name, ...). ``pad_mode``: how
    the loader pads to the multiple (``jnp.pad`` mode).
    """
    out_dir = pathlib.Path(out_dir)
    platforms = check_platforms(platforms)  # jax.export would lower for any name: refuse before writing
    if input_kind not in BUNDLE_INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {BUNDLE_INPUT_KINDS}, got {input_kind!r}")
    shape = tuple(int(s) for s in example_input_shape)
    b_ex, t_ex, h_in, w_in, channels = _example_shape(input_kind, shape, window)
    multiple = _check_positive("multiple", multiple)
    scale = _check_positive("scale", scale)
    temporal_scale = _check_positive("temporal_scale", temporal_scale)
    if input_kind == "image" and (temporal_scale != 1 or stride is not None):
        raise ValueError("temporal_scale= and stride= are for input_kind='window'")
    if stride is not None:
        stride = _check_positive("stride", stride)
    if max_batch_pixels is not None:
        max_batch_pixels = _check_positive("max_batch_pixels", max_batch_pixels)
        if max_batch_pixels < multiple * multiple:
            raise ValueError(f"max_batch_pixels={max_batch_pixels} is below one {multiple}x{multiple} input")
    if pad_mode not in ("reflect", "symmetric", "edge", "constant"):
        raise ValueError(f"pad_mode must be 'reflect', 'symmetric', 'edge' or 'constant', got {pad_mode!r}")
    in_dtype = jnp.dtype(dtype)
    specs = {str(k): ControlSpec.of(str(k), v) for k, v in (controls or {}).items()}
    extra = dict(manifest_extra or {})
    try:
        json.dumps(extra)
    except TypeError as exc:
        raise ValueError(f"manifest_extra must be JSON-serialisable: {exc}") from exc
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another directory or pass overwrite=True")

    flat, treedef, keys = flatten_params(params)

    def exported_fn(flat_params, x, ctrl):
        return apply_fn(unflatten_params(flat_params, treedef, keys), x, **ctrl)

    # Abstract check on the example (padded to the multiple): output must be scale x the input
    # (and, for windows, temporal_scale * (T - 1) + 1 frames).
    h_ex, w_ex = -(-h_in // multiple) * multiple, -(-w_in // multiple) * multiple
    frames = (t_ex,) if input_kind == "window" else ()
    t_out = temporal_scale * (t_ex - 1) + 1 if input_kind == "window" else 0
    ex_in = (b_ex, *frames, h_ex, w_ex, channels)
    want = (b_ex, *((t_out,) if frames else ()), h_ex * scale, w_ex * scale)
    layout = "NTHWC" if frames else "NHWC"
    ex_ctrl = {k: jax.ShapeDtypeStruct((b_ex,) + s.shape, np.dtype(s.dtype)) for k, s in specs.items()}
    flat_sds = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in flat.items()}
    out_ex = jax.eval_shape(exported_fn, flat_sds, jax.ShapeDtypeStruct(ex_in, in_dtype), ex_ctrl)
    if not isinstance(out_ex, jax.ShapeDtypeStruct) or len(out_ex.shape) != len(ex_in):
        raise ValueError(f"apply_fn must return one {layout} array; for input {ex_in} it returned {out_ex}")
    if tuple(out_ex.shape[:-1]) != want:
        what = f"scale={scale}" + (f", temporal_scale={temporal_scale}" if frames else "")
        raise ValueError(f"apply_fn maps {ex_in} to {tuple(out_ex.shape)}, expected {(*want, 'C')}: check {what}")

    x_shape, x_spec = _symbolic_input(input_kind, t_ex, multiple, channels, max_batch_pixels)
    b = x_shape[0]
    x_sds = jax.ShapeDtypeStruct(x_shape, in_dtype)
    ctrl_sds = {k: jax.ShapeDtypeStruct((b,) + s.shape, np.dtype(s.dtype)) for k, s in specs.items()}
    try:
        exp = jax.export.export(jax.jit(exported_fn), platforms=platforms)(flat_sds, x_sds, ctrl_sds)
    except Exception as exc:  # noqa: BLE001 - add the context the user needs, keep the cause
        bound = f", b*H*W <= {max_batch_pixels}" if max_batch_pixels is not None else ""
        raise ValueError(
            f"jax.export failed for input shape ({x_spec}) (symbolic batch / height / width{bound}): "
            f"{type(exc).__name__}: {exc}\nThe model must not branch in Python on the batch or image size "
            "(use jnp ops or shapes derived by arithmetic), every size it divides must be a divisor of "
            f"multiple={multiple}, and a size comparison it makes must be decidable under the bound "
            "(pass a smaller max_batch_pixels)."
        ) from exc
    out_aval = exp.out_avals[0] if len(exp.out_avals) == 1 else None
    if out_aval is None or out_aval.ndim != len(ex_in):
        raise ValueError(f"apply_fn must return one {layout} array, got {exp.out_avals}")

    stored_dtypes = {}
    to_save = {}
    for key, arr in flat.items():
        to_save[key], orig = _storable(arr)
        if orig is not None:
            stored_dtypes[key] = orig
    if frames:
        signature = (
            f"f(params: {{path: array}}, x: [b, {t_ex}, h, w, C], controls: {{name: [b, *shape]}}) "
            f"-> [b, {t_out}, h*scale, w*scale, C_out]"
        )
        kind_fields = {"kind": "window", "window": t_ex, "temporal_scale": temporal_scale}
        if stride is not None:
            kind_fields["stride"] = stride
    else:
        signature = "f(params: {path: array}, x: [b, h, w, C], controls: {name: [b, *shape]}) -> [b, h*scale, w*scale, C_out]"
        kind_fields = {"kind": "image"}
    manifest = {
        "format": BUNDLE_FORMAT,
        # Image bundles stay readable by loaders of format 1; window inputs need format 2.
        "format_version": BUNDLE_FORMAT_VERSION if frames else 1,
        "method": method,
        **kind_fields,
        "scale": int(scale),
        "multiple": int(multiple),
        "pad_mode": pad_mode,
        "max_batch_pixels": max_batch_pixels,
        "input": {
            "layout": layout,
            "channels": channels,
            "color": "RGB" if channels == 3 else f"{channels} channels",
            "dtype": in_dtype.name,
            "range": [float(input_range[0]), float(input_range[1])],
            "shape": str(tuple(x_shape)),
        },
        "output": {
            "layout": layout,
            "channels": int(out_aval.shape[-1]),
            "dtype": np.dtype(out_aval.dtype).name,
            "range": [float(output_range[0]), float(output_range[1])],
            "shape": str(tuple(out_aval.shape)),
        },
        "controls": {k: s.to_json() for k, s in specs.items()},
        "function": {
            "file": FUNCTION_FILE,
            "signature": signature,
            "platforms": list(exp.platforms),
            "calling_convention_version": int(exp.calling_convention_version),
        },
        "params": {
            "file": PARAMS_FILE,
            "count": len(flat),
            "size": int(sum(a.size for a in flat.values())),
            "stored_dtypes": stored_dtypes,
        },
        "jax_version": jax.__version__,
        "requirements": bundle_requirements(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "extra": extra,
    }

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)  # an overwritten bundle is incomplete until the end
    (out_dir / FUNCTION_FILE).write_bytes(bytes(exp.serialize()))
    with open(out_dir / PARAMS_FILE, "wb") as f:
        np.savez(f, **to_save)
    shutil.copyfile(bundle_loader.__file__, out_dir / LOADER_FILE)
    (out_dir / REQUIREMENTS_FILE).write_text(_requirements_text(manifest["requirements"], exp.platforms))
    # The manifest is written last: a bundle with a manifest is complete.
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir
