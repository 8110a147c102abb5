"""Tests for the procedural synthetic face renderer (input_pipelines/synthetic_faces).

Landmark/feature agreement is checked against the *image*, not against the renderer's own
bookkeeping: we re-render the same face with one attribute changed (iris, brow or lip colour,
background) and use the pixels that change as an independent mask of that feature.
"""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pytest

from input_pipelines.synthetic_faces import (
    EXPRESSION_DIM,
    EXPRESSION_FIELDS,
    FACE_SCALE,
    IDENTITY_DIM,
    Expression,
    Identity,
    SyntheticFaces,
    landmarks_3d,
    render_face,
    render_identity_set,
    render_sequence,
    render_sequence_full,
    render_views,
    sample_identity,
    synthesize_voice,
)
from input_pipelines.synthetic_faces.geometry import Y0

SIZE = 96


def _plain(seed: int, **changes) -> Identity:
    """An identity without glasses, with short hair (nothing covering brows/eyes)."""
    base = dict(glasses=0, hair_style=0)
    base.update(changes)
    return dataclasses.replace(sample_identity(seed), **base)


def _changed(a: np.ndarray, b: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    return np.abs(a - b).max(axis=-1) > tol


def _dilate(mask: np.ndarray, r: int = 1) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def _at(mask: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Mask values at the pixels nearest to (x, y) points (pixel centres at integer coordinates)."""
    xi = np.clip(np.round(xy[:, 0]).astype(int), 0, mask.shape[1] - 1)
    yi = np.clip(np.round(xy[:, 1]).astype(int), 0, mask.shape[0] - 1)
    return mask[yi, xi]


# --- identities and determinism ------------------------------------------------------------------


def test_identity_sampling_is_deterministic_and_roundtrips():
    a, b, c = sample_identity(3), sample_identity(3), sample_identity(4)
    assert a == b and a != c
    assert sample_identity((0, 17)) == sample_identity(np.random.default_rng([0, 17]))
    vec = a.to_vector()
    assert vec.shape == (IDENTITY_DIM,) and vec.dtype == np.float32
    assert Identity.from_vector(vec).hair_style == a.hair_style
    np.testing.assert_allclose(Identity.from_vector(vec).to_vector(), vec)
    with pytest.raises(ValueError, match="entries"):
        Identity.from_vector(vec[:-1])
    styles = {sample_identity(i).hair_style for i in range(60)}
    assert styles == {0, 1, 2, 3}


def test_render_is_deterministic_and_seed_dependent():
    idn = sample_identity(11)
    ex = Expression(mouth_open=0.3, smile=0.2)
    img1, lm1, vis1 = render_face(idn, (12.0, -5.0, 3.0), ex, SIZE)
    img2, lm2, vis2 = render_face(idn, (12.0, -5.0, 3.0), ex, SIZE)
    assert img1.dtype == np.float32 and img1.shape == (SIZE, SIZE, 3)
    assert lm1.dtype == np.float32 and lm1.shape == (68, 2) and vis1.dtype == bool and vis1.shape == (68,)
    assert img1.tobytes() == img2.tobytes() and lm1.tobytes() == lm2.tobytes() and np.array_equal(vis1, vis2)
    assert 0.0 <= img1.min() and img1.max() <= 1.0 and np.isfinite(img1).all()
    img3, lm3, _ = render_face(sample_identity(12), (12.0, -5.0, 3.0), ex, SIZE)
    assert np.abs(img1 - img3).mean() > 0.02
    assert np.abs(lm1 - lm3).max() > 0.5


def test_bad_arguments_raise_clear_errors():
    idn = sample_identity(0)
    with pytest.raises(ValueError, match="pose"):
        render_face(idn, (0.0, 0.0), None, 32)
    with pytest.raises(ValueError, match="size"):
        render_face(idn, (0.0, 0.0, 0.0), None, (32, 32, 3))
    with pytest.raises(ValueError, match="expression vector"):
        render_face(idn, (0.0, 0.0, 0.0), [0.1, 0.2], 32)
    with pytest.raises(ValueError, match="split"):
        SyntheticFaces(32, split="training")


# --- landmarks agree with the rendered image --------------------------------------------------------


def test_eye_landmarks_lie_on_the_iris():
    for seed in (1, 2, 5):
        idn = _plain(seed, pupil_size=0.0)  # no pupil: the whole iris disc changes colour below
        img, lm, vis = render_face(idn, (0, 0, 0), None, SIZE)
        other = dataclasses.replace(idn, iris_r=1.0 - idn.iris_r, iris_g=1.0 - idn.iris_g, iris_b=0.5)
        img2, lm2, _ = render_face(other, (0, 0, 0), None, SIZE)
        np.testing.assert_array_equal(lm, lm2)
        iris = _changed(img, img2)
        assert iris.sum() > 10
        for sl in (slice(36, 42), slice(42, 48)):
            centre = lm[sl].mean(axis=0, keepdims=True)
            assert _at(iris, centre)[0], f"identity {seed}: eye centre {centre} not on the iris"
        assert vis.all()


def test_brow_and_lip_landmarks_lie_on_the_painted_features():
    for seed in (3, 8):
        idn = _plain(seed)
        ex = Expression(mouth_open=0.6, smile=0.3)
        img, lm, _ = render_face(idn, (0, 0, 0), ex, SIZE)
        magenta_brows = dataclasses.replace(idn, brow_r=1.0, brow_g=0.0, brow_b=1.0)
        green_lips = dataclasses.replace(idn, lip_r=0.0, lip_g=1.0, lip_b=0.0)
        brows = _dilate(_changed(img, render_face(magenta_brows, (0, 0, 0), ex, SIZE)[0]))
        lips = _dilate(_changed(img, render_face(green_lips, (0, 0, 0), ex, SIZE)[0]))
        assert _at(brows, lm[17:27]).all(), "brow landmarks must touch brow pixels"
        assert _at(lips, lm[48:60]).all(), "outer lip landmarks must touch lip pixels"
        assert _at(lips, lm[60:68]).mean() >= 0.75  # inner lip points border the dark mouth opening


def test_all_landmarks_inside_the_head_for_frontal_faces():
    for seed in (4, 6, 9, 13):
        idn = _plain(seed, hair_style=2)  # bald: the silhouette near the face is the head itself
        img, lm, vis = render_face(idn, (0, 0, 0), Expression(mouth_open=0.5), SIZE)
        other = dataclasses.replace(
            idn, background_kind=0, bg1_r=1 - idn.bg1_r, bg1_g=1 - idn.bg1_g, bg1_b=0.5, bg2_r=0.1, bg2_g=0.9, bg2_b=0.3
        )
        foreground = ~_changed(img, render_face(other, (0, 0, 0), Expression(mouth_open=0.5), SIZE)[0], 0.02)
        assert _at(foreground, lm).all(), f"identity {seed}: a landmark falls on the background"
        assert vis.all()
        # Jaw points are on the head outline's inner side: the chin point is the lowest landmark.
        assert lm[8, 1] == lm[:, 1].max()


def test_ibug_left_right_convention_and_yaw_direction():
    idn = _plain(21)
    _, lm, _ = render_face(idn, (0, 0, 0), None, SIZE)
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # subject's right eye = image left
    assert lm[0, 0] < lm[16, 0] and lm[48, 0] < lm[54, 0] and lm[17, 0] < lm[26, 0]
    assert lm[39, 0] < lm[42, 0]  # inner corners face each other
    # Positive yaw turns the face towards the image right: the nose tip moves right, and so do the
    # irises (measured in the image by changing their colour).
    xs, iris_x = [], []
    for yaw in (-30.0, 0.0, 30.0):
        img, lm, _ = render_face(idn, (yaw, 0, 0), None, SIZE)
        other = dataclasses.replace(idn, iris_r=1.0 - idn.iris_r, iris_g=1.0 - idn.iris_g, iris_b=0.5)
        iris = _changed(img, render_face(other, (yaw, 0, 0), None, SIZE)[0])
        xs.append(lm[30, 0])
        iris_x.append(np.nonzero(iris)[1].mean())
    assert xs[0] < xs[1] < xs[2]
    assert iris_x[0] < iris_x[1] < iris_x[2]
    # Positive pitch lifts the face: the nose tip moves up the image.
    _, up, _ = render_face(idn, (0, 20, 0), None, SIZE)
    _, down, _ = render_face(idn, (0, -20, 0), None, SIZE)
    assert up[30, 1] < down[30, 1]


def test_far_side_landmarks_become_hidden_at_profile():
    _, lm, vis = render_face(_plain(2), (75.0, 0, 0), None, SIZE)
    # Turned towards the image right: the subject's left side (jaw 14-16, left eye) faces away.
    assert not vis[14:17].any() and not vis[45]
    assert vis[0:3].all() and vis[30] and vis[36]


def _rotation_reference(yaw, pitch, roll):
    """Independent statement of R = Rz(roll) Rx(pitch) Ry(yaw) via Rodrigues' formula."""

    def axis_angle(axis, deg):
        a = np.radians(deg)
        k = np.asarray(axis, float)
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        return np.eye(3) + math.sin(a) * kx + (1 - math.cos(a)) * kx @ kx

    # Ry(yaw) must send +z to +x for positive yaw; Rx(pitch) must send +z to +y for positive pitch.
    return axis_angle([0, 0, 1], roll) @ axis_angle([-1, 0, 0], pitch) @ axis_angle([0, 1, 0], yaw)


def test_landmarks_follow_the_documented_camera_and_scale_with_resolution():
    idn = sample_identity(5)
    ex = Expression(smile=0.5, blink_left=0.3)
    pose = (23.0, -11.0, 7.0)
    pts = landmarks_3d(idn, ex)
    for size in (64, 128, (80, 120)):
        h, w = (size, size) if isinstance(size, int) else size
        _, lm, _ = render_face(idn, pose, ex, size)
        cam = pts @ _rotation_reference(*pose).T
        s = FACE_SCALE * min(h, w)
        ref = np.stack([(w - 1) / 2 + s * cam[:, 0], (h - 1) / 2 + s * (Y0 - cam[:, 1])], 1)
        np.testing.assert_allclose(lm, ref, atol=1e-3)
    _, lm64, _ = render_face(idn, pose, ex, 64)
    _, lm128, _ = render_face(idn, pose, ex, 128)
    np.testing.assert_allclose(lm128 + 0.5, 2 * (lm64 + 0.5), atol=1e-3)


def test_supersampling_keeps_the_picture_and_landmarks():
    idn = sample_identity(8)
    img1, lm1, _ = render_face(idn, (10, 0, 0), None, 48)
    img2, lm2, _ = render_face(idn, (10, 0, 0), None, 48, supersample=2)
    np.testing.assert_array_equal(lm1, lm2)
    assert np.abs(img1 - img2).mean() < 0.02


# --- sequences, views, identity sets -------------------------------------------------------------


def test_sequences_are_smooth_and_frame_rate_consistent():
    idn = sample_identity(30)
    frames, lms, poses, exprs = render_sequence(idn, 12, 30.0, seed=4, size=64)
    assert frames.shape == (12, 64, 64, 3) and lms.shape == (12, 68, 2)
    assert poses.shape == (12, 3) and exprs.shape == (12, EXPRESSION_DIM)
    step = np.abs(np.diff(frames, axis=0)).mean()
    other, *_ = render_sequence(sample_identity(31), 12, 30.0, seed=4, size=64)
    between = np.abs(frames - other).mean()
    assert step < 0.25 * between
    assert np.abs(np.diff(lms, axis=0)).max() < 4.0  # pixels per frame at 64 px, 30 fps
    assert np.abs(np.diff(poses, axis=0)).max() < 5.0  # degrees per frame
    assert exprs[:, 0].max() > 0.2  # talking
    # Twice the frame rate samples the same continuous motion: even frames are identical.
    f2, l2, p2, e2 = render_sequence(idn, 24, 60.0, seed=4, size=64)
    assert f2[::2].tobytes() == frames.tobytes()
    np.testing.assert_array_equal(l2[::2], lms)
    np.testing.assert_array_equal(p2[::2], poses)
    np.testing.assert_array_equal(e2[::2], exprs)
    # A faster motion_scale moves the head faster; another seed moves differently.
    _, _, fast, _ = render_sequence(idn, 12, 30.0, seed=4, size=32, motion_scale=6.0)
    assert np.abs(np.diff(fast, axis=0)).mean() > 2 * np.abs(np.diff(poses, axis=0)).mean()
    _, _, p_other, _ = render_sequence(idn, 12, 30.0, seed=5, size=32)
    assert np.abs(p_other - poses).max() > 1.0
    with pytest.raises(ValueError, match="disagrees"):
        render_sequence(idn, 10, 30.0, seed=0, duration=1.0, size=32)


def test_drift_adds_straight_line_motion_within_the_angle():
    """``drift`` adds ``v * t`` to the in-plane translation and changes nothing else; the speed is in
    ``[drift / 2, drift]`` and the direction within ``drift_angle`` degrees of the horizontal."""
    idn = sample_identity(30)
    plain = render_sequence_full(idn, 6, 60.0, seed=4, size=32)
    zero = render_sequence_full(idn, 6, 60.0, seed=4, size=32, drift=0.0, drift_angle=10.0)
    assert zero["frames"].tobytes() == plain["frames"].tobytes()
    angles = []
    for seed in range(8):
        base = render_sequence_full(idn, 6, 60.0, seed=seed, size=32)
        moved = render_sequence_full(idn, 6, 60.0, seed=seed, size=32, drift=2.0, drift_angle=20.0)
        for key in ("poses", "zoom", "expressions"):
            np.testing.assert_array_equal(moved[key], base[key])
        extra = (moved["translations"] - base["translations"]).astype(np.float64)
        t = base["times"]
        velocity = extra[-1] / t[-1]
        np.testing.assert_allclose(extra, t[:, None] * velocity[None], atol=1e-6)
        assert 1.0 - 1e-6 <= np.hypot(*velocity) <= 2.0 + 1e-6
        angles.append(np.degrees(np.arctan2(abs(velocity[1]), abs(velocity[0]))))
        # The face moves in the picture along that line: mostly sideways.
        shift = (moved["landmarks"][-1] - base["landmarks"][-1]).mean(0)
        assert abs(shift[0]) > 0.5 and abs(shift[1]) < 0.6 * abs(shift[0])
    assert max(angles) <= 20.0 + 1e-6 and np.ptp(angles) > 1.0
    with pytest.raises(ValueError, match="drift must be"):
        render_sequence_full(idn, 2, 30.0, size=16, drift=-1.0)
    with pytest.raises(ValueError, match="drift_angle"):
        render_sequence_full(idn, 2, 30.0, size=16, drift=1.0, drift_angle=200.0)


def test_views_share_one_moment_and_differ_with_pose():
    idn = sample_identity(40)
    ex = Expression(mouth_open=0.4, smile=0.5)
    poses = [(0.0, 0.0, 0.0), (40.0, 0.0, 0.0), (-40.0, 10.0, 0.0)]
    imgs, lms, vis = render_views(idn, poses, ex, 64)
    assert imgs.shape == (3, 64, 64, 3) and lms.shape == (3, 68, 2) and vis.shape == (3, 68)
    # The frontal view is exactly the single-image render of that moment (light fixed to the head
    # coincides with the camera light at zero pose).
    img0, lm0, _ = render_face(idn, poses[0], ex, 64, light_frame="head")
    assert imgs[0].tobytes() == img0.tobytes()
    np.testing.assert_array_equal(lms[0], lm0)
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(imgs[i] - imgs[j]).mean() > 0.01
            assert np.abs(lms[i] - lms[j]).max() > 2.0
    assert lms[1, 30, 0] > lms[0, 30, 0] > lms[2, 30, 0]


def test_identity_sets_vary_pose_and_expression():
    idn = sample_identity(50)
    imgs, lms, poses, exprs = render_identity_set(idn, 4, seed=1, size=48)
    assert imgs.shape == (4, 48, 48, 3) and lms.shape == (4, 68, 2)
    assert poses.shape == (4, 3) and exprs.shape == (4, EXPRESSION_DIM)
    assert np.ptp(poses[:, 0]) > 5.0
    again = render_identity_set(idn, 4, seed=1, size=48)
    assert again[0].tobytes() == imgs.tobytes()


# --- voice ----------------------------------------------------------------------------------------


def _f0_autocorrelation(x: np.ndarray, sr: int) -> float:
    """Fundamental frequency from the autocorrelation peak in 60-400 Hz."""
    x = x.astype(np.float64) - x.mean()
    n = x.size
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    lo, hi = int(sr / 400), int(sr / 60)
    lag = lo + int(np.argmax(ac[lo:hi]))
    return sr / lag


def test_voice_pitch_matches_the_identity():
    sr = 16000
    estimates = {}
    for seed in range(6):
        idn = sample_identity(seed)
        x = synthesize_voice(idn, 1.5, sr, seed=2)
        assert x.dtype == np.float32 and x.shape == (int(1.5 * sr),)
        assert np.isfinite(x).all() and np.abs(x).max() <= 1.0 and np.abs(x).max() > 0.1
        f0 = _f0_autocorrelation(x, sr)
        assert abs(f0 - idn.voice_pitch) < 0.1 * idn.voice_pitch, (seed, f0, idn.voice_pitch)
        estimates[seed] = (idn.voice_pitch, f0)
    # Identities with clearly different pitch sound different.
    lo = min(estimates, key=lambda k: estimates[k][0])
    hi = max(estimates, key=lambda k: estimates[k][0])
    assert estimates[hi][0] > 1.2 * estimates[lo][0]
    assert estimates[hi][1] > 1.1 * estimates[lo][1]
    idn = sample_identity(0)
    a = synthesize_voice(idn, 0.5, 8000, seed=1)
    assert a.tobytes() == synthesize_voice(idn, 0.5, 8000, seed=1).tobytes()
    assert a.shape == (4000,) and not np.array_equal(a, synthesize_voice(idn, 0.5, 8000, seed=2))


def test_voice_is_lip_synchronised_with_the_sequence():
    idn, sr, fps = sample_identity(7), 16000, 25.0
    _, _, _, exprs = render_sequence(idn, 75, fps, seed=9, size=16)
    x = synthesize_voice(idn, 3.0, sr, seed=9)
    hop = int(sr / fps)
    rms = np.sqrt(np.array([np.mean(x[i * hop : (i + 1) * hop] ** 2) for i in range(75)]))
    corr = np.corrcoef(rms, exprs[:, EXPRESSION_FIELDS.index("mouth_open")])[0, 1]
    assert corr > 0.5


# --- dataset ----------------------------------------------------------------------------------------


def test_dataset_records_splits_and_pickling():
    ds = SyntheticFaces(48, num_identities=5, seed=3, split="train", samples_per_identity=2)
    assert len(ds) == 10
    rec = ds[7]
    expected = {
        "image": ((48, 48, 3), np.float32),
        "landmarks": ((68, 2), np.float32),
        "visibility": ((68,), np.bool_),
        "identity_id": ((), np.int64),
        "pose": ((3,), np.float32),
        "expression": ((EXPRESSION_DIM,), np.float32),
        "identity": ((IDENTITY_DIM,), np.float32),
        "lighting": ((3,), np.float32),
    }
    assert set(rec) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert rec[key].shape == shape and rec[key].dtype == dtype, key
    again = pickle.loads(pickle.dumps(ds))[7]
    assert all(np.array_equal(rec[k], again[k]) for k in rec)
    assert int(ds[2]["identity_id"]) == int(ds[7]["identity_id"])  # 7 % 5 == 2
    assert not np.array_equal(ds[2]["image"], ds[7]["image"])
    with pytest.raises(IndexError):
        ds[10]
    val = SyntheticFaces(48, num_identities=5, seed=3, split="val")
    test = SyntheticFaces(48, num_identities=5, seed=3, split="test")
    ids = [set(d.identity_ids().tolist()) for d in (ds, val, test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    vectors = {tuple(d[i]["identity"].tolist()) for d in (ds, val, test) for i in range(5)}
    assert len(vectors) == 15


def test_dataset_helpers():
    ds = SyntheticFaces(32, num_identities=3, seed=1, split="val", samples_per_identity=2)
    seq = ds.sequence(1, 4, 30.0)
    assert seq["frames"].shape == (4, 32, 32, 3) and seq["landmarks"].shape == (4, 68, 2)
    assert seq["poses"].shape == (4, 3) and seq["expressions"].shape == (4, EXPRESSION_DIM)
    assert int(seq["identity_id"]) == ds.identity_id(1)
    views = ds.views(2, 3)
    assert views["images"].shape == (3, 32, 32, 3) and views["poses"].shape == (3, 3)
    assert abs(views["poses"][0, 0]) < abs(views["poses"][-1, 0])
    group = ds.identity_set(0, 2)
    assert group["images"].shape == (2, 32, 32, 3)
    voice = ds.voice(1, 0.25, 8000)
    assert voice["waveform"].shape == (2000,) and float(voice["voice_pitch"]) > 0
    talk = ds.talking(0, 5, 25.0, 8000)
    assert talk["waveform"].shape == (1600,) and talk["frames"].shape[0] == 5
