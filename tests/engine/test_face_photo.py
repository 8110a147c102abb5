"""Whole-photo face restoration: faces are found, restored and pasted; the rest is untouched."""

from __future__ import annotations

import numpy as np
import pytest

from restore_jax.faces import align as A
from restore_jax.inference.face_photo import restore_faces_in_photo
from restore_jax.ops import imresize_np


@pytest.fixture(scope="module")
def nets(face_api_weights):
    return A.FaceNets.from_face_api(face_api_weights)


@pytest.fixture(scope="module")
def photo():
    from input_pipelines.synthetic_faces import render_face, sample_identity

    img = render_face(sample_identity(3), pose=(-10.0, 0.0, 0.0), size=(160, 160))[0]
    canvas = np.full((200, 260, 3), 0.35, np.float32)  # the face sits off-centre in a wider photo
    canvas[30:190, 90:250] = img
    return canvas


def _face_region(face: A.AlignedFace, scale: int, crop: int, shape) -> np.ndarray:
    """Boolean mask of canvas pixels that map inside the crop (independent of paste_back)."""
    a = face.transform @ np.diag([1.0 / scale, 1.0 / scale, 1.0])
    gy, gx = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    p = np.einsum("ij,hwj->hwi", a, np.stack([gx, gy, np.ones_like(gx)], -1))
    return (p[..., 0] > 0) & (p[..., 0] < crop) & (p[..., 1] > 0) & (p[..., 1] < crop)


def test_bicubic_restore_matches_background_and_outside_is_untouched(photo, nets):
    scale, crop = 2, 64
    out, faces = restore_faces_in_photo(photo, lambda c: imresize_np(c, scale=scale), crop_size=crop, scale=scale, nets=nets)
    background = np.clip(imresize_np(photo, scale=scale), 0, 1)
    assert len(faces) >= 1 and out.shape == (400, 520, 3)
    inside = _face_region(faces[0], scale, crop, out.shape[:2])
    assert 0.05 < inside.mean() < 0.9
    np.testing.assert_array_equal(out[~inside], background[~inside])
    # A bicubic "restoration" of the aligned crop is close to the bicubic background in the face.
    assert np.abs(out[inside] - background[inside]).mean() < 0.03


def test_restored_content_lands_on_the_face(photo, nets):
    out, faces = restore_faces_in_photo(photo, lambda c: np.ones((64, 64, 3), np.float32), crop_size=64, scale=1, nets=nets)
    f = faces[0]
    eyes = A.five_points(f.landmarks)[:2].mean(0)  # between the eyes: deep inside the crop
    x, y = int(eyes[0]), int(eyes[1])
    np.testing.assert_allclose(out[y - 2 : y + 3, x - 2 : x + 3], 1.0, atol=1e-6)
    assert np.all(out[:5, :5] == photo[:5, :5])  # a far corner keeps the input


def test_bad_inputs_have_clear_errors(photo, nets):
    with pytest.raises(ValueError, match="template"):
        restore_faces_in_photo(photo, lambda c: c, crop_size=64, template="oval", nets=nets)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        restore_faces_in_photo(photo[..., 0], lambda c: c, crop_size=64, nets=nets)
    with pytest.raises(ValueError, match="crop_size \\* scale"):
        restore_faces_in_photo(photo, lambda c: c, crop_size=64, scale=2, nets=nets)
