"""Inference: tiled / chunked application of trained models, image I/O, export to bundles.

Everything here needs only an apply function and arrays (``docs/inference.md``):

* :func:`tiled_apply` — fixed-size overlapping tiles, feathered blend, one compilation;
* :func:`chunked_video_apply` / :func:`iter_chunked_video` / :func:`sliding_window_apply` /
  :func:`per_frame_apply` — temporal windows for video models (optionally tiled);
* :func:`read_image_for_restore` / :func:`write_restored` / :func:`write_image` /
  :func:`write_frames` — the input normalisation rules (bit depth, grey, alpha) and outputs;
* :func:`export_bundle` / :func:`load_bundle` — ``jax.export`` bundles loadable with only jax (and its dependencies) + flatbuffers;
* :class:`Restorer` — a training checkpoint (+ its config snapshot) as a restoration function for
  images, videos (:meth:`Restorer.video`) and control sweeps (:meth:`Restorer.sweep`).

Submodules are imported on first use (``image_io`` pulls in Pillow, ``export`` the loader only).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "tiled_apply": "tiling",
    "tile_starts": "tiling",
    "blend_weights_1d": "tiling",
    "chunked_video_apply": "chunking",
    "iter_chunked_video": "chunking",
    "sliding_window_apply": "chunking",
    "per_frame_apply": "chunking",
    "plan_windows": "chunking",
    "num_output_frames": "chunking",
    "Window": "chunking",
    "ControlSpec": "export",
    "export_bundle": "export",
    "flatten_params": "export",
    "Bundle": "bundle_loader",
    "BundleError": "bundle_loader",
    "load_bundle": "bundle_loader",
    "ImageInfo": "image_io",
    "ImageReadError": "image_io",
    "read_image_for_restore": "image_io",
    "decode_image_for_restore": "image_io",
    "restore_output": "image_io",
    "write_image": "image_io",
    "write_restored": "image_io",
    "check_restored_output": "image_io",
    "write_frames": "image_io",
    "check_frames_output": "image_io",
    "sequence_path": "image_io",
    "restore_faces_in_photo": "face_photo",
    "Restorer": "restorer",
    "RestorerError": "restorer",
    "FolderRestoreError": "restorer",
    "plan_folder": "restorer",
    "read_video": "restorer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
