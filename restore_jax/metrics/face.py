"""Face metrics: identity distance (face descriptors) and landmark error / jitter (NME, STD, SDD).

Identity uses :class:`restore_jax.faces.FaceRecognitionNet` (dlib's ResNet descriptor, face-api
weights). Landmark metrics follow the thesis' face-alignment chapter (spec §D.4), with ``N = 68``
iBUG points and ``d`` the **outer-ocular** distance, ``||y_36 - y_45||`` (outer corners of the two
eyes). Landmark arrays are ``[..., 68, 2]`` (x, y) in pixels; tracks are ``[..., T, 68, 2]``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["identity_distance", "landmark_nme", "landmark_sdd", "landmark_std", "outer_ocular_distance"]

_RECOGNITION_NET = None


def _default_recognition_net():
    global _RECOGNITION_NET
    if _RECOGNITION_NET is None:
        from restore_jax.faces.recognition import FaceRecognitionNet

        _RECOGNITION_NET = FaceRecognitionNet.from_face_api()
    return _RECOGNITION_NET


def _chip_box_in_ffhq() -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the recognition chip inside an FFHQ-aligned crop, as crop fractions."""
    from restore_jax.faces.align import CHIP_TEMPLATE, FFHQ_TEMPLATE, umeyama

    a = umeyama(FFHQ_TEMPLATE, CHIP_TEMPLATE)  # FFHQ fractions -> chip fractions (rotation ~ 0)
    s = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    tx, ty = a[:, 2]
    return (-tx / s, -ty / s, (1 - tx) / s, (1 - ty) / s)


def _to_chips(x: jnp.ndarray, framing: str, size: int) -> jnp.ndarray:
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"identity_distance expects [B, H, W, 3] or [H, W, 3] RGB in [0, 1], got {tuple(x.shape)}")
    b, h, w, _ = x.shape
    if framing == "chip":
        x0, y0, x1, y1 = 0.0, 0.0, 1.0, 1.0
    elif framing == "ffhq":
        x0, y0, x1, y1 = _chip_box_in_ffhq()
    else:
        raise ValueError(f"framing must be 'chip' or 'ffhq', got {framing!r}")
    scale = jnp.array([size / ((y1 - y0) * h), size / ((x1 - x0) * w)], jnp.float32)
    translation = -jnp.array([y0 * h, x0 * w], jnp.float32) * scale
    return jax.image.scale_and_translate(
        x.astype(jnp.float32), (b, size, size, 3), (1, 2), scale, translation, "linear", antialias=True
    )


def identity_distance(
    restored: jnp.ndarray,
    target: jnp.ndarray,
    *,
    net=None,
    framing: Literal["chip", "ffhq"] = "chip",
) -> dict[str, jnp.ndarray]:
    """Descriptor distances between restored and target faces, per image.

    ``restored``, ``target``: aligned face crops ``[B, H, W, 3]`` (or ``[H, W, 3]``), RGB in [0, 1].
    ``framing="chip"``: the crops are tight face chips (dlib / UTKFace style, e.g. ``faces128``) and
    are resized whole to 150x150; ``"ffhq"``: the crops use the FFHQ template of
    :func:`restore_jax.faces.align.face_template` and the chip region is cut out first.
    ``net``: a :class:`~restore_jax.faces.FaceRecognitionNet` (default: loaded once from the face-api
    weights). Differentiable in the images (usable as an identity loss under ``jax.grad``).

    Returns ``{"cosine": 1 - cos(e_r, e_t), "euclidean": ||e_r - e_t||_2}``, each ``[B]``, for the
    128-D descriptors ``e``. dlib's rule of thumb: Euclidean < 0.6 means the same person.
    """
    net = net if net is not None else _default_recognition_net()
    restored = jnp.asarray(restored)
    target = jnp.asarray(target)
    if restored.shape != target.shape:
        raise ValueError(f"restored and target must have the same shape, got {restored.shape} and {target.shape}")
    from restore_jax.faces.recognition import RECOGNITION_SIZE

    chips = jnp.concatenate(
        [_to_chips(restored, framing, RECOGNITION_SIZE), _to_chips(target, framing, RECOGNITION_SIZE)]
    )
    from flax import nnx

    from restore_jax.faces._layers import jitted

    emb = jitted(net)(chips) if isinstance(net, nnx.Module) else net(chips)  # one compiled call per shape
    e_r, e_t = jnp.split(emb, 2)
    cos = jnp.sum(e_r * e_t, -1) / (jnp.linalg.norm(e_r, axis=-1) * jnp.linalg.norm(e_t, axis=-1) + 1e-12)
    return {"cosine": 1.0 - cos, "euclidean": jnp.linalg.norm(e_r - e_t, axis=-1)}


def _check_landmarks(x, name: str) -> jnp.ndarray:
    x = jnp.asarray(x, jnp.float32)
    if x.ndim < 2 or x.shape[-2:] != (68, 2):
        raise ValueError(f"{name} must be [..., 68, 2] (x, y) landmarks in iBUG order, got shape {tuple(x.shape)}")
    return x


def outer_ocular_distance(landmarks) -> jnp.ndarray:
    """``||p_36 - p_45||``: distance between the outer eye corners, ``[...]`` for ``[..., 68, 2]``."""
    lm = _check_landmarks(landmarks, "landmarks")
    return jnp.linalg.norm(lm[..., 36, :] - lm[..., 45, :], axis=-1)


def landmark_nme(pred, gt) -> jnp.ndarray:
    """Normalised mean error per face (spec §D.4), ``[...]`` for ``[..., 68, 2]`` inputs.

    ``NME = (1 / d) * (1 / N) * sum_i ||pred_i - gt_i||_2`` with ``N = 68`` and ``d`` the
    outer-ocular distance of ``gt`` (:func:`outer_ocular_distance`). Multiply by 100 for the
    percentages the tables report.
    """
    pred = _check_landmarks(pred, "pred")
    gt = _check_landmarks(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}")
    err = jnp.linalg.norm(pred - gt, axis=-1).mean(-1)
    return err / outer_ocular_distance(gt)


def _reduce(x: jnp.ndarray, reduce: str) -> jnp.ndarray:
    if reduce == "none":
        return x
    if reduce == "mean":
        return x.mean(axis=(-2, -1))
    raise ValueError(f"reduce must be 'none' or 'mean', got {reduce!r}")


def _sample_std(x: jnp.ndarray) -> jnp.ndarray:
    """Sample standard deviation over the time axis (-3) with the ``n - 1`` denominator."""
    n = x.shape[-3]
    if n < 2:
        raise ValueError(f"a landmark track needs at least 2 frames along axis -3, got {n}")
    centred = x - x.mean(axis=-3, keepdims=True)
    return jnp.sqrt(jnp.sum(centred**2, axis=-3) / (n - 1))


def landmark_std(track, *, d=None, reduce: Literal["none", "mean"] = "none") -> jnp.ndarray:
    """Jitter of predictions on a *static-face* video (spec §D.4 "STD"), per landmark coordinate.

    ``track``: predictions ``[..., T, 68, 2]`` over the ``T = n`` frames of a clip whose face does
    not move. For each coordinate ``c`` of each landmark::

        STD_c = (1 / d) * sqrt( sum_i (f(x_i)_c - mean_i f(x_i)_c)^2 / (n - 1) )

    ``d``: the outer-ocular distance (default: that of the track's temporal mean shape), a scalar
    or ``[...]``. Returns ``[..., 68, 2]``, or ``[...]`` with ``reduce="mean"`` (mean over
    landmarks and coordinates).
    """
    track = _check_landmarks(track, "track")
    if track.ndim < 3:
        raise ValueError(f"track must be [..., T, 68, 2], got shape {tuple(track.shape)}")
    if d is None:
        d = outer_ocular_distance(track.mean(axis=-3))
    d = jnp.asarray(d, jnp.float32)
    return _reduce(_sample_std(track) / d[..., None, None], reduce)


def landmark_sdd(pred, gt, *, d=None, reduce: Literal["none", "mean"] = "none") -> jnp.ndarray:
    """Standard deviation of the detection error over a video (spec §D.4 "SDD"), per coordinate.

    ``pred``, ``gt``: ``[..., T, 68, 2]``. With the per-frame error ``dy_i = pred_i - gt_i``::

        SDD_c = (1 / d) * sqrt( sum_i (dy_i,c - mean_i dy_i,c)^2 / (n - 1) )

    i.e. how much the error *changes* from frame to frame (a constant offset scores 0; jitter
    around the truth does not). ``d``: the outer-ocular distance (default: the mean over frames of
    ``gt``'s per-frame outer-ocular distance), a scalar or ``[...]``. Returns ``[..., 68, 2]``, or
    ``[...]`` with ``reduce="mean"``.
    """
    pred = _check_landmarks(pred, "pred")
    gt = _check_landmarks(gt, "gt")
    if pred.shape != gt.shape or pred.ndim < 3:
        raise ValueError(f"pred and gt must both be [..., T, 68, 2] of one shape, got {pred.shape} and {gt.shape}")
    if d is None:
        d = outer_ocular_distance(gt).mean(axis=-1)
    d = jnp.asarray(d, jnp.float32)
    return _reduce(_sample_std(pred - gt) / d[..., None, None], reduce)
