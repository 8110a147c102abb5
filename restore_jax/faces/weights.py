"""Where the face-api TF.js weight files live, and loading one model's tensors.

Resolution order for the weights folder:

1. the ``weights_dir`` argument;
2. the environment variable ``RESTORE_JAX_FACE_API``;
3. ``../shared/weights/face-api`` next to the repository checkout, when present.

Nothing is downloaded. The files come from the npm package ``@vladmandic/face-api`` (MIT licence),
folder ``model/`` (e.g. ``npm pack @vladmandic/face-api@1.7.15`` and unpack ``package/model/``).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from restore_jax.faces.tfjs import load_tfjs_weights
from restore_jax.locations import shared_dir

__all__ = ["ENV_VAR", "MODEL_FILES", "load_face_api_weights", "resolve_weights_dir"]

ENV_VAR = "RESTORE_JAX_FACE_API"

#: Model key -> file stem; each model needs ``<stem>-weights_manifest.json`` and ``<stem>.bin``.
MODEL_FILES: dict[str, str] = {
    "face_recognition": "face_recognition_model",
    "face_landmark_68": "face_landmark_68_model",
    "face_landmark_68_tiny": "face_landmark_68_tiny_model",
    "tiny_face_detector": "tiny_face_detector_model",
}


_HOW_TO_GET = (
    "Get them from the npm package @vladmandic/face-api (MIT licence), folder model/ "
    "(e.g. `npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz` gives "
    "package/model/), then pass weights_dir=... or set the environment variable "
    f"{ENV_VAR} to that folder."
)


def _needed_files(stem: str) -> list[str]:
    return [f"{stem}-weights_manifest.json", f"{stem}.bin"]


def resolve_weights_dir(weights_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The face-api weights folder: argument, else ``$RESTORE_JAX_FACE_API``, else ``../shared``."""
    if weights_dir is not None:
        path, source = pathlib.Path(weights_dir), "the weights_dir argument"
    elif os.environ.get(ENV_VAR):
        path, source = pathlib.Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    elif (shared_dir() / "weights" / "face-api").is_dir():
        path, source = shared_dir() / "weights" / "face-api", "the default ../shared/weights/face-api"
    else:
        files = ", ".join(f for stem in MODEL_FILES.values() for f in _needed_files(stem))
        raise FileNotFoundError(
            f"face-api weights not found: no weights_dir given, ${ENV_VAR} unset and {shared_dir() / 'weights' / 'face-api'} "
            f"absent. Needed files: {files}. {_HOW_TO_GET}"
        )
    if not path.is_dir():
        raise FileNotFoundError(f"face-api weights folder {path} (from {source}) does not exist. {_HOW_TO_GET}")
    return path


def load_face_api_weights(model: str, weights_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Dequantized float32 tensors of one face-api model (``model`` is a key of :data:`MODEL_FILES`)."""
    if model not in MODEL_FILES:
        raise ValueError(f"unknown face-api model {model!r}; expected one of {sorted(MODEL_FILES)}")
    folder = resolve_weights_dir(weights_dir)
    stem = MODEL_FILES[model]
    missing = [f for f in _needed_files(stem) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"face-api model {model!r}: missing {', '.join(missing)} in {folder}. {_HOW_TO_GET}")
    return load_tfjs_weights(folder / f"{stem}-weights_manifest.json")
