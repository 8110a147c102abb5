"""3D face model: ellipsoid solids, surface decals, pose, camera and the 68 iBUG landmarks.

Coordinates. The *model frame* has its origin near the centre of the head, ``x`` towards the
subject's left (image right in a frontal view), ``y`` up and ``z`` out of the face towards the
camera. Lengths are in "head units" (the cranium is about 1.6 wide and 2.1 tall).

Pose. ``(yaw, pitch, roll)`` in degrees rotate the head about its centre:
``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)``. Positive yaw turns the face towards the image right (the
nose tip moves to larger ``x``), positive pitch lifts the face (the nose tip moves up in the image)
and positive roll turns the head counter-clockwise as seen in the image. The neck, shoulders and
the background do not rotate.

Camera. Weak perspective (scaled orthographic) projection: a camera-frame point ``(X, Y, Z)``
lands on pixel ``x = cx + s X``, ``y = cy + s (Y0 - Y)`` with ``s = FACE_SCALE * min(H, W) * scale``,
``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``: pixel ``(row r, col c)`` has its centre at
``(x, y) = (c, r)``. ``Z`` (towards the camera) is the depth used for occlusion. The renderer casts
one orthographic ray per pixel through exactly this mapping, so landmarks projected with
:func:`project` land on the rendered features.

Parts. Solids are ellipsoids (cranium, jaw, nose pieces, ears, neck, torso, hair shells). Flat
features (eyes, brows, lips, cheeks) are *decals* painted on the head surface: each has a tangent
frame ``(center, e_u, e_v, n)`` and a surface point ``P`` gets local coordinates
``u = (P - center) . e_u``, ``v = (P - center) . e_v``. Decal shapes are "bands" between two
quadratic curves ``f(u) = A + B u + C u^2`` (lens-shaped eyes and lips, tapered brows) and
ellipses (iris, pupil). Decal landmarks are local ``(u, v)`` points pushed along ``n`` onto the
head surface, so the rendered decal passes exactly through them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional, Sequence

import numpy as np

from .identity import Identity

# Pixels per head unit, as a fraction of min(H, W); and the model y at the image centre.
FACE_SCALE = 0.30
Y0 = -0.08

PART_LABELS = {
    "background": 0,
    "skin": 1,
    "hair": 2,
    "eye": 3,
    "brow": 4,
    "nose": 5,
    "mouth": 6,
    "ear": 7,
    "neck": 8,
    "cloth": 9,
    "glasses": 10,
}

EXPRESSION_FIELDS = ("mouth_open", "smile", "blink_right", "blink_left", "brow_raise", "gaze_x", "gaze_y")
_EXPRESSION_RANGES = {
    "mouth_open": (0.0, 1.0),
    "smile": (-1.0, 1.0),
    "blink_right": (0.0, 1.0),
    "blink_left": (0.0, 1.0),
    "brow_raise": (-1.0, 1.0),
    "gaze_x": (-1.0, 1.0),
    "gaze_y": (-1.0, 1.0),
}


@dataclasses.dataclass(frozen=True)
class Expression:
    """Facial expression. ``blink_right`` is the subject's right eye (iBUG points 36-41).

    Ranges: ``mouth_open`` and blinks 0..1, ``smile`` -1 (frown) .. 1, ``brow_raise`` -1 (frown)
    .. 1, gaze -1..1 (``gaze_x`` > 0 looks towards the image right in a frontal view, ``gaze_y``
    > 0 looks up). Out-of-range values are clipped by the renderer.
    """

    mouth_open: float = 0.0
    smile: float = 0.0
    blink_right: float = 0.0
    blink_left: float = 0.0
    brow_raise: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0

    def to_vector(self) -> np.ndarray:
        """Float32 vector in :data:`EXPRESSION_FIELDS` order."""
        return np.array([getattr(self, k) for k in EXPRESSION_FIELDS], np.float32)

    @classmethod
    def from_vector(cls, vector: Sequence[float] | np.ndarray) -> "Expression":
        vector = np.asarray(vector, np.float64).reshape(-1)
        if vector.shape[0] != len(EXPRESSION_FIELDS):
            raise ValueError(
                f"expression vector has {vector.shape[0]} entries, expected {len(EXPRESSION_FIELDS)} "
                f"in the order {EXPRESSION_FIELDS}"
            )
        return cls(**{k: float(x) for k, x in zip(EXPRESSION_FIELDS, vector)})

    def clipped(self) -> "Expression":
        return Expression(
            **{k: min(max(float(getattr(self, k)), lo), hi) for k, (lo, hi) in _EXPRESSION_RANGES.items()}
        )


EXPRESSION_DIM = len(EXPRESSION_FIELDS)
NEUTRAL = Expression()


def as_expression(expression: "Expression | Sequence[float] | np.ndarray | None") -> Expression:
    """Accept an :class:`Expression`, a vector in :data:`EXPRESSION_FIELDS` order, or None (neutral)."""
    if expression is None:
        return NEUTRAL
    if isinstance(expression, Expression):
        return expression
    return Expression.from_vector(expression)


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (degrees) in the model frame; see the module docstring."""
    y, p, r = (math.radians(float(a)) for a in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = math.cos(y), math.sin(y), math.cos(p), math.sin(p), math.cos(r), math.sin(r)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return rz @ rx @ ry


def _as_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        if len(size) != 2:
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
        h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise ValueError(f"image size must be at least 8x8 pixels, got {h}x{w}")
    return h, w


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pose + weak-perspective camera for one image (see the module docstring)."""

    rotation: np.ndarray  # (3, 3) head rotation
    translation: np.ndarray  # (3,) camera-frame offset of the head and body (head units)
    s: float  # pixels per head unit
    cx: float
    cy: float

    @classmethod
    def make(
        cls,
        pose: Sequence[float],
        size: tuple[int, int],
        translation: Sequence[float] = (0.0, 0.0),
        scale: float = 1.0,
    ) -> "Camera":
        if len(pose) != 3:
            raise ValueError(f"pose must be (yaw, pitch, roll) in degrees, got {pose!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        h, w = size
        t = np.zeros(3)
        t[: len(translation)] = np.asarray(translation, np.float64)[:3]
        return cls(rotation_matrix(*pose), t, FACE_SCALE * min(h, w) * float(scale), (w - 1) / 2.0, (h - 1) / 2.0)

    def to_camera(self, points: np.ndarray, rigid: bool = True) -> np.ndarray:
        """Model-frame points (..., 3) to the camera frame (rigid: rotate with the head)."""
        points = np.asarray(points, np.float64)
        if rigid:
            points = points @ self.rotation.T
        return points + self.translation

    def to_pixels(self, cam_points: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) to pixel (x, y)."""
        x = self.cx + self.s * cam_points[..., 0]
        y = self.cy + self.s * (Y0 - cam_points[..., 1])
        return np.stack([x, y], axis=-1)


def project(points: np.ndarray, camera: Camera, rigid: bool = True) -> np.ndarray:
    """Model-frame 3D points to pixel (x, y) with the renderer's camera."""
    return camera.to_pixels(camera.to_camera(points, rigid))


# --------------------------------------------------------------------------------------------
# Parts.


@dataclasses.dataclass(frozen=True)
class HairMask:
    """Hairline on a hair shell, in the shell's unit-sphere coordinates (xn, yn, zn).

    Hair where ``yn > y_side + k1 zn + k2 zn^2 + jag * sin(jag_freq * xn)`` (front/side/back
    heights interpolated by the "frontness" ``zn``); ``band`` (bald style) keeps only
    ``band[0] < yn < band[1]`` on the sides and back.
    """

    y_front: float
    y_side: float
    y_back: float
    jag: float = 0.0
    jag_freq: float = 0.0
    band: Optional[tuple[float, float]] = None
    part: float = 0.0  # side parting: lowers the hairline on one side (x) at the front


@dataclasses.dataclass(frozen=True)
class Ellipsoid:
    """A solid: ``{p : |diag(1/axes) rot^T (p - center)| <= 1}`` in the model (or body) frame."""

    name: str
    label: int
    center: np.ndarray
    axes: np.ndarray
    rot: np.ndarray  # columns: the part's own axes in the model frame
    color: np.ndarray
    rigid: bool = True  # moves with the head pose (False: neck, torso)
    specular: float = 0.0
    hair: Optional[HairMask] = None  # masked shell
    occluder: bool = True  # counts for landmark visibility
    head: bool = False  # part of the head union that carries the decals
    half: int = 0  # +1 / -1: only the half with local y >= 0 / <= 0 exists (egg-shaped unions)
    strands: float = 0.0  # strength of the hair-strand texture


@dataclasses.dataclass(frozen=True)
class Frame:
    """Tangent frame of a decal (model frame)."""

    center: np.ndarray
    e_u: np.ndarray
    e_v: np.ndarray
    n: np.ndarray


Quad = tuple[float, float, float]  # f(u) = A + B u + C u^2


def _quad_eval(q: Quad, u: float | np.ndarray) -> float | np.ndarray:
    return q[0] + q[1] * u + q[2] * u * u


@dataclasses.dataclass(frozen=True)
class EyeGeom:
    frame: Frame
    side: int  # -1 subject's right, +1 subject's left
    a: float  # half width
    top: Quad  # upper lid
    bot: Quad  # lower lid
    lash_top: Quad
    lash_bot: Quad
    lash_range: tuple[float, float]
    iris_uv: tuple[float, float]
    r_iris: float
    r_pupil: float
    iris_color: np.ndarray
    openness: float  # 0 closed .. 1 open


@dataclasses.dataclass(frozen=True)
class BrowGeom:
    frame: Frame
    a: float
    top: Quad
    bot: Quad
    color: np.ndarray


@dataclasses.dataclass(frozen=True)
class MouthGeom:
    frame: Frame
    a: float
    a_in: float
    mid: Quad  # mouth line
    outer_top: Quad
    outer_bot: Quad
    inner_top: Quad
    inner_bot: Quad
    teeth_bot: Quad
    opening: float
    lip_color: np.ndarray


@dataclasses.dataclass(frozen=True)
class GlassesGeom:
    frame: Frame  # front plane
    lens_centers: tuple[float, float]  # u of the two lens centres (v = 0)
    lens_axes: tuple[float, float]
    rim: float
    bridge_top: Quad
    bridge_bot: Quad
    bridge_range: tuple[float, float]
    temples: tuple[Frame, Frame]
    temple_length: float
    color: np.ndarray


@dataclasses.dataclass(frozen=True)
class FaceModel:
    """Everything the renderer needs, in the model frame."""

    identity: Identity
    expression: Expression
    solids: tuple[Ellipsoid, ...]
    eyes: tuple[EyeGeom, EyeGeom]  # (subject's right, subject's left)
    brows: tuple[BrowGeom, BrowGeom]
    mouth: MouthGeom
    cheeks: tuple[Frame, Frame]
    cheek_radius: float
    glasses: Optional[GlassesGeom]
    landmarks: np.ndarray  # (68, 3) model frame
    landmark_rigid: bool = True


# --------------------------------------------------------------------------------------------
# Ray casting (model or camera frame, NumPy, batched over parts and rays).

_EYE3 = np.eye(3)
_EYE3.setflags(write=False)


def _table(solids: Sequence[Ellipsoid]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stacked centers (K, 3), rotations (K, 3, 3), axes (K, 3) and half flags (K,)."""
    return (
        np.stack([p.center for p in solids]),
        np.stack([p.rot for p in solids]),
        np.stack([p.axes for p in solids]),
        np.array([p.half for p in solids], np.float64),
    )


def ray_union(
    origins: np.ndarray, directions: np.ndarray, centers: np.ndarray, rots: np.ndarray, axes: np.ndarray, half: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Farthest valid hit ``o + lam d`` of each ray with the union of K ellipsoids.

    ``origins``/``directions`` (N, 3); ellipsoid table as from :func:`_table`. Half-ellipsoids
    (``half = +-1``) only count hits on their own half (local ``y`` >= 0 or <= 0). Returns
    ``lam`` (N,) (``-inf`` where every part is missed) and the index of the part hit (N,).
    """
    # einsum instead of stacked matmul: tiny matrices, and no per-matrix BLAS calls.
    o = np.einsum("knj,kji->kni", origins[None, :, :] - centers[:, None, :], rots) / axes[:, None, :]  # (K, N, 3)
    d = np.einsum("nj,kji->kni", np.broadcast_to(directions, origins.shape), rots) / axes[:, None, :]
    qa = (d * d).sum(-1)
    qb = (o * d).sum(-1)
    qc = (o * o).sum(-1) - 1.0
    disc = qb * qb - qa * qc
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    roots = np.stack([(-qb - sq) / qa, (-qb + sq) / qa])  # (2, K, N)
    y = o[None, :, :, 1] + roots * d[None, :, :, 1]
    valid = ok[None] & ((half[None, :, None] * y >= -1e-9) | (half[None, :, None] == 0))
    roots = np.where(valid, roots, -np.inf).max(axis=0)  # (K, N)
    part = np.argmax(roots, axis=0)
    return roots[part, np.arange(roots.shape[1])], part


def _frontal(xy: np.ndarray, table) -> tuple[np.ndarray, np.ndarray]:
    """Front-most surface point (largest z) of a union of ellipsoids at model (x, y), and normals.

    Same algebra as the renderer: for rays along z the front root of the quadric equation.
    """
    centers, rots, axes, half = table
    xy = np.atleast_2d(np.asarray(xy, np.float64))
    q = np.einsum("kij,klj->kil", rots / (axes * axes)[:, None, :], rots)  # (K, 3, 3)
    dx = xy[None, :, 0] - centers[:, 0:1]  # (K, N)
    dy = xy[None, :, 1] - centers[:, 1:2]
    qzz = q[:, 2, 2:3]
    bq = q[:, 0, 2:3] * dx + q[:, 1, 2:3] * dy
    cq = q[:, 0, 0:1] * dx * dx + 2 * q[:, 0, 1:2] * dx * dy + q[:, 1, 1:2] * dy * dy - 1.0
    disc = bq * bq - qzz * cq
    dz = (np.sqrt(np.maximum(disc, 0.0)) - bq) / qzz
    ok = disc >= 0
    ly = rots[:, 0, 1:2] * dx + rots[:, 1, 1:2] * dy + rots[:, 2, 1:2] * dz
    ok &= (half[:, None] * ly >= -1e-12) | (half[:, None] == 0)
    z = np.where(ok, centers[:, 2:3] + dz, -np.inf)
    k = np.argmax(z, axis=0)
    cols = np.arange(xy.shape[0])
    best = z[k, cols]
    if not np.isfinite(best).all():
        raise RuntimeError("internal error: a feature anchor missed the head surface")
    d = np.stack([dx[k, cols], dy[k, cols], dz[k, cols]], 1)
    normal = np.einsum("nij,nj->ni", q[k], d)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return np.concatenate([xy, best[:, None]], 1), normal


def _frames(points: np.ndarray, normals: np.ndarray, angles_deg: np.ndarray) -> list[Frame]:
    """Tangent frames: ``e_u`` follows model x (rotated in-plane by ``angles_deg``), ``e_v = n x e_u``."""
    n = normals
    e_u = np.array([1.0, 0.0, 0.0]) - n[:, :1] * n
    e_u /= np.linalg.norm(e_u, axis=1, keepdims=True)
    e_v = np.cross(n, e_u)
    a = np.radians(np.asarray(angles_deg, np.float64))[:, None]
    ca, sa = np.cos(a), np.sin(a)
    e_u, e_v = ca * e_u + sa * e_v, -sa * e_u + ca * e_v
    return [Frame(points[i], e_u[i], e_v[i], n[i]) for i in range(points.shape[0])]


def _axes_rot(e_x: Sequence[float], e_y: Sequence[float]) -> np.ndarray:
    """Rotation whose columns are e_x, e_y (orthonormalised) and e_x x e_y."""
    e_x = np.asarray(e_x, np.float64)
    e_x = e_x / np.linalg.norm(e_x)
    e_y = np.asarray(e_y, np.float64)
    e_y = e_y - (e_y @ e_x) * e_x
    e_y = e_y / np.linalg.norm(e_y)
    return np.stack([e_x, e_y, np.cross(e_x, e_y)], axis=1)


def _rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def _hair_mask(style: int, volume: float, part: float) -> Optional[HairMask]:
    if style == 0:  # short
        return HairMask(y_front=0.50 - 0.06 * volume, y_side=0.18, y_back=-0.45, jag=0.012, jag_freq=40.0, part=part)
    if style == 1:  # long
        return HairMask(y_front=0.52, y_side=-0.2, y_back=-1.2, jag=0.01, jag_freq=30.0, part=part)
    if style == 2:  # bald
        return None
    return HairMask(y_front=0.28, y_side=0.05, y_back=-0.5, jag=0.035, jag_freq=55.0)  # fringe


@dataclasses.dataclass(frozen=True)
class _IdentityParts:
    """The expression-independent part of a face model (cached per identity)."""

    half_w: float
    crown_b: float
    cranium: Ellipsoid
    body: tuple[Ellipsoid, ...]  # torso, neck, hair shells, ears (drawing-order prefix)
    nose: tuple[Ellipsoid, ...]
    nose_landmarks: np.ndarray  # (9, 3): iBUG 27-35
    glasses: Optional[GlassesGeom]
    y_tip: float


def _freeze(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=1024)  # pure memo: dataset identities are revisited
def _identity_parts(idn: Identity) -> _IdentityParts:
    skin = _freeze(idn.rgb("skin"))
    label = PART_LABELS
    eye3 = _EYE3
    half_w = 0.80 * idn.head_width
    crown_b = 1.08 * idn.head_height
    cranium = Ellipsoid(
        "cranium", label["skin"], _freeze(np.zeros(3)), _freeze([half_w, crown_b, 0.9]), eye3, skin, specular=0.04,
        head=True, half=1,
    )
    neutral_lower = Ellipsoid(
        "face_lower", label["skin"], np.zeros(3), np.array([half_w, 1.1 * idn.chin_length, 0.9]), eye3, skin, half=-1
    )
    nl, nw = idn.nose_length, idn.nose_width
    y_tip = 0.0 - 0.30 * nl
    y_bridge = 0.5 * (0.03 + y_tip)
    anchors, _ = _frontal(
        [[0.0, y_bridge], [0.0, y_tip], [-0.072 * nw, y_tip - 0.03], [0.072 * nw, y_tip - 0.03], [0.0, 0.0]],
        _table((cranium, neutral_lower)),
    )
    za = anchors[:, 2]
    sides = (-1, 1)
    nose = (
        Ellipsoid(
            "nose_bridge", label["nose"], _freeze([0.0, y_bridge, za[0] - 0.035]),
            _freeze([0.06 * nw, 0.5 * (0.03 - y_tip) + 0.02, 0.075]), _freeze(_axes_rot([1, 0, 0], [0, 1, -0.35])),
            skin, specular=0.03,
        ),
        Ellipsoid(
            "nose_tip", label["nose"], _freeze([0.0, y_tip, za[1] + 0.055]), _freeze([0.078 * nw, 0.07, 0.08]), eye3,
            skin, specular=0.04,
        ),
    ) + tuple(
        Ellipsoid(
            f"nose_ala_{n}", label["nose"], _freeze([s * 0.072 * nw, y_tip - 0.03, za[2 + i] + 0.005]),
            _freeze([0.05 * nw, 0.045, 0.055]), eye3, _freeze(skin * 0.97), specular=0.04,
        )
        for i, (s, n) in enumerate(zip(sides, "rl"))
    ) + tuple(
        Ellipsoid(
            f"nostril_{n}", label["nose"], _freeze([s * 0.038 * nw, y_tip - 0.072, za[1] + 0.045]),
            _freeze([0.024 * nw, 0.013, 0.04]), _freeze(_rot_y(-s * 20.0)), _freeze(skin * 0.4), occluder=False,
        )
        for s, n in zip(sides, "rl")
    )
    # Nose landmarks 27-35: frontal casts onto the nose (in front of the face by construction).
    nose_xy = np.concatenate(
        [
            np.stack([np.zeros(4), np.linspace(0.03, y_tip, 4)], 1),
            [
                [-0.085 * nw, y_tip - 0.045],
                [-0.04 * nw, y_tip - 0.07],
                [0.0, y_tip - 0.072],
                [0.04 * nw, y_tip - 0.07],
                [0.085 * nw, y_tip - 0.045],
            ],
        ]
    )
    nose_lms = _freeze(_frontal(nose_xy, _table((cranium, neutral_lower) + nose))[0])

    ears = tuple(
        Ellipsoid(
            f"ear_{n}", label["ear"], _freeze([s * (half_w - 0.03), -0.03, -0.08]), _freeze([0.045, 0.19, 0.11]),
            _freeze(_rot_y(-s * 32.0)), _freeze(skin * 0.96), specular=0.02,
        )
        for s, n in zip(sides, "rl")
    )
    neck = Ellipsoid(
        "neck", label["neck"], _freeze([0.0, -1.1, -0.18]), _freeze([0.34 + 0.06 * idn.jaw_width, 0.72, 0.36]), eye3,
        _freeze(skin * 0.9), rigid=False, occluder=False,
    )
    torso = Ellipsoid(
        "torso", label["cloth"], _freeze([0.0, -2.25, -0.25]), _freeze([1.5, 0.9, 0.55]), eye3, _freeze(idn.rgb("shirt")),
        rigid=False, occluder=False,
    )
    hair_rgb = _freeze(idn.rgb("hair"))
    hv = 0.035 + 0.07 * idn.hair_volume
    part = 0.15 if (idn.background_seed % 2) else -0.15
    shells = []
    mask = _hair_mask(idn.hair_style, idn.hair_volume, part)
    if idn.hair_style == 1:  # long: hair hanging behind the head down to the shoulders
        shells.append(
            Ellipsoid(
                "hair_back", label["hair"], _freeze([0.0, -0.55, -0.45]), _freeze([half_w + hv + 0.1, 1.55, 0.6]), eye3,
                hair_rgb, specular=0.1, occluder=False, strands=0.6,
            )
        )
    if mask is not None:
        shells.append(
            Ellipsoid(
                "hair", label["hair"], _freeze([0.0, 0.02, -0.02]), _freeze([half_w + hv, crown_b + 1.4 * hv, 0.9 + hv]),
                eye3, hair_rgb, specular=0.1, hair=mask, occluder=False, strands=1.0,
            )
        )

    glasses = None
    if idn.glasses:
        xe = 0.32 * idn.eye_spacing
        la, lb = 0.2, 0.14
        zf = za[4] + 0.11
        front = Frame(_freeze([0.0, 0.0, zf]), _freeze([1.0, 0.0, 0.0]), _freeze([0.0, 1.0, 0.0]), _freeze([0.0, 0.0, 1.0]))
        temples = []
        length = 0.0
        for s in sides:
            start = np.array([s * (xe + la - 0.01), 0.03, zf - 0.01])
            end = np.array([s * (half_w + 0.03), 0.0, -0.06])
            e_u = end - start
            length = float(np.linalg.norm(e_u))
            e_u = e_u / length
            e_v = np.array([0.0, 1.0, 0.0]) - e_u[1] * e_u
            e_v /= np.linalg.norm(e_v)
            temples.append(Frame(_freeze(0.5 * (start + end)), _freeze(e_u), _freeze(e_v), _freeze(np.cross(e_u, e_v))))
        glasses = GlassesGeom(
            frame=front, lens_centers=(-xe, xe), lens_axes=(la, lb), rim=0.022,
            bridge_top=(0.045, 0.0, -0.6), bridge_bot=(0.022, 0.0, -0.6), bridge_range=(-(xe - la) - 0.01, (xe - la) + 0.01),
            temples=(temples[0], temples[1]), temple_length=length, color=_freeze(idn.rgb("frame")),
        )
    return _IdentityParts(
        half_w=half_w, crown_b=crown_b, cranium=cranium, body=(torso, neck) + tuple(shells) + ears, nose=nose,
        nose_landmarks=nose_lms, glasses=glasses, y_tip=y_tip,
    )


def build_face_model(identity: Identity, expression: Expression | None = None) -> FaceModel:
    """The 3D face of ``identity`` wearing ``expression`` (model frame)."""
    ex = as_expression(expression).clipped()
    idn = identity
    ip = _identity_parts(idn)
    label = PART_LABELS
    skin = ip.cranium.color
    sides = (-1, 1)  # subject's right (image left in a frontal view), subject's left
    half_w = ip.half_w

    # The cranium is an "egg": two half-ellipsoids sharing the horizontal cross-section at y = 0
    # (a C1-smooth surface); the jaw ellipsoid only shows at the jaw corners of wide jaws.
    jaw_drop = 0.07 * ex.mouth_open
    chin_b = 1.1 * idn.chin_length + jaw_drop
    lower = Ellipsoid(
        "face_lower", label["skin"], ip.cranium.center, np.array([half_w, chin_b, 0.9]), _EYE3, skin, specular=0.04,
        head=True, half=-1,
    )
    head = [ip.cranium, lower]
    jaw_y = -0.45 - 0.5 * jaw_drop  # its bottom (-0.85) stays above the chin: it only widens the jaw corners
    if idn.jaw_width > math.sqrt(max(1.0 - (jaw_y / chin_b) ** 2, 0.0)) - 0.02:  # only when it can show
        head.append(
            Ellipsoid(
                "jaw", label["skin"], np.array([0.0, jaw_y, 0.0]),
                np.array([half_w * idn.jaw_width, 0.4 + 0.5 * jaw_drop, 0.62]), _EYE3, skin, specular=0.04, head=True,
            )
        )
    head = tuple(head)
    head_table = _table(head)

    # --- feature anchors on the head surface (one batched frontal cast) --------------------------
    nl = idn.nose_length
    es = idn.eye_spacing
    y_mouth = -0.6 * (0.55 + 0.45 * idn.chin_length) - 0.03 * (nl - 1.0)
    smile_up = 0.04 * max(ex.smile, 0.0)
    brow_y = 0.2 + 0.05 * ex.brow_raise
    anchors_xy = np.array(
        [
            [-0.32 * es, 0.0],  # 0, 1 eyes
            [0.32 * es, 0.0],
            [-0.33 * es, brow_y],  # 2, 3 brows
            [0.33 * es, brow_y],
            [0.0, y_mouth],  # 4 mouth
            [-0.42, -0.30 + smile_up],  # 5, 6 cheeks
            [0.42, -0.30 + smile_up],
        ]
    )
    # Jaw landmarks 0-16: the frontal outline of the head union, pulled 7 % inwards, lifted onto
    # the surface (cast together with the anchors).
    y_mid = -0.42
    dirs = _JAW_DIRS
    radius = np.zeros(17)
    for part_ in head:
        ax, ay = part_.axes[0], part_.axes[1]
        dy0 = y_mid - part_.center[1]
        qa = (dirs[:, 0] / ax) ** 2 + (dirs[:, 1] / ay) ** 2
        qb = dirs[:, 1] * dy0 / ay**2
        qc = (dy0 / ay) ** 2 - 1.0
        r = (-qb + np.sqrt(np.maximum(qb * qb - qa * qc, 0.0))) / qa
        if part_.half:
            r = np.where(part_.half * (dy0 + r * dirs[:, 1]) >= 0, r, 0.0)
        radius = np.maximum(radius, r)
    jaw_xy = np.array([0.0, y_mid]) + 0.93 * radius[:, None] * dirs
    tilt, raise_ = idn.eye_tilt, ex.brow_raise
    p, n = _frontal(np.concatenate([anchors_xy, jaw_xy]), head_table)
    frames = _frames(p[:7], n[:7], np.array([-tilt, tilt, 4.0 * raise_, -4.0 * raise_, 0.0, 0.0, 0.0]))

    # --- eyes -----------------------------------------------------------------------------------
    eyes = []
    a = 0.15 * idn.eye_width
    t0 = 0.066 * idn.eye_height * (1.0 + 0.25 * max(ex.brow_raise, 0.0))
    b0 = 0.05 * idn.eye_height * (1.0 - 0.35 * max(ex.smile, 0.0))
    lw = 0.013
    r_iris = 0.064 * idn.iris_size
    iris = idn.rgb("iris")
    for i, (s, beta) in enumerate(zip(sides, (ex.blink_right, ex.blink_left))):
        top_k = (1 - beta) * t0 - beta * 0.35 * b0
        bot_k = (1 - beta) * b0 + beta * 0.35 * b0
        eyes.append(
            EyeGeom(
                frame=frames[i], side=s, a=a,
                top=(top_k, 0.0, -top_k / a**2), bot=(-bot_k, 0.0, bot_k / a**2),
                lash_top=(top_k + lw, 0.0, -top_k / a**2), lash_bot=(top_k - 0.25 * lw, 0.0, -top_k / a**2),
                lash_range=(-a * (1.12 if s < 0 else 1.0), a * (1.12 if s > 0 else 1.0)),
                iris_uv=(ex.gaze_x * 0.45 * a, 0.15 * (t0 - b0) + ex.gaze_y * 0.3 * t0),
                r_iris=r_iris, r_pupil=idn.pupil_size * r_iris, iris_color=iris, openness=1.0 - beta,
            )
        )

    # --- brows ----------------------------------------------------------------------------------
    brows = []
    a = 0.17 * idn.brow_length
    th = 0.05 * idn.brow_thickness
    h = 0.012 + 0.03 * idn.brow_arch + 0.012 * ex.brow_raise
    brow_rgb = idn.rgb("brow")
    for i, s in enumerate(sides):
        up = s * 0.3 * a  # the arch peaks towards the outer end
        base = h - h * up * up / a**2
        lin = 2 * h * up / a**2
        brows.append(
            BrowGeom(
                frame=frames[2 + i], a=a,
                top=(base + 0.375 * th, lin - 0.125 * th * s / a, -h / a**2),
                bot=(base - 0.375 * th, lin + 0.125 * th * s / a, -h / a**2),
                color=brow_rgb,
            )
        )

    # --- mouth ----------------------------------------------------------------------------------
    a = 0.23 * idn.mouth_width * (1.0 + 0.12 * ex.smile)
    a_in = 0.86 * a
    t_up, t_lo = 0.04 * idn.lip_thickness, 0.055 * idn.lip_thickness
    o = 0.16 * ex.mouth_open
    k2 = 0.045 * ex.smile / a**2
    mouth = MouthGeom(
        frame=frames[4], a=a, a_in=a_in,
        mid=(0.0, 0.0, k2),
        outer_top=(t_up, 0.0, k2 - t_up / a**2),
        outer_bot=(-(t_lo + o), 0.0, k2 + (t_lo + o) / a**2),
        inner_top=(0.1 * o, 0.0, k2 - 0.1 * o / a_in**2),
        inner_bot=(-o, 0.0, k2 + o / a_in**2),
        teeth_bot=(-0.42 * o, 0.0, k2 + 0.42 * o / a_in**2),
        opening=o, lip_color=idn.rgb("lip"),
    )

    # --- landmarks ------------------------------------------------------------------------------
    lms = np.empty((68, 3))
    lms[0:17] = p[7:]
    lms[27:36] = ip.nose_landmarks
    # Decal landmarks: local (u, v) points pushed along each decal's normal onto the head.
    uv_list, frame_of = [], []
    for brow in brows:  # 17-26, x increasing
        us = np.linspace(-0.96, 0.96, 5) * brow.a
        vs = 0.75 * _quad_eval(brow.top, us) + 0.25 * _quad_eval(brow.bot, us)
        uv_list.append(np.stack([us, vs], 1)), frame_of.append(brow.frame)
    for eye in eyes:  # 36-47: corner, 2 upper lid, corner, 2 lower lid (clockwise in the image)
        a = eye.a
        us = np.array([-a, -a / 3, a / 3, a, a / 3, -a / 3])
        vs = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        vs[1:3] = _quad_eval(eye.top, us[1:3])
        vs[4:6] = _quad_eval(eye.bot, us[4:6])
        uv_list.append(np.stack([us, vs], 1)), frame_of.append(eye.frame)
    a, ai = mouth.a, mouth.a_in  # 48-67
    uo = np.array([-a, -2 * a / 3, -a / 3, 0.0, a / 3, 2 * a / 3, a, 2 * a / 3, a / 3, 0.0, -a / 3, -2 * a / 3])
    vo = np.empty(12)
    vo[[0, 6]] = _quad_eval(mouth.mid, uo[[0, 6]])
    vo[1:6] = _quad_eval(mouth.outer_top, uo[1:6])
    vo[7:12] = _quad_eval(mouth.outer_bot, uo[7:12])
    ui = np.array([-ai, -ai / 2, 0.0, ai / 2, ai, ai / 2, 0.0, -ai / 2])
    vi = np.empty(8)
    vi[[0, 4]] = _quad_eval(mouth.mid, ui[[0, 4]])
    vi[1:4] = _quad_eval(mouth.inner_top, ui[1:4])
    vi[5:8] = _quad_eval(mouth.inner_bot, ui[5:8])
    uv_list.append(np.stack([np.concatenate([uo, ui]), np.concatenate([vo, vi])], 1)), frame_of.append(mouth.frame)
    counts = [uv.shape[0] for uv in uv_list]
    uv = np.concatenate(uv_list)
    c = np.repeat(np.stack([f.center for f in frame_of]), counts, axis=0)
    e_u = np.repeat(np.stack([f.e_u for f in frame_of]), counts, axis=0)
    e_v = np.repeat(np.stack([f.e_v for f in frame_of]), counts, axis=0)
    nrm = np.repeat(np.stack([f.n for f in frame_of]), counts, axis=0)
    plane = c + uv[:, :1] * e_u + uv[:, 1:2] * e_v
    origins = plane - nrm
    lam, _ = ray_union(origins, nrm, *head_table)
    if not np.isfinite(lam).all():
        raise RuntimeError("internal error: a decal landmark missed the head surface")
    pts = origins + lam[:, None] * nrm
    lms[17:27] = pts[0:10]
    lms[36:48] = pts[10:22]
    lms[48:68] = pts[22:42]

    body = ip.body
    solids = body + head + ip.nose
    return FaceModel(
        identity=idn, expression=ex, solids=solids, eyes=(eyes[0], eyes[1]), brows=(brows[0], brows[1]),
        mouth=mouth, cheeks=(frames[5], frames[6]), cheek_radius=0.13, glasses=ip.glasses, landmarks=lms,
    )


_psi = np.radians(np.linspace(-114.0, 114.0, 17))
_JAW_DIRS = _freeze(np.stack([np.sin(_psi), -np.cos(_psi)], axis=1))


def landmarks_3d(identity: Identity, expression: Expression | None = None) -> np.ndarray:
    """The 68 iBUG landmarks of ``identity`` as model-frame 3D points (68, 3)."""
    return build_face_model(identity, expression).landmarks.copy()


def landmark_visibility(model: FaceModel, camera: Camera, tol: float = 0.01) -> np.ndarray:
    """True where a landmark is not hidden by the head itself (cranium, jaw, nose, ears).

    Hair and glasses do not count as occluders (annotation convention of 300W-style data).
    """
    occ = [p for p in model.solids if p.occluder]
    centers, rots, axes, half = _table(occ)
    rigid = np.array([p.rigid for p in occ])
    rot = camera.rotation
    centers = np.where(rigid[:, None], centers @ rot.T, centers) + camera.translation
    rots = np.where(rigid[:, None, None], np.einsum("ij,kjl->kil", rot, rots), rots)
    cam = camera.to_camera(model.landmarks, True)
    origins = cam.copy()
    origins[:, 2] = -20.0
    lam, _ = ray_union(origins, np.array([0.0, 0.0, 1.0]), centers, rots, axes, half)
    return cam[:, 2] >= origins[:, 2] + lam - tol
