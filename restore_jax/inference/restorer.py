"""``Restorer``: a trained checkpoint (+ the config saved with it) as an image-restoration function.

    r = api.load_restorer("runs/demo")                   # latest step; or step=400
    y = r(x)                                             # float [H, W, 3] or [B, H, W, 3] in [0, 1]
    y = r(x, tile=256, overlap=32)                       # fixed tiles: one compilation for any size
    r.restore_file("in.png", "out.png")                  # bit depth, grey and alpha kept
    r.restore_folder("inputs/", "outputs/")
    r.video("clip.mp4", "clip_out.mp4", tile=128)        # frames [T, H, W, 3] or a video file
    frames = r.sweep(x, control="u", num=8)              # u = 0, 1/8, ..., 7/8 -> [8, H', W', 3]

``from_checkpoint(path, method)`` reads the config snapshot stored next to the checkpoint
(``<workdir>/checkpoints/<step>/config``), builds the method's networks through the engine's
``Trainer`` (the same abstract restore target, so any mesh works), restores the ``TrainState`` and
keeps only the primary network's EMA parameters (its raw parameters, with a warning, when the run
had no EMA) plus its non-parameter state. Inference runs in float32.
``restore_jax.api.load_restorer(path)`` finds the method from the checkpoint's config.

What the model takes and returns comes from the method's
:class:`~restore_jax.methods.api.InferenceSpec` (``Method.inference(config)``): the input kind
(an image, or a window of frames: ``[b, N, h, w, C] -> [b, (N - 1) * k + 1, h*s, w*s, C]``, Zooming
Slow-Mo has ``N = 4``, stride 3, ``k = 2``), per-image controls with ranges (they reach the recipe's
``predict`` as extra batch keys), the size multiple and the scale. Window models restore videos
through :func:`~restore_jax.inference.chunking.iter_chunked_video`; image models restore videos
frame by frame with :func:`~restore_jax.inference.chunking.per_frame_apply`.

The apply function ``apply(params, x, **controls)`` is pure (parameters are an argument), so it is
jitted once and also exported unchanged by ``restore-jax export``. Tiled, video and sweep runs use
one jitted function that takes the parameters and the (scalar) control values as arguments: a new
control value, video length or image size never recompiles it (only a new tile / window shape).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from restore_jax.inference.checkpoint_io import (
    CheckpointLocation,
    RestorerError,
    find_checkpoint,
    load_checkpoint,
    read_checkpoint_config,
)
from restore_jax.inference.export import ControlSpec
from restore_jax.inference.output_plan import (
    IMAGE_EXTENSIONS,
    FolderRestoreError,
    check_not_input,
    check_output_form,
    plan_folder,
)
from restore_jax.methods.api import InferenceSpec, Method

__all__ = [
    "Restorer",
    "RestorerError",
    "FolderRestoreError",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "check_not_input",
    "find_checkpoint",
    "inference_hooks",
    "plan_folder",
    "read_checkpoint_config",
    "read_video",
]

PathLike = Union[str, os.PathLike]
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif")
DEFAULT_FPS = 25.0  # frame rate assumed for frame arrays and files that do not store one
# Per-frame video restoration works on chunks of this many frames (output streamed chunk by chunk).
VIDEO_CHUNK_FRAMES = 16
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32
# Inputs with more pixels (per image) than this are tiled automatically (bounded device memory).
MAX_UNTILED_PIXELS = 1024 * 1024


def _check_video_mode(method: str, mode: Mapping[str, Any] | None) -> dict[str, int] | None:
    """The ``video_mode`` hook's dict, checked: ``window``, ``stride``, ``temporal_scale`` (default 1)."""
    if mode is None:
        return None
    from restore_jax.inference.chunking import _check_window_args

    try:
        out = {"window": int(mode["window"]), "stride": int(mode["stride"]), "temporal_scale": int(mode.get("temporal_scale", 1))}
        _check_window_args(1, out["window"], out["stride"], out["temporal_scale"])
    except (KeyError, TypeError, ValueError) as e:
        raise RestorerError(
            f"method {method!r}: video_mode must be a dict(window=N, stride=S, temporal_scale=k) with a stride that "
            f"covers every output frame; got {dict(mode)!r} ({e})"
        ) from e
    return out


def read_video(path: PathLike) -> tuple[np.ndarray, float]:
    """Decode a video file into uint8 frames ``[T, H, W, 3]`` and its frame rate.

    ``.gif`` through Pillow (frame rate from the frame durations; 10 fps when they are missing),
    the other ``VIDEO_EXTENSIONS`` through ``input_pipelines/video_io.py`` (PyAV; ``DEFAULT_FPS``
    when the stream has no rate). The whole clip is decoded into host memory (uint8).
    """
    p = pathlib.Path(path).expanduser()
    ext = p.suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise RestorerError(f"{p}: not a video file; supported video inputs: {', '.join(VIDEO_EXTENSIONS)}")
    if not p.is_file():
        raise RestorerError(f"video {p} does not exist")
    if ext == ".gif":
        from PIL import Image, ImageSequence, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                frames, durations = [], []
                for frame in ImageSequence.Iterator(im):
                    frames.append(np.asarray(frame.convert("RGB")))
                    durations.append(float(frame.info.get("duration", 0) or 0))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise RestorerError(f"{p}: cannot read the GIF ({e})") from e
        positive = [d for d in durations if d > 0]
        fps = 1000.0 / float(np.mean(positive)) if positive else 10.0
        return np.stack(frames), fps
    from input_pipelines.video_io import VideoReadError, decode_all, probe_video

    try:
        info = probe_video(p)
        frames = decode_all(p)
    except (VideoReadError, OSError) as e:
        raise RestorerError(f"cannot read video {p}: {e}") from e
    return frames, (info.fps if info.fps > 0 else DEFAULT_FPS)


class _BoundFn:
    """``fn(x) = jitted(x, *args)``: a jitted function with its array arguments (parameters, control
    values) bound. It has ``lower``, so the tiling / chunking helpers use it as the jitted function it
    is instead of wrapping it again: other control values are other arguments, not a new compilation."""

    def __init__(self, jitted, *args):
        self._jitted, self._args = jitted, args

    @staticmethod
    def _float(x):
        # uint8 frames (decoded videos) stay uint8 on the host; each batch is converted here, so the
        # jitted function sees float32 only (one compilation whatever the input's dtype).
        return np.asarray(x, np.float32) / np.float32(255) if getattr(x, "dtype", None) == np.uint8 else x

    def __call__(self, x):
        return self._jitted(self._float(x), *self._args)

    def lower(self, x):
        return self._jitted.lower(self._float(x), *self._args)


class Restorer:
    """A trained model as ``restorer(x, **controls) -> y`` (see the module docstring).

    Attributes: ``method``, ``step``, ``scale``, ``multiple``, ``controls`` (name ->
    :class:`ControlSpec`), ``video_mode`` (``None`` for image models, else ``{'window',
    'stride', 'temporal_scale'}``), ``params`` (the primary network's parameters, NumPy pure
    dict), ``config`` (the run's ``ConfigDict``), ``apply`` (the pure ``apply(params, x, **controls)``).
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
        video_mode: Mapping[str, int] | None = None,
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
        self.video_mode = _check_video_mode(method, video_mode)
        self._jitted = jax.jit(apply_fn)
        self._device_params = None

        def run(x, params, ctrl):
            # x: [n, ...] float (images, tiles, video windows); ctrl: one value per control.
            x = x.astype(jnp.float32)
            n = x.shape[0]
            c = {k: jnp.broadcast_to(v, (n,) + v.shape) for k, v in ctrl.items()}
            return jnp.asarray(apply_fn(params, x, **c), jnp.float32)

        # One jitted function for tiles, video windows / frames and sweeps: parameters and control
        # values are arguments, so it compiles once per input shape (tile, window), never per value.
        self._run = jax.jit(run)

    def __repr__(self) -> str:
        video = ""
        if self.video_mode:
            v = self.video_mode
            video = f", video window {v['window']} stride {v['stride']} temporal x{v['temporal_scale']}"
        return (
            f"Restorer(method={self.method!r}, step={self.step}, scale={self.scale}, multiple={self.multiple}, "
            f"controls: {', '.join(self.controls) or 'none'}{video})"
        )

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, workdir_or_path: PathLike, method: Method, *, step: int | None = None, log=print) -> "Restorer":
        """Load checkpoint ``step`` (default: the latest) of a training workdir with its config.

        ``method`` is the run's :class:`~restore_jax.methods.api.Method` (``restore_jax.api.load_restorer``
        finds it from the checkpoint's config)."""
        from flax import nnx

        config, loc, trainer, restored = load_checkpoint(workdir_or_path, method, step=step)
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

        hooks = inference_hooks(method.inference_spec(config), method.id)
        return cls(
            apply_fn=apply,
            params=params,
            step=int(restored.step),
            config=config,
            **hooks,
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

    def _single_controls(self, controls: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
        """One checked value per control (``[*shape]``) for a run that shares them (tiles, videos)."""
        ctrl = self.control_arrays(1, **controls)
        for name, v in controls.items():
            if np.ndim(v) > len(self.controls[name].shape):
                raise RestorerError(f"control {name!r}: {what} takes one value (shape {self.controls[name].shape}), got shape {np.shape(v)}")
        return {k: v[0] for k, v in ctrl.items()}

    def _bound(self, ctrl: Mapping[str, np.ndarray]) -> _BoundFn:
        """``self._run`` with the parameters and one value per control bound (see :class:`_BoundFn`)."""
        return _BoundFn(self._run, self._params(), {k: jnp.asarray(v) for k, v in ctrl.items()})

    def _params(self):
        if self._device_params is None:
            self._device_params = jax.device_put(self.params)
        return self._device_params

    def _check_image_model(self, what: str) -> None:
        if self.video_mode is not None:
            v = self.video_mode
            raise RestorerError(
                f"method {self.method!r} is a video model (windows of {v['window']} frames); {what} takes single images. "
                "Use restorer.video(frames_or_path, ...) or `restore-jax restore` on a video file"
            )

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

    def _check_frames(self, frames: Any) -> np.ndarray:
        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[-1] != self.channels or min(arr.shape) < 1:
            raise RestorerError(
                f"expected video frames [T, H, W, {self.channels}] (RGB float in [0, 1] or uint8) or a video file path "
                f"({', '.join(VIDEO_EXTENSIONS)}), got an array of shape {arr.shape}"
            )
        if arr.dtype == np.uint8:
            return arr
        if not np.issubdtype(arr.dtype, np.floating):
            raise RestorerError(f"video frames must be float in [0, 1] or uint8, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise RestorerError("video frames contain NaN or infinite values")
        return arr.astype(np.float32, copy=False)

    def _tiling(self, h: int, w: int, tile: int | None, overlap: int | None) -> tuple[int | None, int | None]:
        """Checked ``(tile, overlap)``; tiles of ``DEFAULT_TILE`` above ``MAX_UNTILED_PIXELS`` pixels."""
        m = self.multiple
        if tile is None and overlap is not None:
            raise RestorerError("overlap= needs tile=; e.g. tile=256, overlap=32")
        if tile is None and h * w > MAX_UNTILED_PIXELS:
            tile = -(-DEFAULT_TILE // m) * m
        if tile is None:
            return None, None
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1 or tile % m:
            raise RestorerError(f"tile={tile} must be a positive multiple of the model's size multiple {m}")
        tile = int(tile)
        if overlap is None:
            overlap = (min(DEFAULT_OVERLAP, tile // 4) // m) * m
        overlap = int(overlap)
        if overlap < 0 or overlap % m or overlap > tile // 2:
            raise RestorerError(f"overlap={overlap} must be a multiple of {m} between 0 and tile/2 = {tile // 2}")
        return tile, overlap

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
        out_dtype: Any = None,
        **controls: Any,
    ) -> np.ndarray:
        """Restore ``x`` (float ``[H, W, C]`` or ``[B, H, W, C]`` in ``[0, 1]``) -> ``[..., H*s, W*s, C]``.

        ``out_dtype``: ``None`` (float32) or ``np.uint8`` / ``np.uint16`` (clipped, rounded): tiled
        results are then written band by band into an integer array, so host memory stays about one
        output in that dtype (a 12000 x 8000 uint8 result never exists in float).

        With ``tile`` (or when an image has more than ``MAX_UNTILED_PIXELS`` pixels, then
        ``tile=256``) the image is processed in fixed ``tile x tile`` tiles (``overlap`` default
        ``min(32, tile // 4)`` rounded to the multiple; ``margin`` as in ``tiled_apply``): one
        compilation whatever the input size or control values.
        Otherwise the whole image is padded (reflect, bottom / right) to the size multiple and run
        at once (one compilation per padded size). Controls: scalars or one value per image
        (untiled); tiled runs take one value for the whole batch.
        """
        self._check_image_model("restorer(x)")
        arr, squeeze = self._check_input(x)
        b, h, w, _ = arr.shape
        m = self.multiple
        tile, overlap = self._tiling(h, w, tile, overlap)
        from restore_jax.inference.tiling import quantizer, tiled_apply

        finalize = None if out_dtype is None else quantizer(out_dtype)  # checks the dtype
        if tile is not None:
            ctrl = self._single_controls(controls, "tiled restoration")
            y = tiled_apply(
                self._bound(ctrl), arr, tile=tile, overlap=overlap, scale=self.scale, multiple=m,
                batch_tiles=batch_tiles, margin=margin, progress=progress, finalize=finalize,
            )
        else:
            ctrl = self.control_arrays(b, **controls)
            ph, pw = -h % m, -w % m
            if ph or pw:
                arr = np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
            y = np.asarray(self._jitted(self._params(), arr, **ctrl))[:, : h * self.scale, : w * self.scale]
            if finalize is not None:
                y = finalize(np.array(y, np.float32))
        return y[0] if squeeze else y

    def restore_file(
        self, in_path: PathLike, out_path: PathLike, *, tile: int | None = None, overlap: int | None = None, **controls: Any
    ) -> pathlib.Path:
        """Read ``in_path`` (8/16-bit, grey, alpha), restore, write ``out_path`` in the input's form.

        Refused before the model runs (:class:`RestorerError`): ``out_path`` is the input file
        (:func:`check_not_input`), or cannot store the result (unsupported extension, alpha into a
        JPEG)."""
        from restore_jax.inference.image_io import output_bit_depth, read_image_for_restore, write_restored

        self._check_image_model("restore_file")
        check_not_input(in_path, out_path)
        rgb, info = read_image_for_restore(in_path)
        check_output_form(out_path, info)
        # rounded to the file's integer type as it is produced (bounded host memory for large images)
        out_dtype = np.uint16 if output_bit_depth(out_path, info) == 16 else np.uint8
        y = self(rgb, tile=tile, overlap=overlap, out_dtype=out_dtype, **controls)
        out_path = pathlib.Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        return write_restored(out_path, y, info)

    def restore_faces_file(
        self,
        in_path: PathLike,
        out_path: PathLike,
        *,
        crop_size: int,
        template: str = "ffhq",
        margin: float = 0.0,
        **controls: Any,
    ) -> tuple[pathlib.Path, int]:
        """Restore every face of a whole photo (align -> restore the crop -> paste back).

        ``crop_size``: the input crop size the model was trained on (e.g. the LR size of a face SR
        model); ``template``/``margin``: the crops' framing (see
        :func:`restore_jax.inference.face_photo.restore_faces_in_photo`). The rest of the photo is
        kept (bicubic-upscaled for SR models). Returns the written path and the number of faces.
        """
        from restore_jax.inference.face_photo import restore_faces_in_photo
        from restore_jax.inference.image_io import read_image_for_restore, write_restored

        self._check_image_model("restore_faces_file")
        check_not_input(in_path, out_path)
        rgb, info = read_image_for_restore(in_path)
        check_output_form(out_path, info)
        try:
            y, faces = restore_faces_in_photo(
                rgb, lambda crop: self(crop, **controls), crop_size=crop_size, scale=self.scale,
                template=template, margin=margin,
            )
        except FileNotFoundError as e:  # the face-api weights
            raise RestorerError(f"--faces needs the face-api nets: {e}") from e
        except ValueError as e:
            raise RestorerError(str(e)) from e
        out_path = pathlib.Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        return write_restored(out_path, y, info), len(faces)

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
        ``out_dir`` under the same names (``.png`` for ``.bmp`` / ``.tif``; tqdm progress bar).
        Returns the written paths.

        Checked before the model runs (:func:`plan_folder`, :class:`RestorerError`): ``out_dir`` is
        not ``in_dir`` and no output would overwrite an input; two inputs that would get the same
        output name (``x.bmp`` and ``x.png``) are refused. An image that cannot be read or
        restored (corrupt, truncated) does not stop the others: after the last one,
        :class:`FolderRestoreError` lists the failures (``.written``, ``.failed``)."""
        self._check_image_model("restore_folder")
        pairs = plan_folder(in_dir, out_dir)
        self.control_arrays(1, **controls)  # bad controls / tiles are the user's, not the files'
        self._tiling(1, 1, tile, overlap)
        out_dir = pathlib.Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        from tqdm.auto import tqdm

        written, failed = [], []
        for f, target in tqdm(pairs, desc="restoring", unit="image", disable=not progress):
            try:
                written.append(self.restore_file(f, target, tile=tile, overlap=overlap, **controls))
            except ValueError as e:  # ImageReadError, RestorerError: this file only
                failed.append((f, str(e)))
        if failed:
            raise FolderRestoreError(in_dir, out_dir, written, failed, len(pairs))
        return written

    # -- video -----------------------------------------------------------------------------------

    def video(
        self,
        frames_or_path: Any,
        output: PathLike | None = None,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        margin: int | None = None,
        fps: float | None = None,
        batch_tiles: int | None = None,
        progress: bool = True,
        **controls: Any,
    ) -> np.ndarray | pathlib.Path:
        """Restore a video: frames ``[T, H, W, C]`` (float in ``[0, 1]`` or uint8) or a video file.

        Window models (``video_mode`` hook) run :func:`~restore_jax.inference.chunking.iter_chunked_video`
        (each output frame from exactly one window; ``(T - 1) * k + 1`` frames for temporal scale
        ``k``), image models run :func:`~restore_jax.inference.chunking.per_frame_apply` on chunks of
        ``VIDEO_CHUNK_FRAMES`` frames. ``tile`` / ``overlap`` / ``margin`` as for images (automatic
        tiles above ``MAX_UNTILED_PIXELS`` pixels a frame); ``batch_tiles`` default 8 (image
        models) or 2 (window models, a tile carries ``N`` frames). Every call of the model has
        one shape, so a video of any length compiles once. Controls: one value for the whole video.

        ``output=None`` returns the float32 frames ``[T', H*s, W*s, C]``; otherwise the frames are
        streamed to ``output`` (``.mp4 / .mov / .mkv / .gif``, a folder (no extension) of
        ``frame_000000.png ...`` or a pattern like ``out/f_%04d.png``) at ``fps`` (default: the
        input's frame rate, ``DEFAULT_FPS`` for arrays, times the temporal scale) and the path is
        returned.
        """
        from restore_jax.inference.chunking import iter_chunked_video, num_output_frames, per_frame_apply
        from restore_jax.inference.image_io import check_frames_output, write_frames

        if isinstance(frames_or_path, (str, os.PathLike)):
            if output is not None:
                check_not_input(frames_or_path, output)
            frames, in_fps = read_video(frames_or_path)
        else:
            frames, in_fps = self._check_frames(frames_or_path), DEFAULT_FPS
        if output is not None:
            try:
                check_frames_output(output)
            except ValueError as e:
                raise RestorerError(str(e)) from e
        if fps is not None and not (np.isfinite(fps) and fps > 0):
            raise RestorerError(f"fps must be a positive number, got {fps}")
        t, h, w, _ = frames.shape
        mode = self.video_mode
        k = mode["temporal_scale"] if mode else 1
        out_fps = float(fps) if fps is not None else in_fps * k
        ctrl = self._single_controls(controls, "video restoration")
        tile, overlap = self._tiling(h, w, tile, overlap)
        bound = self._bound(ctrl)
        spatial = dict(
            tile=tile, overlap=overlap or 0, margin=margin, scale=self.scale, multiple=self.multiple,
            batch_tiles=int(batch_tiles or (2 if mode else 8)),
        )
        if mode:
            frames_out = iter_chunked_video(
                bound, frames, window=mode["window"], stride=mode["stride"], temporal_scale=k, batch_windows=1, **spatial
            )
        else:

            def per_frame():
                for i in range(0, t, VIDEO_CHUNK_FRAMES):
                    yield from per_frame_apply(bound, frames[i : i + VIDEO_CHUNK_FRAMES], batch=1, **spatial)

            frames_out = per_frame()
        from tqdm.auto import tqdm

        total = num_output_frames(t, k)
        bar = tqdm(frames_out, total=total, desc="restoring video", unit="frame", disable=not progress)
        try:
            if output is None:
                return np.stack(list(bar)).astype(np.float32, copy=False)
            return write_frames(output, bar, fps=out_fps)
        finally:
            bar.close()

    # -- control sweeps --------------------------------------------------------------------------

    def sweep_control(self, control: str | None = None) -> str:
        """The control a sweep varies: ``control`` or the model's only scalar float control with range ``[0, 1]``."""
        candidates = [
            n for n, s in self.controls.items()
            if s.shape == () and np.issubdtype(np.dtype(s.dtype), np.floating)
            and s.min == 0.0 and s.max == 1.0
        ]
        if control is None:
            if len(candidates) == 1:
                return candidates[0]
            if not candidates:
                have = ", ".join(self.controls) or "none"
                raise RestorerError(f"method {self.method!r} has no scalar float control with range [0, 1] to sweep (controls: {have})")
            raise RestorerError(f"method {self.method!r} has several controls in [0, 1] ({', '.join(candidates)}); choose one with control=")
        if control not in self.controls:
            raise RestorerError(f"unknown control {control!r} for method {self.method!r}; accepted controls: {', '.join(self.controls) or 'none'}")
        if control not in candidates:
            spec = self.controls[control]
            raise RestorerError(
                f"control {control!r} cannot be swept: a sweep needs a scalar float control with range [0, 1] "
                f"(it has shape {spec.shape}, dtype {spec.dtype}, range [{spec.min}, {spec.max}])"
            )
        return control

    def sweep(
        self,
        image: Any,
        control: str | None = None,
        num: int = 8,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        margin: int | None = None,
        progress: bool = False,
        **controls: Any,
    ) -> np.ndarray:
        """Restore one image ``num`` times with ``control`` at ``i / num`` (``i = 0 .. num - 1``,
        values in ``[0, 1)``): float32 frames ``[num, H*s, W*s, C]``.

        ``control`` defaults to the model's only scalar float control in ``[0, 1]`` (e.g. CFMD's
        moment ``u``); other controls are fixed by ``controls``. One compilation for all values.
        """
        name = self.sweep_control(control)
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise RestorerError(f"num must be a positive integer number of frames, got {num!r}")
        if name in controls:
            raise RestorerError(f"control {name!r} is what the sweep varies; do not also pass {name}=")
        arr, squeeze = self._check_input(image)
        if not squeeze and arr.shape[0] != 1:
            raise RestorerError(f"a sweep restores one image [H, W, C], got a batch of shape {arr.shape}")
        from tqdm.auto import tqdm

        values = np.arange(int(num), dtype=np.float64) / int(num)
        frames = [
            self(arr[0], tile=tile, overlap=overlap, margin=margin, **{name: np.float32(v)}, **controls)
            for v in tqdm(values, desc=f"sweeping {name}", unit="frame", disable=not progress)
        ]
        return np.stack(frames)

    def sweep_file(
        self,
        in_path: PathLike,
        out_path: PathLike,
        *,
        control: str | None = None,
        num: int = 8,
        fps: float = 10.0,
        tile: int | None = None,
        overlap: int | None = None,
        progress: bool = True,
        **controls: Any,
    ) -> pathlib.Path:
        """:meth:`sweep` an image file into ``out_path``: ``.gif / .mp4 / .mov / .mkv`` at ``fps``, or a
        PNG sequence (a folder, or a pattern such as ``out/u_%02d.png``) in the input's form (bit
        depth, grey, alpha kept; video formats drop the alpha)."""
        from restore_jax.inference.image_io import (
            check_frames_output,
            read_image_for_restore,
            restore_output,
            sequence_path,
            write_frames,
            write_restored,
        )

        try:
            kind = check_frames_output(out_path)
        except ValueError as e:
            raise RestorerError(str(e)) from e
        if not (np.isfinite(fps) and fps > 0):
            raise RestorerError(f"fps must be a positive number, got {fps}")
        self._check_image_model("a control sweep")
        if kind == "video":
            check_not_input(in_path, out_path)
        elif isinstance(num, (int, np.integer)) and not isinstance(num, bool):
            for i in range(max(int(num), 0)):
                check_not_input(in_path, sequence_path(out_path, i))
        rgb, info = read_image_for_restore(in_path)
        frames = self.sweep(rgb, control, num, tile=tile, overlap=overlap, progress=progress, **controls)
        out_path = pathlib.Path(out_path)
        if kind == "video":
            flat = dataclasses.replace(info, alpha=None)
            return write_frames(out_path, (restore_output(f, flat) for f in frames), fps=fps)
        for i, f in enumerate(frames):
            target = sequence_path(out_path, i)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_restored(target, f, info)
        return out_path

    # -- export ----------------------------------------------------------------------------------

    def export(self, out_dir: PathLike, *, platforms=None, overwrite: bool = False) -> pathlib.Path:
        """Write a ``jax.export`` bundle of this model (``docs/inference.md``).

        Image models take ``[b, h, w, C]``; window models (``video_mode``) a window of frames
        ``[b, window, h, w, C]`` and return ``[b, temporal_scale * (window - 1) + 1, h*s, w*s, C]``.
        Batch, height and width are symbolic; controls become inputs ``[b, *shape]``."""
        from restore_jax.inference.export import export_bundle

        side = max(self.multiple, 16)
        side = -(-side // self.multiple) * self.multiple
        config = self.config.to_dict() if hasattr(self.config, "to_dict") else self.config
        if self.video_mode is not None:
            v = self.video_mode
            kind = dict(
                example_input_shape=(1, v["window"], side, side, self.channels),
                input_kind="window",
                window=v["window"],
                temporal_scale=v["temporal_scale"],
                stride=v["stride"],
            )
        else:
            kind = dict(example_input_shape=(side, side, self.channels))
        return export_bundle(
            self.apply,
            self.params,
            out_dir,
            multiple=self.multiple,
            scale=self.scale,
            method=self.method,
            controls=self.controls,
            manifest_extra={"step": self.step, "config": config},
            platforms=platforms,
            overwrite=overwrite,
            **kind,
        )


def inference_hooks(spec: InferenceSpec, method_id: str) -> dict[str, Any]:
    """The :class:`Restorer` keyword arguments (``method``, ``scale``, ``multiple``, ``controls``,
    ``channels``, ``video_mode``) of a method's :class:`InferenceSpec`. Needs no weights: the CLI
    uses it to build its control options."""
    return {
        "method": method_id,
        "scale": int(spec.scale),
        "multiple": int(spec.multiple),
        "controls": dict(spec.controls),
        "channels": int(spec.channels),
        "video_mode": spec.video_mode,
    }
