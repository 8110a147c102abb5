"""Face metrics: NME / STD / SDD against NumPy re-statements of spec §D.4, identity distance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restore_jax.metrics.face import (
    identity_distance,
    landmark_nme,
    landmark_sdd,
    landmark_std,
    outer_ocular_distance,
)


def _shape(rng, n=()):
    """Plausible 68-point shapes: a mean layout plus noise, eye corners 36/45 about 60 px apart."""
    base = rng.uniform(20, 100, size=(68, 2))
    base[36], base[45] = [30.0, 40.0], [90.0, 42.0]
    return base + rng.normal(0, 1.0, size=(*n, 68, 2))


def test_nme_zero_and_scaling():
    rng = np.random.default_rng(0)
    gt = _shape(rng, (3,))
    np.testing.assert_array_equal(np.asarray(landmark_nme(gt, gt)), np.zeros(3))
    # A constant offset v gives NME = |v| / d; scaling both shapes leaves NME unchanged.
    v = np.array([3.0, -4.0])
    d = np.linalg.norm(gt[:, 36] - gt[:, 45], axis=-1)
    np.testing.assert_allclose(np.asarray(landmark_nme(gt + v, gt)), 5.0 / d, rtol=1e-5)
    pred = gt + rng.normal(0, 2, gt.shape)
    ref = np.linalg.norm(pred - gt, axis=-1).mean(-1) / d
    np.testing.assert_allclose(np.asarray(landmark_nme(pred, gt)), ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(landmark_nme(2.5 * pred + 7, 2.5 * gt + 7)), ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(outer_ocular_distance(gt)), d, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[\.\.\., 68, 2\]"):
        landmark_nme(np.zeros((5, 2)), np.zeros((5, 2)))


def _np_std_sdd(pred, gt):
    """Spec §D.4 re-stated with explicit sums (one track [T, 68, 2])."""
    n = pred.shape[0]
    mean_pred = sum(pred[i] for i in range(n)) / n
    d_pred = np.linalg.norm(mean_pred[36] - mean_pred[45])
    std = np.sqrt(sum((pred[i] - mean_pred) ** 2 for i in range(n)) / (n - 1)) / d_pred
    dy = [pred[i] - gt[i] for i in range(n)]
    mean_dy = sum(dy) / n
    d_gt = np.mean([np.linalg.norm(gt[i, 36] - gt[i, 45]) for i in range(n)])
    sdd = np.sqrt(sum((dy[i] - mean_dy) ** 2 for i in range(n)) / (n - 1)) / d_gt
    return std, sdd


def test_std_and_sdd_against_numpy_on_jittery_tracks():
    rng = np.random.default_rng(1)
    t = 25
    static = _shape(rng)
    gt = static + np.cumsum(rng.normal(0, 0.3, (t, 1, 2)), axis=0)  # slow head drift (ground truth)
    jitter = rng.normal(0, 0.8, (t, 68, 2)) * np.linspace(0.2, 2.0, 68)[:, None]  # point-dependent
    pred = gt + 1.5 + jitter  # constant bias + jitter
    std_ref, sdd_ref = _np_std_sdd(pred, gt)
    np.testing.assert_allclose(np.asarray(landmark_std(pred)), std_ref, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(landmark_sdd(pred, gt)), sdd_ref, rtol=1e-4)
    assert landmark_std(pred).shape == (68, 2)
    np.testing.assert_allclose(float(landmark_sdd(pred, gt, reduce="mean")), sdd_ref.mean(), rtol=1e-4)
    # Batched tracks [B, T, 68, 2] reduce per track.
    batch = np.stack([pred, pred * 1.1])
    np.testing.assert_allclose(np.asarray(landmark_std(batch))[0], std_ref, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(landmark_sdd(batch, np.stack([gt, gt * 1.1])))[1], sdd_ref, rtol=1e-4)
    # SDD ignores a constant error; STD of a moving face is not jitter-free.
    assert float(landmark_sdd(gt + 2.0, gt, reduce="mean")) < 1e-6
    assert float(landmark_std(gt, reduce="mean")) > 0.005
    # An explicit normaliser.
    np.testing.assert_allclose(np.asarray(landmark_std(pred, d=10.0)), std_ref * np.linalg.norm(
        pred.mean(0)[36] - pred.mean(0)[45]) / 10.0, rtol=1e-4)
    with pytest.raises(ValueError, match="at least 2 frames"):
        landmark_std(pred[:1])


class _ToyNet:
    """A stand-in descriptor: mean colour per 5x5 block of the 150x150 chip (128-D after a fixed map)."""

    def __init__(self):
        self.proj = jnp.asarray(np.random.default_rng(0).standard_normal((75, 128)).astype(np.float32))

    def __call__(self, x):
        b = x.shape[0]
        pooled = x.reshape(b, 5, 30, 5, 30, 3).mean(axis=(2, 4)).reshape(b, 75)
        return pooled @ self.proj


def test_identity_distance_formulas():
    net = _ToyNet()
    rng = np.random.default_rng(2)
    a = rng.random((2, 150, 150, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1).astype(np.float32)
    out = identity_distance(a, b, net=net)
    ea, eb = np.asarray(net(jnp.asarray(a)), np.float64), np.asarray(net(jnp.asarray(b)), np.float64)
    cos = (ea * eb).sum(-1) / np.linalg.norm(ea, axis=-1) / np.linalg.norm(eb, axis=-1)
    np.testing.assert_allclose(np.asarray(out["cosine"]), 1 - cos, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out["euclidean"]), np.linalg.norm(ea - eb, axis=-1), rtol=1e-4)
    same = identity_distance(a, a, net=net)
    np.testing.assert_allclose(np.asarray(same["euclidean"]), 0.0, atol=1e-5)
    # Differentiable in the restored image (usable as an identity loss).
    g = jax.grad(lambda x: identity_distance(x, b, net=net)["euclidean"].sum())(jnp.asarray(a))
    assert g.shape == a.shape and bool(jnp.isfinite(g).all())
    with pytest.raises(ValueError, match="framing"):
        identity_distance(a, b, net=net, framing="tight")


def test_identity_distance_ffhq_framing_cuts_the_chip():
    """With framing='ffhq' the chip box inside an FFHQ crop is what the net sees."""
    from restore_jax.metrics.face import _chip_box_in_ffhq

    x0, y0, x1, y1 = _chip_box_in_ffhq()
    assert 0.1 < x0 < 0.3 and 0.7 < x1 < 0.9 and 0.2 < y0 < 0.35 and 0.85 < y1 < 1.0
    size = 300
    rng = np.random.default_rng(3)
    crop = rng.random((1, size, size, 3)).astype(np.float32)
    other = crop.copy()
    # Changing pixels outside the chip box leaves the distance at 0; inside, it does not.
    other[:, : int(y0 * size) - 3] = 0.0
    net = _ToyNet()
    assert float(identity_distance(crop, other, net=net, framing="ffhq")["euclidean"][0]) < 1e-5
    other[:, int((y0 + y1) / 2 * size)] = 0.0
    assert float(identity_distance(crop, other, net=net, framing="ffhq")["euclidean"][0]) > 1e-3
