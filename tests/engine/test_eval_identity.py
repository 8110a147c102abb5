"""Identity-distance columns of the ``sr_psnr_ssim`` evaluator (face-api weights, real faces)."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from restore_jax.metrics import identity_distance, psnr
from restore_jax.ops import imresize, imresize_np
from restore_jax.train import evaluation as E
from restore_jax.api import load_config
from restore_jax.train.mesh import make_mesh


def _faces(shared_data: pathlib.Path, n: int) -> np.ndarray:
    files = sorted((shared_data / "faces128" / "val").glob("*.png"))[:n]
    return np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0 for f in files])


def _context(predict_fn, params) -> E.EvalContext:
    cfg = load_config("baseline_sr:ci")
    return E.EvalContext(config=cfg, mesh=make_mesh(cfg.mesh), params=params, predict_fn=predict_fn,
                         step=0, workdir=pathlib.Path("."), log=lambda m: None)


def test_identity_columns_equal_direct_computation(shared_data, face_api_weights, monkeypatch):
    monkeypatch.setenv("RESTORE_JAX_FACE_API", str(face_api_weights))
    hr = _faces(shared_data, 8)
    lr = np.stack([imresize_np(x, scale=0.25) for x in hr]).astype(np.float32)

    def predict(params, batch):  # a "model": bicubic darkened by a learnable gain
        return imresize(batch["lr"], scale=4) * params["gain"]

    ctx = _context(predict, {"gain": jnp.float32(0.8)})
    r = E.evaluate_sr_batches(ctx, [{"lr": lr, "hr": hr}], max_examples=0, identity_framing="chip")

    q = lambda x: np.round(np.clip(np.asarray(x, np.float64), 0, 1) * 255) / 255  # noqa: E731
    bic = q(imresize(jnp.asarray(lr), scale=4))
    out = q(np.asarray(imresize(jnp.asarray(lr), scale=4)) * 0.8)
    want_model = identity_distance(out.astype(np.float32), q(hr).astype(np.float32))
    want_bic = identity_distance(bic.astype(np.float32), q(hr).astype(np.float32))
    np.testing.assert_allclose(r["id_l2"], float(np.mean(want_model["euclidean"])), rtol=1e-4)
    np.testing.assert_allclose(r["id_cos"], float(np.mean(want_model["cosine"])), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r["bicubic_id_l2"], float(np.mean(want_bic["euclidean"])), rtol=1e-4)
    # Darkening moves the identity further from the ground truth than plain bicubic does.
    assert r["id_l2"] > r["bicubic_id_l2"] > 0
    np.testing.assert_allclose(r["bicubic_psnr"], float(np.mean(psnr(bic, q(hr), crop_border=4, y_channel=True))), rtol=1e-5)
    table = E._table("t", [("faces", r)])
    assert "ID-L2 model" in table


def test_missing_weights_skip_identity_with_a_notice(monkeypatch, tmp_path):
    from restore_jax.metrics import face as face_metrics

    monkeypatch.setenv("RESTORE_JAX_FACE_API", str(tmp_path / "nowhere"))
    monkeypatch.setattr(face_metrics, "_RECOGNITION_NET", None)
    monkeypatch.setattr(E, "_IDENTITY_NOTICE_SHOWN", False)
    notices = []
    rng = np.random.default_rng(0)
    hr = rng.random((8, 32, 32, 3), dtype=np.float32)
    lr = np.stack([imresize_np(x, scale=0.25) for x in hr]).astype(np.float32)
    ctx = _context(lambda p, b: imresize(b["lr"], scale=4), {})
    ctx.log = notices.append
    r = E.evaluate_sr_batches(ctx, [{"lr": lr, "hr": hr}], max_examples=0, identity_framing="chip")
    assert not any("id_" in k for k in r)
    assert r["psnr"] == pytest.approx(r["bicubic_psnr"], abs=1e-6)
    assert len(notices) == 1 and "identity distance skipped" in notices[0] and "face-api" in notices[0]
