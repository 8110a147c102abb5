"""``Restorer``: a trained checkpoint (+ the config saved with it) as an image-restoration function.

    r = Restorer.from_checkpoint("runs/demo")            # latest step; or step=400
    y = r(x)                                             # float [H, W, 3] or [B, H, W, 3] in [0, 1]
    y = r(x, tile=256, overlap=32)                       # fixed tiles: one compilation for any size
    r.restore_file("in.png", "out.png")                  # bit depth, grey and alpha kept
    r.restore_folder("inputs/", "outputs/")

``from_checkpoint`` reads the config snapshot stored next to the checkpoint
(``<workdir>/checkpoints/<step>/config``), builds the method's networks through the registry and
the engine's ``Trainer`` (the same abstract restore target, so any mesh works), restores the
``TrainState`` and keeps only the primary network's EMA parameters (its raw parameters, with a
warning, when the run had no EMA) plus its non-parameter state. Inference runs in float32.

Method hooks (optional functions of the method module, ``restore_jax/models/<id>.py``):

* ``inference_controls(config) -> {name: ControlSpec}``: per-image control inputs (e.g. a
  restoration strength); they reach the recipe's ``predict`` as extra batch keys. Default: none.
* ``size_multiple(config) -> int``: input height / width must be a multiple of it. Default:
  ``config.model.multiple`` if set, else 1.
* ``output_scale(config) -> int``: spatial up-scaling factor. Default: ``config.model.scale`` if
  set, else 1.

The apply function ``apply(params, x, **controls)`` is pure (parameters are an argument), so it is
jitted once and also exported unchanged by ``restore-jax export``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from restore_jax.inference.export import ControlSpec

__all__ = ["Restorer", "RestorerError", "IMAGE_EXTENSIONS", "find_checkpoint"]

PathLike = Union[str, os.PathLike]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32
# Inputs with more pixels (per image) than this are tiled automatically (bounded device memory).
MAX_UNTILED_PIXELS = 1024 * 1024


class RestorerError(ValueError):
    """A user error: missing checkpoint, unknown control, bad input shape (the message says what to do)."""


@dataclasses.dataclass(frozen=True)
class CheckpointLocation:
    directory: pathlib.Path  # <workdir>/checkpoints
    step: int


def _steps_in(directory: pathlib.Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "state").is_dir())


def find_checkpoint(path: PathLike, step: int | None = None) -> CheckpointLocation:
    """Resolve a workdir, its ``checkpoints`` folder or one ``checkpoints/<step>`` folder.

    Raises :class:`RestorerError` naming what was looked for when nothing matches.
    """
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise RestorerError(
            f"checkpoint path {p} does not exist; pass a training workdir (containing checkpoints/<step>/state), "
            "e.g. the --workdir of restore-jax train"
        )
    if p.name.isdigit() and (p / "state").is_dir():  # a single step folder
        if step is not None and step != int(p.name):
            raise RestorerError(f"{p} is the checkpoint of step {p.name}, but step={step} was requested")
        return CheckpointLocation(p.parent.absolute(), int(p.name))
    directory = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    steps = _steps_in(directory)
    if not steps:
        raise RestorerError(
            f"no checkpoints found: looked for {p / 'checkpoints'}/<step>/state and {p}/<step>/state; "
            f"train first (restore-jax train --config ... --workdir {p}) or pass the right workdir"
        )
    if step is None:
        return CheckpointLocation(directory.absolute(), steps[-1])
    if step not in steps:
        raise RestorerError(f"no checkpoint for step {step} in {directory}; available steps: {steps}")
    return CheckpointLocation(directory.absolute(), int(step))


def _read_config(loc: CheckpointLocation):
    """The run's config snapshot (``<step>/config``, Orbax JSON) as a ``ConfigDict``."""
    import ml_collections

    cfg_dir = loc.directory / str(loc.step) / "config"
    candidates = [cfg_dir / "metadata"] if cfg_dir.is_dir() else []
    candidates += sorted(q for q in cfg_dir.glob("*") if q.is_file() and q.name != "commit_success.txt") if cfg_dir.is_dir() else []
    for f in candidates:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "method" in data:
            return ml_collections.ConfigDict(data)
    raise RestorerError(
        f"checkpoint {loc.directory / str(loc.step)} has no readable config snapshot (looked for {cfg_dir}/metadata); "
        "it was not written by restore-jax train"
    )


def _method_hook(config, name: str):
    from restore_jax.models import registry

    return getattr(registry.get_method(config.method), name, None)


class Restorer:
    """A trained model as ``restorer(x, **controls) -> y`` (see the module docstring).

    Attributes: ``method``, ``step``, ``scale``, ``multiple``, ``controls`` (name ->
    :class:`ControlSpec`), ``params`` (the primary network's parameters, NumPy pure dict),
    ``config`` (the run's ``ConfigDict``), ``apply`` (the pure ``apply(params, x, **controls)``).
    """

    def __init__(
        self,
        *,
        apply_fn,
        params: Any,
        scale: int,
        multiple: int,
        controls: Mapping[str, ControlSpec] | None = None,
        method: str = "custom",
        step: int | None = None,
        config: Any = None,
        channels: int = 3,
    ):
        self.apply = apply_fn
        self.params = params
        self.scale = int(scale)
        self.multiple = int(multiple)
        self.controls = {k: ControlSpec.of(k, v) for k, v in (controls or {}).items()}
        self.method = method
        self.step = step
        self.config = config
        self.channels = int(channels)
        self._jitted = jax.jit(apply_fn)
        self._tile_fns: dict = {}

    def __repr__(self) -> str:
        return (
            f"Restorer(method={self.method!r}, step={self.step}, scale={self.scale}, multiple={self.multiple}, "
            f"controls: {', '.join(self.controls) or 'none'})"
        )

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, workdir_or_path: PathLike, *, step: int | None = None, log=print) -> "Restorer":
        """Load checkpoint ``step`` (default: the latest) of a training workdir with its config."""
        from flax import nnx

        from restore_jax.train.checkpointing import CheckpointManager
        from restore_jax.train.errors import CheckpointError, ConfigError
        from restore_jax.train.loop import Trainer

        loc = find_checkpoint(workdir_or_path, step)
        config = _read_config(loc)
        try:
            trainer = Trainer(config)
        except (ConfigError, KeyError) as e:
            raise RestorerError(f"the config saved with {loc.directory / str(loc.step)} cannot build the model: {e}") from e
        ckpt = CheckpointManager(loc.directory, every_steps=1, async_save=False)
        try:
            restored = ckpt.restore(trainer.abstract_restore_target(), step=loc.step)
        except CheckpointError as e:
            raise RestorerError(str(e)) from e
        finally:
            ckpt.close()
        state = restored.state
        recipe = trainer.recipe
        primary = recipe.primary
        if primary in state.ema_params:
            params = state.ema_params[primary]
        else:
            warnings.warn(
                f"checkpoint {loc.directory / str(loc.step)} has no EMA parameters (train.ema_decay = 0); "
                "using the raw training parameters",
                UserWarning,
                stacklevel=2,
            )
            params = state.params[primary]
        params = jax.device_get(params)
        model_state = jax.device_get(state.extras.get("model_state", {}).get(primary, {}))
        graphdef = trainer.graphdefs[primary]
        if not recipe.input_keys or recipe.predict is None:
            raise RestorerError(f"method {config.method!r} has no predict function / input key; it cannot restore images")
        input_key = recipe.input_keys[0]
        predict = recipe.predict

        def apply(p, x, **controls):
            model = nnx.merge(graphdef, p, model_state)
            model.eval()
            batch = {input_key: jnp.asarray(x, jnp.float32), **controls}
            return jnp.asarray(predict({primary: model}, batch), jnp.float32)

        controls_hook = _method_hook(config, "inference_controls")
        multiple_hook = _method_hook(config, "size_multiple")
        scale_hook = _method_hook(config, "output_scale")
        model_cfg = config.get("model", {}) or {}
        multiple = multiple_hook(config) if multiple_hook else int(model_cfg.get("multiple", 1))
        scale = scale_hook(config) if scale_hook else int(model_cfg.get("scale", 1))
        return cls(
            apply_fn=apply,
            params=params,
            scale=scale,
            multiple=multiple,
            controls=controls_hook(config) if controls_hook else {},
            method=str(config.method),
            step=int(restored.step),
            config=config,
        )

    # -- controls and inputs ---------------------------------------------------------------------

    def control_arrays(self, batch: int, **controls: Any) -> dict[str, np.ndarray]:
        """Checked ``[batch, *shape]`` arrays for every control (omitted ones take their default)."""
        from restore_jax.inference.bundle_loader import BundleError, _control_array

        unknown = sorted(set(controls) - set(self.controls))
        if unknown:
            accepted = ", ".join(sorted(self.controls)) or "none"
            raise RestorerError(f"unknown control(s) {unknown} for method {self.method!r}; accepted controls: {accepted}")
        out = {}
        for name, spec in self.controls.items():
            value = controls.get(name, spec.default)
            if value is None:
                raise RestorerError(f"control {name!r} has no default; pass {name}=...")
            try:
                out[name] = _control_array(name, spec.to_json(), value, batch)
            except BundleError as e:
                raise RestorerError(str(e)) from e
        return out

    def _check_input(self, x: Any) -> tuple[np.ndarray, bool]:
        arr = np.asarray(x)
        squeeze = arr.ndim == 3
        if squeeze:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != self.channels or min(arr.shape) < 1:
            raise RestorerError(
                f"expected a float image [H, W, {self.channels}] or a batch [B, H, W, {self.channels}] (RGB in [0, 1]), "
                f"got shape {tuple(np.shape(x))}"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise RestorerError(f"expected floating-point input in [0, 1], got dtype {arr.dtype}; convert first (uint8: x / 255)")
        return arr.astype(np.float32, copy=False), squeeze

    def _tile_fn(self, ctrl: Mapping[str, np.ndarray]):
        """A jitted ``[n, t, t, C] -> [n, t*s, t*s, C]`` with params and (scalar) controls bound.

        Cached per control values, so repeated calls reuse one compilation per tile shape."""
        key = tuple(sorted((k, v.tobytes(), v.shape[1:]) for k, v in ctrl.items()))
        fn = self._tile_fns.get(key)
        if fn is None:
            params = jax.tree.map(jnp.asarray, self.params)
            consts = {k: jnp.asarray(v[0]) for k, v in ctrl.items()}
            apply = self.apply

            def tile_apply(xb):
                n = xb.shape[0]
                c = {k: jnp.broadcast_to(v, (n,) + v.shape) for k, v in consts.items()}
                return apply(params, xb, **c)

            fn = self._tile_fns[key] = jax.jit(tile_apply)
        return fn

    # -- restoring -------------------------------------------------------------------------------

    def __call__(
        self,
        x: Any,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        margin: int | None = None,
        batch_tiles: int = 8,
        progress: bool = False,
        **controls: Any,
    ) -> np.ndarray:
        """Restore ``x`` (float ``[H, W, C]`` or ``[B, H, W, C]`` in ``[0, 1]``) -> ``[..., H*s, W*s, C]``.

        With ``tile`` (or when an image has more than ``MAX_UNTILED_PIXELS`` pixels, then
        ``tile=256``) the image is processed in fixed ``tile x tile`` tiles (``overlap`` default
        ``min(32, tile // 4)`` rounded to the multiple; ``margin`` as in ``tiled_apply``): one
        compilation whatever the input size.
        Otherwise the whole image is padded (reflect, bottom / right) to the size multiple and run
        at once (one compilation per padded size). Controls: scalars or one value per image
        (untiled); tiled runs take one value for the whole batch.
        """
        arr, squeeze = self._check_input(x)
        b, h, w, _ = arr.shape
        m = self.multiple
        if tile is None and overlap is not None:
            raise RestorerError("overlap= needs tile=; e.g. tile=256, overlap=32")
        if tile is None and h * w > MAX_UNTILED_PIXELS:
            tile = DEFAULT_TILE
        if tile is not None:
            from restore_jax.inference.tiling import tiled_apply

            tile = int(tile)
            if tile < 1 or tile % m:
                raise RestorerError(f"tile={tile} must be a positive multiple of the model's size multiple {m}")
            if overlap is None:
                overlap = (min(DEFAULT_OVERLAP, tile // 4) // m) * m
            overlap = int(overlap)
            if overlap < 0 or overlap % m or overlap > tile // 2:
                raise RestorerError(f"overlap={overlap} must be a multiple of {m} between 0 and tile/2 = {tile // 2}")
            ctrl = self.control_arrays(1, **controls)
            for name, v in controls.items():
                if np.ndim(v) > len(self.controls[name].shape):
                    raise RestorerError(f"control {name!r}: tiled restoration takes one value for the whole batch")
            y = tiled_apply(
                self._tile_fn(ctrl), arr, tile=tile, overlap=overlap, scale=self.scale, multiple=m,
                batch_tiles=batch_tiles, margin=margin, progress=progress,
            )
        else:
            ctrl = self.control_arrays(b, **controls)
            ph, pw = -h % m, -w % m
            if ph or pw:
                mode = "reflect" if (ph < h and pw < w) else "symmetric"
                arr = np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)
            y = np.asarray(self._jitted(self.params, arr, **ctrl))[:, : h * self.scale, : w * self.scale]
        return y[0] if squeeze else y

    def restore_file(
        self, in_path: PathLike, out_path: PathLike, *, tile: int | None = None, overlap: int | None = None, **controls: Any
    ) -> pathlib.Path:
        """Read ``in_path`` (8/16-bit, grey, alpha), restore, write ``out_path`` in the input's form."""
        from restore_jax.inference.image_io import read_image_for_restore, write_restored

        rgb, info = read_image_for_restore(in_path)
        y = self(rgb, tile=tile, overlap=overlap, **controls)
        out_path = pathlib.Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        return write_restored(out_path, y, info)

    def restore_folder(
        self,
        in_dir: PathLike,
        out_dir: PathLike,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        progress: bool = True,
        **controls: Any,
    ) -> list[pathlib.Path]:
        """Restore every image of ``in_dir`` (``IMAGE_EXTENSIONS``, sorted, not recursive) into
        ``out_dir`` under the same names (tqdm progress bar). Returns the written paths."""
        in_dir, out_dir = pathlib.Path(in_dir), pathlib.Path(out_dir)
        if not in_dir.is_dir():
            raise RestorerError(f"input folder {in_dir} does not exist")
        files = sorted(p for p in in_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise RestorerError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {in_dir}")
        if out_dir.resolve() == in_dir.resolve():
            raise RestorerError(f"output folder {out_dir} is the input folder; choose another one")
        out_dir.mkdir(parents=True, exist_ok=True)
        from tqdm.auto import tqdm

        written = []
        for f in tqdm(files, desc="restoring", unit="image", disable=not progress):
            target = out_dir / f.name
            if target.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
                target = target.with_suffix(".png")
            written.append(self.restore_file(f, target, tile=tile, overlap=overlap, **controls))
        return written

    # -- export ----------------------------------------------------------------------------------

    def export(self, out_dir: PathLike, *, platforms=None, overwrite: bool = False) -> pathlib.Path:
        """Write a ``jax.export`` bundle of this model (``docs/inference.md``)."""
        from restore_jax.inference.export import export_bundle

        side = max(self.multiple, 16)
        side = -(-side // self.multiple) * self.multiple
        config = self.config.to_dict() if hasattr(self.config, "to_dict") else self.config
        return export_bundle(
            self.apply,
            self.params,
            out_dir,
            example_input_shape=(side, side, self.channels),
            multiple=self.multiple,
            scale=self.scale,
            method=self.method,
            controls=self.controls,
            manifest_extra={"step": self.step, "config": config},
            platforms=platforms,
            overwrite=overwrite,
        )
