"""Whole-photo face restoration: align every face, restore the aligned crop, paste it back.

A face-restoration model is trained on aligned crops; a user's photo has faces anywhere, at any
size and angle. :func:`restore_faces_in_photo` runs the face-analysis pipeline of
:mod:`restore_jax.faces.align` (detector -> 68 landmarks -> similarity transform) to cut each face
to the ``crop_size`` the model expects, calls ``restore_fn`` on it, and warps the result back with
a feathered blend. For a super-resolution model (``scale > 1``) the rest of the photo is upscaled
by MATLAB bicubic so the restored faces are pasted into a canvas of the output size.

    from restore_jax.inference import restore_faces_in_photo
    r = restore_jax.api.load_restorer("runs/demo")
    out, faces = restore_faces_in_photo(photo, r, crop_size=16, scale=r.scale)

The face nets need the face-api weights (``RESTORE_JAX_FACE_API`` or ``../shared/weights/face-api``);
a missing file is a ``FileNotFoundError`` naming what to provide.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from restore_jax.faces import align as A

__all__ = ["restore_faces_in_photo", "TEMPLATES"]

TEMPLATES = {"ffhq": A.FFHQ_TEMPLATE, "chip": A.CHIP_TEMPLATE}


def _as_float_rgb(photo: np.ndarray) -> np.ndarray:
    x = np.asarray(photo)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"restore_faces_in_photo expects an RGB photo [H, W, 3], got shape {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype == np.uint16:
        return x.astype(np.float32) / 65535.0
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"photo dtype {x.dtype} not supported: use uint8, uint16 or float in [0, 1]")
    return np.clip(x.astype(np.float32), 0.0, 1.0)


def restore_faces_in_photo(
    photo: np.ndarray,
    restore_fn: Callable[[np.ndarray], np.ndarray],
    *,
    crop_size: int,
    scale: int = 1,
    template: str = "ffhq",
    margin: float = 0.0,
    feather: float = 0.1,
    score_threshold: float = 0.5,
    max_faces: int | None = None,
    nets: A.FaceNets | None = None,
) -> tuple[np.ndarray, list[A.AlignedFace]]:
    """Restore every detected face of ``photo``; returns ``(output float32 [sH, sW, 3], faces)``.

    ``restore_fn`` maps a ``[crop_size, crop_size, 3]`` float32 crop in [0, 1] to a
    ``[crop_size * scale, crop_size * scale, 3]`` restored crop (e.g. a :class:`Restorer`).
    ``template``: how the model's training crops were framed, ``'ffhq'`` (eyes at 47 % height,
    eye distance a quarter of the side) or ``'chip'`` (tight dlib-style chips); ``margin`` widens
    (> 0) or tightens the framing. Pixels outside every pasted crop are the input (``scale = 1``)
    or its MATLAB-bicubic upscaling, bit for bit. With no face detected the result is that
    background and ``faces`` is empty.
    """
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {sorted(TEMPLATES)}, got {template!r}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if crop_size < 8:
        raise ValueError(f"crop_size={crop_size} is too small for face alignment (use >= 8 pixels)")
    scale = int(scale)
    image = _as_float_rgb(photo)
    if scale > 1:
        from restore_jax.ops import imresize_np

        canvas = np.clip(imresize_np(image, scale=scale), 0.0, 1.0).astype(np.float32)
    else:
        canvas = image.copy()
    faces = A.align_faces(
        image, size=crop_size, margin=margin, nets=nets, score_threshold=score_threshold,
        max_faces=max_faces, template=TEMPLATES[template],
    )
    # The crop transform maps photo pixels to crop pixels; on the upscaled canvas x_up = s * x.
    to_canvas = np.diag([1.0 / scale, 1.0 / scale, 1.0])
    for face in faces:
        restored = np.asarray(restore_fn(face.crop), np.float32)
        want = crop_size * scale
        if restored.shape != (want, want, 3):
            raise ValueError(
                f"restore_fn returned shape {restored.shape} for a {crop_size}x{crop_size} crop; expected "
                f"({want}, {want}, 3) (crop_size * scale): check scale={scale}"
            )
        canvas = A.paste_back(canvas, np.clip(restored, 0.0, 1.0), face.transform @ to_canvas,
                              feather=feather, crop_size=crop_size)
    return canvas, faces
