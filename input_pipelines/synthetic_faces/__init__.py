"""Procedural, deterministic synthetic faces: the embedded default dataset (NumPy only).

A seed becomes a person (:func:`sample_identity`); a simple 3D face (ellipsoids plus painted
features) is rendered from any head pose with any expression (:func:`render_face`), together with
68 iBUG landmarks projected with the same camera. On top: continuous-time talking/blinking motion
(:func:`render_sequence`), synchronised multi-view captures (:func:`render_views`), identity sets
(:func:`render_identity_set`), a lip-synchronised voice (:func:`synthesize_voice`) and a
random-access dataset (:class:`SyntheticFaces`). See ``docs/synthetic_faces.md``.
"""

from .dataset import DEFAULT_NUM_IDENTITIES, SPLIT_OFFSETS, SPLITS, SyntheticFaces
from .geometry import (
    EXPRESSION_DIM,
    EXPRESSION_FIELDS,
    FACE_SCALE,
    NEUTRAL,
    PART_LABELS,
    Camera,
    Expression,
    FaceModel,
    build_face_model,
    landmark_visibility,
    landmarks_3d,
    project,
    rotation_matrix,
)
from .identity import BACKGROUND_KINDS, HAIR_STYLES, IDENTITY_DIM, IDENTITY_FIELDS, Identity, sample_identity
from .motion import (
    make_motion,
    motion_at,
    render_identity_set,
    render_sequence,
    render_sequence_full,
    render_views,
    sample_expression,
    sample_pose,
)
from .render import light_direction, render_background, render_face, render_model
from .voice import synthesize_voice

__all__ = [
    "BACKGROUND_KINDS",
    "Camera",
    "DEFAULT_NUM_IDENTITIES",
    "EXPRESSION_DIM",
    "EXPRESSION_FIELDS",
    "Expression",
    "FACE_SCALE",
    "FaceModel",
    "HAIR_STYLES",
    "IDENTITY_DIM",
    "IDENTITY_FIELDS",
    "Identity",
    "NEUTRAL",
    "PART_LABELS",
    "SPLITS",
    "SPLIT_OFFSETS",
    "SyntheticFaces",
    "build_face_model",
    "landmark_visibility",
    "landmarks_3d",
    "light_direction",
    "make_motion",
    "motion_at",
    "project",
    "render_background",
    "render_face",
    "render_identity_set",
    "render_model",
    "render_sequence",
    "render_sequence_full",
    "render_views",
    "rotation_matrix",
    "sample_expression",
    "sample_identity",
    "sample_pose",
    "synthesize_voice",
]
