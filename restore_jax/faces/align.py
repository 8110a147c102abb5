"""Face alignment: detect -> 68 landmarks -> similarity transform to a canonical crop -> paste back.

Coordinates (here and in :mod:`restore_jax.faces`) are continuous ``(x, y)`` pixels with the origin
at the top-left *corner* of the image, so pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)``
and its centre is ``(j + 0.5, i + 0.5)``. A transform is a ``[2, 3]`` matrix ``A`` mapping image
coordinates to crop coordinates: ``crop_xy = A[:, :2] @ image_xy + A[:, 2]``.

Pipeline (:func:`align_and_restore`):

1. :class:`~restore_jax.faces.detector.TinyFaceDetector` finds face boxes;
2. :class:`~restore_jax.faces.landmarks.FaceLandmarkNet` runs on a square crop around each box and
   again on a square around the first pass's landmarks (the net was trained on crops that the face
   fills, so the second pass is better centred);
3. five points are taken from the 68 (:func:`five_points`: the two eye centres, the nose tip and the
   two mouth corners) and mapped onto :func:`face_template` by the least-squares similarity
   (rotation, uniform scale, translation) of Umeyama (1991) (:func:`umeyama`);
4. the crop is resampled (:func:`warp_crop`), restored by the caller's ``restore_fn`` and pasted
   back (:func:`paste_back`) with a feathered rectangular mask; pixels the mask does not reach are
   left bit-for-bit unchanged.

The default template frames faces like the FFHQ data set (eyes at 47 % of the height, the
distance between the eye centres a quarter of the crop); ``margin`` adds context around it
(``margin=m`` shrinks the template about the crop centre by ``1 / (1 + 2m)``; negative values zoom
in).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from restore_jax.faces.detector import TinyFaceDetector
from restore_jax.faces.landmarks import FaceLandmarkNet

__all__ = [
    "AlignedFace",
    "CHIP_TEMPLATE",
    "FFHQ_TEMPLATE",
    "FaceNets",
    "align_and_restore",
    "align_faces",
    "alignment_transform",
    "detect_faces",
    "face_template",
    "five_points",
    "invert_transform",
    "landmarks_in_box",
    "paste_back",
    "umeyama",
    "warp_crop",
]

#: Five-point template as fractions of the crop side: left eye centre, right eye centre (image
#: left / right), nose tip, left / right mouth corner. FFHQ-style framing: the crop side is four
#: times the eye-centre distance (rounded to 0.246), with the eyes slightly above the middle.
FFHQ_TEMPLATE = np.array(
    [[0.377, 0.469], [0.623, 0.469], [0.500, 0.613], [0.393, 0.725], [0.611, 0.725]], dtype=np.float64
)

#: Tight "face chip" framing of the recognition net's training data: the mean five points that
#: :class:`FaceLandmarkNet` finds on UTKFace's "aligned & cropped" chips (made with dlib's aligner,
#: the convention dlib's recognition model expects). In FFHQ-template terms: 1.55x zoom, centred
#: lower (on the nose). Use ``face_template(150, template=CHIP_TEMPLATE)`` to cut recognition chips.
CHIP_TEMPLATE = np.array(
    [[0.292, 0.286], [0.676, 0.286], [0.480, 0.515], [0.321, 0.683], [0.658, 0.683]], dtype=np.float64
)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """``[..., 5, 2]`` alignment points from iBUG-68 landmarks ``[..., 68, 2]``.

    Eye centres are the means of points 36-41 and 42-47; the nose tip is point 30; the mouth
    corners are points 48 and 54.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape[-2:] != (68, 2):
        raise ValueError(f"five_points expects [..., 68, 2] landmarks, got shape {lm.shape}")
    return np.stack(
        [lm[..., 36:42, :].mean(-2), lm[..., 42:48, :].mean(-2), lm[..., 30, :], lm[..., 48, :], lm[..., 54, :]],
        axis=-2,
    )


def face_template(size: int, margin: float = 0.0, template: np.ndarray = FFHQ_TEMPLATE) -> np.ndarray:
    """Template points ``[5, 2]`` in the pixels of a ``size x size`` crop (see the module docstring)."""
    if margin <= -0.5:
        raise ValueError(f"margin must be > -0.5 (1 + 2 * margin > 0), got {margin}")
    t = np.asarray(template, np.float64)
    return (0.5 + (t - 0.5) / (1.0 + 2.0 * margin)) * float(size)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``[2, 3]`` mapping points ``src [N, 2]`` onto ``dst [N, 2]``.

    Minimises ``sum ||s R src_i + t - dst_i||^2`` over rotations ``R`` (no reflection), scale ``s``
    and translation ``t`` (Umeyama, 1991): with centred point sets ``X, Y`` and
    ``U S V^T = svd(Y^T X / N)``, ``R = U diag(1, det(U V^T)) V^T``,
    ``s = trace(diag(S) diag(1, det)) / var(X)``, ``t = mean(dst) - s R mean(src)``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"umeyama expects two [N, 2] point sets (N >= 2), got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    x, y = src - mu_s, dst - mu_d
    var_x = (x**2).sum() / len(x)
    if var_x <= 0:
        raise ValueError("umeyama: the source points are all identical")
    u, sv, vt = np.linalg.svd(y.T @ x / len(x))
    d = np.array([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ np.diag(d) @ vt
    scale = (sv * d).sum() / var_x
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Inverse of a ``[2, 3]`` affine transform."""
    a = np.asarray(transform, np.float64)
    inv = np.linalg.inv(a[:, :2])
    return np.concatenate([inv, -inv @ a[:, 2:]], axis=1)


def alignment_transform(
    landmarks: np.ndarray, size: int, margin: float = 0.0, template: np.ndarray = FFHQ_TEMPLATE
) -> np.ndarray:
    """Image -> crop similarity ``[2, 3]`` that puts the face's five points on the template."""
    return umeyama(five_points(landmarks), face_template(size, margin, template))


def _apply(transform: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ transform[:, :2].T + transform[:, 2]


def _as_float(image: np.ndarray, fn: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"{fn} expects an RGB image [H, W, 3], got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"{fn} expects uint8 or float RGB in [0, 1], got dtype {img.dtype}")
    return img.astype(np.float32)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edge-replicated borders), float32."""
    radius = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.pad(img, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    out = sum(k[i] * out[i : i + img.shape[0]] for i in range(len(k)))
    out = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    out = sum(k[i] * out[:, i : i + img.shape[1]] for i in range(len(k)))
    return out.astype(np.float32)


def _sample(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img [H, W, C]`` at continuous (corner-origin) ``x, y``; edges replicated."""
    h, w = img.shape[:2]
    u = np.clip(x - 0.5, 0, w - 1)  # to pixel-centre indices
    v = np.clip(y - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(u).astype(np.int64), w - 2) if w > 1 else np.zeros(u.shape, np.int64)
    y0 = np.minimum(np.floor(v).astype(np.int64), h - 2) if h > 1 else np.zeros(v.shape, np.int64)
    fx = (u - x0)[..., None]
    fy = (v - y0)[..., None]
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def warp_crop(image: np.ndarray, transform: np.ndarray, size: int, *, antialias: bool = True) -> np.ndarray:
    """The ``size x size`` crop ``crop(p) = image(A^-1 p)`` (bilinear, edges replicated), float32 [0, 1].

    With ``antialias``, when the crop is smaller than the face in the image (scale ``s < 1``) the
    image is blurred first with a Gaussian of sigma ``0.5 * sqrt(1 / s^2 - 1)`` pixels, so the
    resampling does not alias.
    """
    img = _as_float(image, "warp_crop")
    a = np.asarray(transform, np.float64)
    scale = np.sqrt(abs(np.linalg.det(a[:, :2])))
    inv = invert_transform(a)
    c = np.arange(size) + 0.5
    cx, cy = np.meshgrid(c, c)
    src = _apply(inv, np.stack([cx, cy], -1))
    if antialias and scale < 1.0:
        sigma = 0.5 * np.sqrt(1.0 / scale**2 - 1.0)
        h, w = img.shape[:2]
        pad = int(np.ceil(3 * sigma)) + 2
        x0 = int(max(np.floor(src[..., 0].min()) - pad, 0))
        x1 = int(min(np.ceil(src[..., 0].max()) + pad, w))
        y0 = int(max(np.floor(src[..., 1].min()) - pad, 0))
        y1 = int(min(np.ceil(src[..., 1].max()) + pad, h))
        if x1 > x0 and y1 > y0:  # blur only the region the crop reads
            img = img.copy()
            img[y0:y1, x0:x1] = _gaussian_blur(img[y0:y1, x0:x1], sigma)
    return _sample(img, src[..., 0], src[..., 1])


def paste_back(
    original: np.ndarray,
    restored_crop: np.ndarray,
    transform: np.ndarray,
    *,
    feather: float = 0.1,
    crop_size: int | None = None,
) -> np.ndarray:
    """Warp ``restored_crop`` back into ``original`` and blend it with a feathered rectangle.

    ``transform`` maps ``original`` to a ``crop_size`` crop (default: the restored crop's own
    size); a restored crop of another size (e.g. after super-resolution) is handled by rescaling
    the transform by ``restored side / crop_size``. The blend weight in crop space is
    ``w = clip(d / (feather * side), 0, 1)`` with ``d`` the distance to the nearest crop edge, a
    linear ramp over a ``feather`` fraction of the crop; ``out = w * face + (1 - w) * original``.
    Pixels with ``w = 0`` (outside the crop) are copied from ``original`` bit for bit; the result
    has ``original``'s dtype (uint8 results are rounded).
    """
    out = np.array(original, copy=True)
    orig = _as_float(original, "paste_back")
    crop = _as_float(restored_crop, "paste_back (restored_crop)")
    if crop.shape[0] != crop.shape[1]:
        raise ValueError(f"paste_back expects a square crop, got {crop.shape[:2]}")
    if not 0.0 <= feather <= 0.5:
        raise ValueError(f"feather must be in [0, 0.5] (a fraction of the crop side), got {feather}")
    side = crop.shape[0]
    a = np.asarray(transform, np.float64) * (side / float(crop_size or side))
    corners = _apply(invert_transform(a), np.array([[0, 0], [side, 0], [0, side], [side, side]], np.float64))
    h, w = orig.shape[:2]
    x0 = int(max(np.floor(corners[:, 0].min()) - 1, 0))
    x1 = int(min(np.ceil(corners[:, 0].max()) + 1, w))
    y0 = int(max(np.floor(corners[:, 1].min()) - 1, 0))
    y1 = int(min(np.ceil(corners[:, 1].max()) + 1, h))
    if x1 <= x0 or y1 <= y0:
        return out
    gx, gy = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    p = _apply(a, np.stack([gx, gy], -1))
    edge = np.minimum(np.minimum(p[..., 0], side - p[..., 0]), np.minimum(p[..., 1], side - p[..., 1]))
    ramp = feather * side
    weight = np.clip(edge / ramp, 0.0, 1.0) if ramp > 0 else (edge > 0).astype(np.float64)
    inside = weight > 0
    if not inside.any():
        return out
    face = _sample(crop, p[..., 0][inside], p[..., 1][inside])
    wgt = weight[inside][:, None].astype(np.float32)
    blended = wgt * face + (1 - wgt) * orig[y0:y1, x0:x1][inside]
    region = out[y0:y1, x0:x1]
    if out.dtype == np.uint8:
        region[inside] = np.round(np.clip(blended, 0, 1) * 255.0).astype(np.uint8)
    else:
        region[inside] = blended.astype(out.dtype)
    return out


@dataclasses.dataclass
class FaceNets:
    """The nets the alignment pipeline needs (loaded once; reuse the object)."""

    detector: TinyFaceDetector
    landmarks: FaceLandmarkNet

    @classmethod
    def from_face_api(cls, weights_dir: str | os.PathLike | None = None, landmark_variant: str = "full") -> "FaceNets":
        detector = TinyFaceDetector.from_face_api(weights_dir)
        return cls(detector, FaceLandmarkNet.from_face_api(weights_dir, landmark_variant))


_DEFAULT_NETS: FaceNets | None = None


def _default_nets() -> FaceNets:
    global _DEFAULT_NETS
    if _DEFAULT_NETS is None:
        _DEFAULT_NETS = FaceNets.from_face_api()
    return _DEFAULT_NETS


def _square_transform(cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Axis-aligned transform taking the square of ``side`` centred at ``(cx, cy)`` to ``size x size``."""
    s = size / side
    return np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy]])


def landmarks_in_box(
    image: np.ndarray, boxes: np.ndarray, net: FaceLandmarkNet, *, refine: bool = True
) -> np.ndarray:
    """68 landmarks ``[N, 68, 2]`` (image pixels) for each box ``[N, 4]`` (x0, y0, x1, y1).

    Pass 1 crops the square of side ``max(box w, h)`` centred on the box; with ``refine``, pass 2
    crops the square of side ``1.05 * max(landmark extent)`` centred on pass 1's landmarks.
    """
    img = _as_float(image, "landmarks_in_box")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, 68, 2))
    size = 112
    squares = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, max(b[2] - b[0], b[3] - b[1], 1.0)) for b in boxes]
    for _ in range(2 if refine else 1):
        mats = [_square_transform(cx, cy, side, size) for cx, cy, side in squares]
        crops = np.stack([warp_crop(img, m, size) for m in mats])
        pts = net.predict(crops)
        lms = np.stack([_apply(invert_transform(m), p) for m, p in zip(mats, pts)])
        lo, hi = lms.min(1), lms.max(1)
        squares = [((l[0] + u[0]) / 2, (l[1] + u[1]) / 2, 1.05 * max(u[0] - l[0], u[1] - l[1])) for l, u in zip(lo, hi)]
    return lms


@dataclasses.dataclass
class AlignedFace:
    """One detected and aligned face."""

    box: np.ndarray  # [4] x0, y0, x1, y1 in image pixels
    score: float  # detector score
    landmarks: np.ndarray  # [68, 2] image pixels
    transform: np.ndarray  # [2, 3] image -> crop
    crop: np.ndarray  # [size, size, 3] float32 in [0, 1]


def detect_faces(
    image: np.ndarray, nets: FaceNets | None = None, *, score_threshold: float = 0.5, refine: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [N, 4], scores [N], landmarks [N, 68, 2])`` for the faces in one image, best first."""
    nets = nets or _default_nets()
    boxes, scores = nets.detector.detect(image, score_threshold=score_threshold)
    return boxes, scores, landmarks_in_box(image, boxes, nets.landmarks, refine=refine)


def align_faces(
    image: np.ndarray,
    *,
    size: int = 512,
    margin: float = 0.0,
    nets: FaceNets | None = None,
    score_threshold: float = 0.5,
    max_faces: int | None = None,
    template: np.ndarray = FFHQ_TEMPLATE,
) -> list[AlignedFace]:
    """Detect, landmark and crop every face in ``image`` to the template (best score first)."""
    boxes, scores, lms = detect_faces(image, nets, score_threshold=score_threshold)
    faces = []
    for box, score, lm in list(zip(boxes, scores, lms))[:max_faces]:
        a = alignment_transform(lm, size, margin, template)
        faces.append(AlignedFace(box, float(score), lm, a, warp_crop(image, a, size)))
    return faces


def align_and_restore(
    image: np.ndarray,
    restore_fn: Callable[[np.ndarray], np.ndarray],
    *,
    size: int = 512,
    margin: float = 0.0,
    nets: FaceNets | None = None,
    feather: float = 0.1,
    score_threshold: float = 0.5,
    max_faces: int | None = None,
) -> np.ndarray:
    """Restore every face of a photo: align each to a ``size`` crop, ``restore_fn(crop)``, paste back.

    ``restore_fn`` takes a ``[size, size, 3]`` float32 crop in [0, 1] and returns a square RGB
    crop in [0, 1] of any size (an SR net may return ``k * size``). Faces are pasted in order of
    detection score (later pastes blend over earlier ones where crops overlap). The result has the
    input's dtype; pixels outside every pasted crop are unchanged.
    """
    out = np.array(image, copy=True)
    for face in align_faces(image, size=size, margin=margin, nets=nets, score_threshold=score_threshold,
                            max_faces=max_faces):
        restored = np.asarray(restore_fn(face.crop))
        out = paste_back(out, restored, face.transform, feather=feather, crop_size=size)
    return out
