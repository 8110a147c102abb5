"""Face-api net re-statements: shapes, one layer each against NumPy, and behaviour on real data."""

from __future__ import annotations

import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageFilter

from restore_jax.faces import align as A
from restore_jax.faces.detector import DETECTOR_ANCHORS, TinyFaceDetector, decode_detections, nms
from restore_jax.faces.landmarks import FaceLandmarkNet
from restore_jax.faces.recognition import FaceRecognitionNet

# ----------------------------------------------------------------------------- NumPy references


def _same_pads(n, k, s):
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def np_conv(x, k, stride=1, padding="SAME"):
    """Cross-correlation NHWC x HWIO, explicit loop over output pixels."""
    kh, kw = k.shape[:2]
    if padding == "SAME":
        pads = (_same_pads(x.shape[1], kh, stride), _same_pads(x.shape[2], kw, stride))
    elif padding == "VALID":
        pads = ((0, 0), (0, 0))
    else:
        pads = padding
    xp = np.pad(x.astype(np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, k.shape[3]))
    for y in range(oh):
        for xx in range(ow):
            win = xp[:, y * stride : y * stride + kh, xx * stride : xx * stride + kw, :]
            out[:, y, xx] = np.tensordot(win, k, axes=([1, 2, 3], [0, 1, 2]))
    return out


def np_depthwise(x, k, stride=1, padding="SAME"):
    """Depthwise conv with a [kh, kw, C, 1] kernel, explicit loop over output pixels."""
    kh, kw = k.shape[:2]
    pads = (_same_pads(x.shape[1], kh, stride), _same_pads(x.shape[2], kw, stride)) if padding == "SAME" else padding
    xp = np.pad(x.astype(np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for y in range(oh):
        for xx in range(ow):
            win = xp[:, y * stride : y * stride + kh, xx * stride : xx * stride + kw, :]
            out[:, y, xx] = (win * k[:, :, :, 0]).sum(axis=(1, 2))
    return out


def np_separable(x, w, prefix, stride=1, padding="SAME"):
    y = np_depthwise(x, w[f"{prefix}/depthwise_filter"], stride, padding)
    return np.einsum("bhwc,cd->bhwd", y, w[f"{prefix}/pointwise_filter"][0, 0]) + w[f"{prefix}/bias"]


def np_pool(x, window, stride, padding, op):
    if padding == "SAME":
        pads = (_same_pads(x.shape[1], window, stride), _same_pads(x.shape[2], window, stride))
    else:
        pads = ((0, 0), (0, 0))
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-np.inf)
    oh = (xp.shape[1] - window) // stride + 1
    ow = (xp.shape[2] - window) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for y in range(oh):
        for xx in range(ow):
            out[:, y, xx] = op(xp[:, y * stride : y * stride + window, xx * stride : xx * stride + window], axis=(1, 2))
    return out


relu = lambda v: np.maximum(v, 0)  # noqa: E731

# ----------------------------------------------------------------------------- random-weight nets


def _weights_of(shapes, seed):
    from restore_jax.faces._layers import random_weights

    return random_weights(shapes, seed)


def test_recognition_shape_and_stem_against_numpy():
    w = _weights_of(FaceRecognitionNet.weight_shapes(), 1)
    net = FaceRecognitionNet(w)
    x = np.random.default_rng(0).random((1, 150, 150, 3)).astype(np.float32)
    out = net.embed(x)
    assert out.shape == (1, 128) and out.dtype == jnp.float32
    # Stem: (255 x - mean) / 256 -> 7x7/2 valid conv + bias -> affine -> ReLU -> 3x3/2 valid max-pool.
    xn = (x.astype(np.float64) * 255 - np.array([122.782, 117.001, 104.298])) / 256
    h = np_conv(xn, w["conv32_down/conv/filters"], 2, "VALID") + w["conv32_down/conv/bias"]
    h = relu(h * w["conv32_down/scale/weights"] + w["conv32_down/scale/biases"])
    ref = np_pool(h, 3, 2, "VALID", np.max)
    got = np.asarray(jax.jit(lambda m, v: m.features(v))(net, jnp.asarray(x)))
    assert got.shape == ref.shape == (1, 35, 35, 32)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_recognition_downsampling_block_against_numpy():
    """conv256_down on an 8x8 map: the conv branch is 3x3, the pooled skip 4x4 (dlib's zero-pad add)."""
    w = _weights_of(FaceRecognitionNet.weight_shapes(), 2)
    block = FaceRecognitionNet(w).blocks[10]
    x = np.random.default_rng(1).standard_normal((1, 8, 8, 128)).astype(np.float32)

    def conv_affine(v, p, stride, padding):
        v = np_conv(v, w[f"{p}/conv/filters"], stride, padding) + w[f"{p}/conv/bias"]
        return v * w[f"{p}/scale/weights"] + w[f"{p}/scale/biases"]

    branch = conv_affine(relu(conv_affine(x, "conv256_down/conv1", 2, "VALID")), "conv256_down/conv2", 1, "SAME")
    assert branch.shape == (1, 3, 3, 256)
    skip = np_pool(x, 2, 2, "VALID", np.mean)  # [1, 4, 4, 128]
    ref = np.zeros((1, 4, 4, 256))
    ref[:, :, :, :128] += skip
    ref[:, :3, :3, :] += branch
    got = jax.jit(lambda m, v: m(v))(block, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), relu(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", ["full", "tiny"])
def test_landmark_net_shape(variant):
    net = FaceLandmarkNet(_weights_of(FaceLandmarkNet.weight_shapes(variant), 3), variant)
    crops = np.random.default_rng(0).random((1, 112, 112, 3)).astype(np.float32)
    pts = net.predict(crops)
    assert pts.shape == (1, 68, 2) and np.isfinite(pts).all()
    with pytest.raises(ValueError, match="112"):
        net(jnp.zeros((1, 80, 80, 3)))


def test_landmark_dense_block_against_numpy():
    """dense1 of the full model: stride-2 separable conv, then three additive dense steps."""
    w = _weights_of(FaceLandmarkNet.weight_shapes("full"), 4)
    block = FaceLandmarkNet(w, "full").blocks[1]
    x = np.random.default_rng(2).random((1, 15, 16, 32)).astype(np.float32)
    o1 = relu(np_separable(x, w, "dense1/conv0", 2))
    o2 = np_separable(o1, w, "dense1/conv1")
    o3 = np_separable(relu(o1 + o2), w, "dense1/conv2")
    o4 = np_separable(relu(o1 + o2 + o3), w, "dense1/conv3")
    ref = relu(o1 + o2 + o3 + o4)
    got = np.asarray(jax.jit(lambda m, v: m(v))(block, jnp.asarray(x)))
    assert got.shape == ref.shape == (1, 8, 8, 64)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_detector_shape_and_layer_against_numpy():
    w = _weights_of(TinyFaceDetector.weight_shapes(), 5)
    det = TinyFaceDetector(w)
    assert jax.eval_shape(lambda v: det(v), jnp.zeros((1, 64, 96, 3))).shape == (1, 2, 3, 25)
    with pytest.raises(ValueError, match="multiples of 32"):
        det(jnp.zeros((1, 50, 64, 3)))
    # conv1 stage: separable conv (1-pixel zero pad) -> LeakyReLU(0.1) -> 2x2/2 "same" max-pool.
    x = np.random.default_rng(3).standard_normal((1, 9, 10, 16)).astype(np.float32)
    h = np_separable(x, w, "conv1", 1, ((1, 1), (1, 1)))
    ref = np_pool(np.where(h >= 0, h, 0.1 * h), 2, 2, "SAME", np.max)
    from restore_jax.faces import _layers as L

    got = jax.jit(lambda m, v: L.max_pool(L.leaky_relu(m(v)), 2, 2, "SAME"))(det.convs[0], jnp.asarray(x))
    assert got.shape == ref.shape == (1, 5, 5, 32)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-4)


def test_decode_and_nms():
    g = 4
    raw = np.full((g, g, 25), -10.0)
    # Anchor 1 in row 2, col 1: sigmoid(0) = 0.5 offsets, exp(log 0.5) = half the anchor size.
    raw[2, 1, 5:10] = [0.0, 0.0, math.log(0.5), math.log(0.5), 3.0]
    # A weaker detection of the same box from anchor 2 (suppressed by NMS), and a separate one.
    a1, a2 = DETECTOR_ANCHORS[1], DETECTOR_ANCHORS[2]
    raw[2, 1, 10:15] = [0.0, 0.0, math.log(0.5 * a1[0] / a2[0]), math.log(0.5 * a1[1] / a2[1]), 1.0]
    raw[0, 3, 0:5] = [2.0, -1.0, 0.0, 0.0, 0.5]
    boxes, scores = decode_detections(raw, (128, 128), score_threshold=0.5)
    assert len(boxes) == 2
    aw, ah = DETECTOR_ANCHORS[1] * 0.5 / g * 128
    cx, cy = (1 + 0.5) / g * 128, (2 + 0.5) / g * 128
    np.testing.assert_allclose(boxes[0], [cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2], rtol=1e-5)
    np.testing.assert_allclose(scores[0], 1 / (1 + math.exp(-3.0)), rtol=1e-6)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    cx2, cy2 = (3 + sig(2.0)) / g * 128, (0 + sig(-1.0)) / g * 128
    w2, h2 = DETECTOR_ANCHORS[0] / g * 128
    np.testing.assert_allclose(boxes[1], [cx2 - w2 / 2, cy2 - h2 / 2, cx2 + w2 / 2, cy2 + h2 / 2], rtol=1e-5)
    # NMS: IoU of two boxes 0..10 and 5..15 (1-D overlap 5 of union 15 in x; same y) = 1/3.
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    assert nms(b, np.array([0.9, 0.8, 0.7]), 0.4).tolist() == [0, 1, 2]
    assert nms(b, np.array([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]


def test_missing_or_misshapen_weights_are_clear_errors():
    w = _weights_of(TinyFaceDetector.weight_shapes(), 0)
    del w["conv3/bias"]
    with pytest.raises(KeyError, match="conv3/bias"):
        TinyFaceDetector(w)
    w = _weights_of(FaceLandmarkNet.weight_shapes("tiny"), 0)
    w["fc/weights"] = np.zeros((64, 136), np.float32)
    with pytest.raises(ValueError, match=r"fc/weights.*\(128, 136\)"):
        FaceLandmarkNet(w, "tiny")


# ----------------------------------------------------------------------------- real data


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score(pos) > score(neg)) + 0.5 P(tie): the Mann-Whitney U statistic / (n_pos n_neg)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="stable")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):  # average ranks of ties
        tie = allv == v
        ranks[tie] = ranks[tie].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def test_roc_auc_helper_against_pair_count():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 17).round(1), rng.normal(0, 1, 23).round(1)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(pos, neg) == pytest.approx(brute)


def _faces128(shared_data, n):
    import json

    folder = shared_data / "faces128" / "val"
    labels = json.loads((folder / "labels.json").read_text())[:n]
    return np.stack([np.asarray(Image.open(folder / e["file"]).convert("RGB")) for e in labels])


@pytest.fixture(scope="module")
def nets(face_api_weights):
    return A.FaceNets.from_face_api(face_api_weights)


VIDEO_TIMES = (0.0, 1.5, 3.0)


@pytest.fixture(scope="module")
def video_faces(shared_data, nets):
    """Per clip: the frames at 0, 1.5 and 3 s (every clip is >= 3.1 s long) as 128x128 recognition chips."""
    import av

    out = {}
    for clip in ("d0", "d3", "d11", "d12", "d18"):
        entries = []
        with av.open(str(shared_data / "face_video" / f"{clip}.mp4")) as container:
            fps = float(container.streams.video[0].average_rate)
            wanted = {int(round(t * fps)) for t in VIDEO_TIMES}
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    faces = A.align_faces(frame.to_ndarray(format="rgb24"), size=128, template=A.CHIP_TEMPLATE,
                                          nets=nets)
                    entries.append((i / fps, faces))
                if i >= max(wanted):
                    break
        out[clip] = entries
    return out


def _augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip, small crop + rescale, brightness, mild blur or JPEG."""
    im = Image.fromarray(img)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    c = rng.integers(0, 9, 4)
    im = im.crop((c[0], c[1], 128 - c[2], 128 - c[3])).resize((128, 128), Image.Resampling.BICUBIC)
    kind = rng.integers(0, 3)
    if kind == 1:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2)))
    elif kind == 2:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(30, 70)))
        im = Image.open(buf).convert("RGB")
    return np.clip(np.asarray(im, np.float32) / 255 * rng.uniform(0.8, 1.2), 0, 1)


def test_identity_roc_auc_on_shared_faces(shared_data, face_api_weights, video_faces):
    net = FaceRecognitionNet.from_face_api(face_api_weights)
    rng = np.random.default_rng(0)
    imgs = _faces128(shared_data, 40)
    chips = [_augment(im, rng) for im in imgs] + [_augment(im, rng) for im in imgs]
    kept = {clip: [(t, faces[0].crop) for t, faces in entries if faces] for clip, entries in video_faces.items()}
    chips += [crop for entries in kept.values() for _, crop in entries]
    e_all = np.asarray(net.embed(np.stack(chips)))  # one batch: one compilation
    ea, eb, e_vid = e_all[: len(imgs)], e_all[len(imgs) : 2 * len(imgs)], e_all[2 * len(imgs) :]
    dist = np.linalg.norm(ea[:, None] - eb[None], axis=-1)
    pos_f, neg_f = np.diag(dist), dist[~np.eye(len(dist), dtype=bool)]

    emb, start = {}, 0
    for clip, entries in kept.items():
        emb[clip] = (np.array([t for t, _ in entries]), e_vid[start : start + len(entries)])
        start += len(entries)
    pos_v, neg_v = [], []
    clips = list(emb)
    for k, clip in enumerate(clips):
        t, e = emb[clip]
        for i in range(len(e)):
            for j in range(i + 1, len(e)):
                if abs(t[i] - t[j]) >= 1.0:
                    pos_v.append(np.linalg.norm(e[i] - e[j]))
        for other in clips[k + 1 :]:
            neg_v.extend(np.linalg.norm(e[:, None] - emb[other][1][None], axis=-1).ravel())
    auc_f = roc_auc(-pos_f, -neg_f)  # smaller distance = more likely the same person
    auc_v = roc_auc(-np.array(pos_v), -np.array(neg_v))
    auc = roc_auc(-np.r_[pos_f, pos_v], -np.r_[neg_f, neg_v])
    print(f"\nidentity ROC AUC: faces128 {auc_f:.4f} ({len(pos_f)} pos / {len(neg_f)} neg), "
          f"video {auc_v:.4f} ({len(pos_v)} / {len(neg_v)}), pooled {auc:.4f}; "
          f"median distance same {np.median(np.r_[pos_f, pos_v]):.3f}, different {np.median(np.r_[neg_f, neg_v]):.3f}")
    assert len(pos_v) >= 12 and auc >= 0.9 and auc_f >= 0.9 and auc_v >= 0.9


@pytest.mark.parametrize("variant", ["full", "tiny"])
def test_landmarks_fall_on_the_face_parts(shared_data, face_api_weights, variant):
    net = FaceLandmarkNet.from_face_api(face_api_weights, variant)
    imgs = _faces128(shared_data, 50).astype(np.float32) / 255
    lm = net.predict(imgs) / 128.0  # fractions of the 128x128 chip
    left_eye, right_eye = lm[:, 36:42].mean(1), lm[:, 42:48].mean(1)
    nose, mouth = lm[:, 30], lm[:, 48:68].mean(1)
    iod = np.linalg.norm(right_eye - left_eye, axis=1)
    print(f"\n{variant}: eyes {left_eye.mean(0).round(3)} {right_eye.mean(0).round(3)}, nose {nose.mean(0).round(3)}, "
          f"mouth {mouth.mean(0).round(3)}, inter-ocular {iod.mean():.3f} of the width")
    assert np.all(left_eye[:, 0] < right_eye[:, 0])  # image-left eye first (iBUG order)
    assert np.all((left_eye[:, 1] < 0.5) & (right_eye[:, 1] < 0.5))  # eyes in the upper half
    assert np.all(nose[:, 1] > np.maximum(left_eye[:, 1], right_eye[:, 1]))
    assert np.all(mouth[:, 1] > nose[:, 1])
    assert np.all((iod > 0.25) & (iod < 0.55))
    # Symmetric layout on average: the nose between the eyes, the eyes at about the same height.
    assert abs(nose[:, 0].mean() - (left_eye[:, 0] + right_eye[:, 0]).mean() / 2) < 0.03
    assert abs(left_eye[:, 1].mean() - right_eye[:, 1].mean()) < 0.02


def test_detector_finds_one_face_per_faces128_image(shared_data, nets):
    """50 chips upscaled to 144 px and centred on a grey 384x384 canvas.

    The chips are tight crops and the detector wants context (it finds 44-49 of these 50 with the
    face at 128-160 px on 320-416 canvases).
    """
    imgs = _faces128(shared_data, 50)
    canvas = np.full((len(imgs), 384, 384, 3), 0.5, np.float32)
    for k, im in enumerate(imgs):
        up = Image.fromarray(im).resize((144, 144), Image.Resampling.BILINEAR)
        canvas[k, 120:264, 120:264] = np.asarray(up) / 255
    raw = np.asarray(jax.jit(lambda m, v: m(v))(nets.detector, jnp.asarray(canvas)))
    hits = 0
    for r in raw:
        boxes, _ = decode_detections(r, (384, 384))
        if len(boxes) == 1:
            cx, cy = (boxes[0, 0] + boxes[0, 2]) / 2, (boxes[0, 1] + boxes[0, 3]) / 2
            hits += bool(120 < cx < 264 and 120 < cy < 264)
    print(f"\ndetector on faces128: one face in {hits}/{len(imgs)} images")
    assert hits >= 45


def test_detector_and_landmarks_on_face_video(video_faces):
    found = {clip: sum(len(faces) == 1 for _, faces in entries) for clip, entries in video_faces.items()}
    total = sum(found.values())
    n_frames = sum(len(entries) for entries in video_faces.values())
    print(f"\ndetector on face_video: one face in {total}/{n_frames} frames {found}")
    assert n_frames == 3 * len(found) and all(n >= 2 for n in found.values()) and total >= 14
    for entries in video_faces.values():
        for _, faces in entries:
            for face in faces:  # the chip's five points land near the template
                pts = A._apply(face.transform, A.five_points(face.landmarks))
                err = np.linalg.norm(pts - A.face_template(128, template=A.CHIP_TEMPLATE), axis=1)
                assert err.mean() < 8  # pixels of the 128x128 chip (the nose tip moves with head pitch)


def _dot_precisions(fn, *args) -> list:
    """``precision`` of every dot_general / convolution in the jaxpr of ``fn(*args)`` (nested jaxprs included)."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
                found.append((eqn.primitive.name, eqn.params.get("precision")))
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


@pytest.mark.parametrize("which", ["recognition", "landmarks"])
def test_every_matmul_and_conv_runs_at_highest_precision(which):
    # Regression: the final matmuls ran at default precision (TF32 on recent GPUs). The jaxpr records
    # the precision each op asks for, whatever the device, so this holds on CPU-only CI too.
    if which == "recognition":
        net, x = FaceRecognitionNet(_weights_of(FaceRecognitionNet.weight_shapes(), 1)), jnp.zeros((1, 150, 150, 3))
    else:
        net, x = FaceLandmarkNet(_weights_of(FaceLandmarkNet.weight_shapes("full"), 3), "full"), jnp.zeros((1, 112, 112, 3))
    ops = _dot_precisions(lambda v: net(v), x)
    names = {name for name, _ in ops}
    assert "dot_general" in names and "conv_general_dilated" in names
    highest = jax.lax.Precision.HIGHEST
    bad = [(name, p) for name, p in ops if p not in ((highest, highest), highest)]
    assert not bad, f"ops below HIGHEST precision: {bad[:5]}"
