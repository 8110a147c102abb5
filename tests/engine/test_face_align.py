"""Face alignment: similarity fit, crop / paste-back geometry, and the full pipeline on synthetic faces."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from restore_jax.faces import align as A


def _rot_scale(angle_deg, scale, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _smooth_image(h, w, seed=0):
    """A smooth RGB image in [0.1, 0.9] (sums of low-frequency waves), float32."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.uniform(0.5, 3, 2).tolist() + [rng.uniform(0, 6.3)]
            img[..., c] += np.sin(2 * np.pi * (fx * x + fy * y) + ph)
    return (0.5 + 0.1 * img).astype(np.float32)


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    true = _rot_scale(17.0, 1.7, -12.0, 30.0)
    dst = src @ true[:, :2].T + true[:, 2]
    np.testing.assert_allclose(A.umeyama(src, dst), true, atol=1e-9)
    # A mirrored target still gets a proper rotation (det > 0), never a reflection.
    est = A.umeyama(src, dst * np.array([-1.0, 1.0]))
    assert np.linalg.det(est[:, :2]) > 0
    inv = A.invert_transform(true)
    np.testing.assert_allclose(A._apply(inv, dst), src, atol=1e-9)


def test_five_points_and_template():
    lm = np.zeros((68, 2))
    lm[36:42] = [10, 20]
    lm[42:48] = [30, 20]
    lm[30], lm[48], lm[54] = [20, 30], [12, 40], [28, 40]
    np.testing.assert_array_equal(A.five_points(lm), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])
    t = A.face_template(512)
    assert np.isclose(t[1, 0] - t[0, 0], 0.246 * 512)
    # margin shrinks the template about the centre by 1 / (1 + 2 margin).
    np.testing.assert_allclose(A.face_template(512, margin=0.25) - 256, (t - 256) / 1.5)


def test_warp_crop_integer_shift_is_exact():
    img = np.random.default_rng(1).random((60, 70, 3)).astype(np.float32)
    shift = np.array([[1.0, 0, -10], [0, 1.0, -20]])  # crop(x, y) = image(x + 10, y + 20)
    np.testing.assert_array_equal(A.warp_crop(img, shift, 32), img[20:52, 10:42])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_paste_back_leaves_outside_pixels_unchanged(dtype):
    rng = np.random.default_rng(2)
    h, w, size = 120, 160, 64
    orig = rng.random((h, w, 3))
    orig = (orig * 255).astype(np.uint8) if dtype == np.uint8 else orig.astype(np.float32)
    a = _rot_scale(25.0, 0.9, -20.0, 10.0)
    crop = np.full((size, size, 3), 0.25, np.float32)
    out = A.paste_back(orig, crop, a, feather=0.1)
    assert out.dtype == orig.dtype and out.shape == orig.shape
    gx, gy = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    p = A._apply(a, np.stack([gx, gy], -1))
    edge = np.minimum(np.minimum(p[..., 0], size - p[..., 0]), np.minimum(p[..., 1], size - p[..., 1]))
    outside = edge <= 0
    assert outside.sum() > 1000 and (~outside).sum() > 1000
    np.testing.assert_array_equal(out[outside], orig[outside])  # bit for bit
    # Deep inside (beyond the feather ramp) the pixels are the restored crop.
    deep = edge >= 0.1 * size + 1
    expected = np.uint8(round(0.25 * 255)) if dtype == np.uint8 else np.float32(0.25)
    assert deep.sum() > 500 and np.all(out[deep] == expected)
    # In the ramp the weight rises linearly: value = w * 0.25 + (1 - w) * original.
    ramp = (edge > 0) & (edge < 0.1 * size)
    wgt = (edge[ramp] / (0.1 * size))[:, None]
    origf = orig[ramp].astype(np.float64) / (255 if dtype == np.uint8 else 1)
    outf = out[ramp].astype(np.float64) / (255 if dtype == np.uint8 else 1)
    np.testing.assert_allclose(outf, wgt * 0.25 + (1 - wgt) * origf, atol=0.6 / 255 if dtype == np.uint8 else 1e-5)


def test_crop_and_paste_back_round_trip():
    img = _smooth_image(200, 240)
    a = _rot_scale(-12.0, 1.3, -60.0, -20.0)  # the crop samples the face at 1.3x
    size = 128
    crop = A.warp_crop(img, a, size)
    out = A.paste_back(img, crop, a, feather=0.1)
    inside = ~np.all(out == img, axis=-1)
    assert inside.sum() > 5000
    assert np.abs(out - img).max() < 0.01
    # A restore_fn that upsamples 2x (as an SR net would): pass the size the transform was made for.
    up = np.stack([np.asarray(Image.fromarray(crop[..., c]).resize((2 * size, 2 * size), Image.Resampling.BICUBIC))
                   for c in range(3)], -1)
    out2 = A.paste_back(img, up, a, feather=0.1, crop_size=size)
    assert np.abs(out2 - img).max() < 0.02
    np.testing.assert_array_equal(out2[~inside], img[~inside])


# ----------------------------------------------------------------------------- with the face-api nets


@pytest.fixture(scope="module")
def nets(face_api_weights):
    return A.FaceNets.from_face_api(face_api_weights)


@pytest.fixture(scope="module")
def two_faces():
    """Two synthetic faces side by side, with their ground-truth landmarks (corner-origin pixels)."""
    from input_pipelines.synthetic_faces import render_face, sample_identity

    tiles, gts = [], []
    for k, (seed, yaw) in enumerate([(3, -10.0), (8, 12.0)]):
        img, lm, _ = render_face(sample_identity(seed), pose=(yaw, 0.0, 0.0), size=(256, 256))[:3]
        tiles.append(img)
        gts.append(lm + 0.5 + np.array([256 * k, 0]))  # the renderer puts pixel centres at integers
    return np.concatenate(tiles, axis=1), np.stack(gts)


def test_pipeline_on_synthetic_faces(nets, two_faces):
    photo, gt = two_faces
    boxes, scores, lms = A.detect_faces(photo, nets)
    assert len(boxes) == 2
    order = np.argsort(boxes[:, 0])
    from restore_jax.metrics.face import landmark_nme

    nme = np.asarray(landmark_nme(lms[order], gt))
    print(f"\nlandmark NME on two synthetic faces (vs the renderer's points): {nme.round(3)}")
    assert np.all(nme < 0.12)

    # Identity restore -> the photo comes back inside the faces (up to two bilinear resamplings,
    # which soften sharp edges such as the seam between the tiles); far corners are untouched.
    same = A.align_and_restore(photo, lambda c: c, size=256, nets=nets)
    for face in gt:
        (x0, y0), (x1, y1) = face.min(0).astype(int), face.max(0).astype(int)
        err = np.abs(same[y0:y1, x0:x1] - photo[y0:y1, x0:x1])
        assert err.mean() < 0.01 and np.percentile(err, 99) < 0.12  # measured: ~0.005 and ~0.09
    np.testing.assert_array_equal(same[:8, :8], photo[:8, :8])
    # A restore_fn that inverts colours changes both faces (seen at the nose tips).
    inverted = A.align_and_restore(photo, lambda c: 1.0 - c, size=128, nets=nets)
    for nose in gt[:, 30]:
        x, y = int(nose[0]), int(nose[1])
        np.testing.assert_allclose(inverted[y, x], 1.0 - photo[y, x], atol=0.05)
    changed = ~np.all(inverted == photo, axis=-1)
    assert changed[:, :256].sum() > 5000 and changed[:, 256:].sum() > 5000
    np.testing.assert_array_equal(inverted[~changed], photo[~changed])
