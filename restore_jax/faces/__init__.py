"""Face analysis nets re-stated from the face-api TF.js weights, and face alignment utilities.

* :class:`FaceRecognitionNet`: 150x150 face chip -> 128-D identity descriptor;
* :class:`FaceLandmarkNet`: 112x112 face crop -> 68 iBUG landmarks (``full`` and ``tiny``);
* :class:`TinyFaceDetector`: image -> face boxes and scores;
* :mod:`restore_jax.faces.align`: detect -> landmarks -> canonical crop -> restore -> paste back.

Weights are read from the face-api ``model/`` folder (see :mod:`restore_jax.faces.weights`);
``docs/faces.md`` documents the architectures and conventions.
"""

from restore_jax.faces.align import (
    AlignedFace,
    FaceNets,
    align_and_restore,
    align_faces,
    alignment_transform,
    detect_faces,
    face_template,
    five_points,
    paste_back,
    umeyama,
    warp_crop,
)
from restore_jax.faces.detector import TinyFaceDetector, decode_detections, nms
from restore_jax.faces.landmarks import FaceLandmarkNet
from restore_jax.faces.recognition import FaceRecognitionNet
from restore_jax.faces.tfjs import TfjsWeightsError, load_tfjs_weights
from restore_jax.faces.weights import load_face_api_weights, resolve_weights_dir

__all__ = [
    "AlignedFace",
    "FaceLandmarkNet",
    "FaceNets",
    "FaceRecognitionNet",
    "TfjsWeightsError",
    "TinyFaceDetector",
    "align_and_restore",
    "align_faces",
    "alignment_transform",
    "decode_detections",
    "detect_faces",
    "face_template",
    "five_points",
    "load_face_api_weights",
    "load_tfjs_weights",
    "nms",
    "paste_back",
    "resolve_weights_dir",
    "umeyama",
    "warp_crop",
]
