"""``Restorer`` and the ``restore`` / ``export`` commands on a checkpoint of the ``baseline_sr`` ci preset.

The reference path is independent of the Restorer: the state is restored with the checkpointing
adapter onto the engine's abstract target (config from the preset file, not the snapshot), and
the ``BaselineSR`` module is merged from the EMA parameters and called directly.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from restore_jax import cli
from restore_jax import api
from restore_jax.inference import Restorer, RestorerError, load_bundle

from support.fake_methods import restored_ema

SPEC = "baseline_sr:ci"


def _config(**model):
    c = api.load_config(SPEC)
    c.model.update(model)
    c.eval.protocols = ()  # evaluation is tested elsewhere; keeps the fixture to seconds
    c.log.image_every_steps = 0
    return c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    wd = tmp_path_factory.mktemp("restorer") / "run"
    api.train(_config(), wd)
    return wd


@pytest.fixture(scope="module")
def restorer(workdir) -> Restorer:
    return api.load_restorer(workdir)


@pytest.fixture(scope="module")
def reference_params(workdir):
    """(graphdef, ema params, raw params) restored through the checkpointing adapter."""
    return restored_ema(_config(), workdir, step=6)


def _direct(graphdef, params, x):
    model = nnx.merge(graphdef, params, {})
    model.eval()
    return np.asarray(model(jax.numpy.asarray(x)))


def _image(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def test_attributes(restorer):
    assert restorer.method == "baseline_sr" and restorer.step == 6
    assert restorer.scale == 4 and restorer.multiple == 1 and restorer.controls == {}


def test_equals_direct_model_with_ema_params(restorer, reference_params):
    graphdef, ema, raw = reference_params
    x = np.stack([_image(12, 19, 1), _image(12, 19, 2)])
    expected = _direct(graphdef, ema, x)
    y = restorer(x)
    assert y.shape == (2, 48, 76, 3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(restorer(x[0]), expected[0], rtol=1e-5, atol=1e-5)
    # the EMA copy (not the raw parameters) is what is used
    assert np.abs(_direct(graphdef, raw, x) - expected).max() > 1e-4


def test_tiled_matches_untiled_away_from_borders(restorer):
    x = _image(70, 90, 3)
    full = restorer(x)
    tiled = restorer(x, tile=32, overlap=16, margin=7)
    assert tiled.shape == full.shape == (280, 360, 3)
    b = 8 * 4  # HR pixels: the receptive field reaches ~8 LR pixels
    np.testing.assert_allclose(tiled[b:-b, b:-b], full[b:-b, b:-b], atol=1e-5)
    # one compiled tile function, reused for another input size
    compiled = restorer._run._cache_size()
    restorer(_image(40, 50, 4), tile=32, overlap=16, margin=7)
    assert restorer._run._cache_size() == compiled


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("L", 1), ("RGBA", 4)])
def test_restore_cli_writes_scaled_png(workdir, tmp_path, mode, channels, capsys):
    rng = np.random.default_rng(5)
    src = tmp_path / f"in_{mode}.png"
    Image.fromarray(rng.integers(0, 256, (13, 17, channels), dtype=np.uint8).squeeze(), mode).save(src)
    out = tmp_path / "out.png"
    assert cli.main(["restore", "--checkpoint", str(workdir), str(src), str(out)]) == 0, capsys.readouterr().err
    with Image.open(out) as im:
        assert im.size == (17 * 4, 13 * 4) and im.mode == mode


def test_tiled_restore_file_memory_is_about_the_uint8_output(restorer, tmp_path):
    # Regression (issue 14: 6.1 GB peak for a 3000 x 2000 x4 restore): the tiled result goes band by
    # band into a uint8 array and is written from it, so the traced peak (numpy allocations) stays
    # below one float32 copy of the output, which the old path held (plus a float64 copy to round).
    # It also equals rounding the float result of the same tiled run.
    import tracemalloc

    rng = np.random.default_rng(5)
    src = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)).save(src)
    restorer.restore_file(src, tmp_path / "warm.png", tile=64)  # compile outside the measurement
    tracemalloc.start()
    try:
        restorer.restore_file(src, tmp_path / "out.png", tile=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (1536, 2048, 3) and out.dtype == np.uint8
    float_out = out.size * 4
    assert peak < float_out, (peak, float_out)
    x = np.asarray(Image.open(src), np.float32) / 255.0
    want = np.round(np.clip(restorer(x, tile=64).astype(np.float64), 0, 1) * 255)
    assert np.abs(out.astype(np.int64) - want).max() <= 1 and np.mean(out == want) > 0.999


def test_restore_cli_folder_with_tiles(workdir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(src / f"{i}.png")
    out = tmp_path / "out"
    argv = ["restore", "--checkpoint", str(workdir), "--step", "3", str(src), str(out), "--tile", "16", "--overlap", "4"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    for i in range(2):
        with Image.open(out / f"{i}.png") as im:
            assert im.size == (24 * 4, (20 + i) * 4)


def test_export_cli_default_bicubic_skip_bundle_matches_restorer(workdir, restorer, tmp_path, capsys):
    # The default model.skip = "bicubic" (MATLAB bicubic as a polyphase filter) exports with symbolic
    # batch, height and width: one bundle serves every size and batch.
    out = tmp_path / "bundle"
    assert cli.main(["export", "--checkpoint", str(workdir), "--out", str(out)]) == 0, capsys.readouterr().err
    bundle = load_bundle(out)
    assert bundle.scale == 4 and bundle.manifest["method"] == "baseline_sr"
    assert bundle.manifest["extra"]["config"]["model"]["skip"] == "bicubic"
    assert bundle.manifest["extra"]["step"] == 6 and bundle.manifest["extra"]["config"]["method"] == "baseline_sr"
    assert bundle.manifest["input"]["shape"] == "(b, h, w, 3)"  # symbolic batch, height and width
    for x in (_image(15, 21, 6), np.stack([_image(9, 7, 7), _image(9, 7, 8)])):
        np.testing.assert_allclose(bundle(x), restorer(x), rtol=1e-5, atol=1e-5)
    # a second export into the same folder is refused
    assert cli.main(["export", "--checkpoint", str(workdir), "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_export_cli_unexportable_model_is_explained(workdir, tmp_path, capsys, monkeypatch):
    # MATLAB imresize plans its weights from concrete sizes, so a skip built on it cannot be lowered
    # with symbolic height / width: the command exits 1 with jax's reason.
    from restore_jax.methods.baseline_sr import model as baseline_sr
    from restore_jax.ops import imresize

    monkeypatch.setattr(baseline_sr, "imresize_up_integer", lambda x, s: imresize(x, scale=s))
    assert cli.main(["export", "--checkpoint", str(workdir), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("restore-jax: error: cannot export baseline_sr step 6: jax.export failed"), err


@pytest.mark.parametrize("shape", [(1, 1), (2, 4)], ids=["trained-on-1-device", "trained-fsdp-sharded-on-8"])
def test_restorer_loads_a_checkpoint_from_any_mesh(tmp_path, shape):
    # Regression: the Restorer rebuilt the training mesh, so a run saved with mesh.shape=(1, 1) could not
    # be loaded in a process with 8 devices. It now loads onto one device; parameters sharded over an
    # fsdp mesh come back whole and equal to what was saved.
    from restore_jax.train import mesh as mesh_lib
    from support.checkpoints import init_checkpoint

    c = _config()
    c.mesh.shape = shape
    c.sharding.fsdp_min_size = 0  # shard every parameter it can over fsdp
    devices = jax.devices()[: shape[0] * shape[1]]
    init_checkpoint(c, tmp_path / "run", step=3, mesh=mesh_lib.make_mesh(c.mesh, devices=devices))
    r = api.load_restorer(tmp_path / "run")
    assert r.step == 3 and tuple(r.config.mesh.shape) == shape  # the run's own config is kept
    if shape == (2, 4):  # the engine's own restore on the training mesh is the reference
        _, ema, _ = restored_ema(c, tmp_path / "run", step=3)
        for a, b in zip(jax.tree.leaves(r.params), jax.tree.leaves(ema)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert r(np.zeros((8, 12, 3), np.float32)).shape == (32, 48, 3)


def test_missing_checkpoint_errors(tmp_path, workdir, capsys):
    with pytest.raises(RestorerError, match="does not exist"):
        api.load_restorer(tmp_path / "nope")
    with pytest.raises(RestorerError, match="no checkpoints found: looked for"):
        api.load_restorer(tmp_path)
    with pytest.raises(RestorerError, match=r"no checkpoint for step 5 .*available steps: \[3, 6\]"):
        api.load_restorer(workdir, step=5)
    src = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    assert cli.main(["restore", "--checkpoint", str(tmp_path / "nope"), str(src), str(tmp_path / "y.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("restore-jax: error:") and "does not exist" in err


def test_bad_inputs_and_controls(restorer):
    with pytest.raises(RestorerError, match="accepted controls: none"):
        restorer(_image(8, 8), strength=0.5)
    with pytest.raises(RestorerError, match=r"expected a float image \[H, W, 3\]"):
        restorer(np.zeros((8, 8), np.float32))
    with pytest.raises(RestorerError, match="floating-point"):
        restorer(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(RestorerError, match="overlap=20 must be"):
        restorer(_image(40, 40), tile=32, overlap=20)


def test_restore_cli_faces_pastes_restored_face_into_upscaled_photo(workdir, restorer, tmp_path, capsys, face_api_weights, monkeypatch):
    from input_pipelines.synthetic_faces import render_face, sample_identity
    from restore_jax.faces import align as A
    from restore_jax.ops import imresize_np

    monkeypatch.setenv("RESTORE_JAX_FACE_API", str(face_api_weights))
    face = render_face(sample_identity(5), pose=(8.0, 0.0, 0.0), size=(112, 112))[0]
    photo = np.full((120, 170, 3), 0.4, np.float32)
    photo[4:116, 50:162] = face
    photo8 = np.round(photo * 255).astype(np.uint8)
    src, out = tmp_path / "photo.png", tmp_path / "photo_x4.png"
    Image.fromarray(photo8).save(src)
    assert cli.main(["restore", "--checkpoint", str(workdir), "--faces", "16", str(src), str(out)]) == 0, capsys.readouterr().err
    assert "restored 1 face(s)" in capsys.readouterr().out
    got = np.asarray(Image.open(out), np.float32) / 255.0
    assert got.shape == (480, 680, 3)
    # Independent expectation: bicubic background + the model on the aligned 16x16 crop, pasted back.
    x = photo8.astype(np.float32) / 255.0
    background = np.clip(imresize_np(x, scale=4), 0, 1)
    faces = A.align_faces(x, size=16, nets=A.FaceNets.from_face_api(face_api_weights))
    assert len(faces) == 1
    restored = restorer(faces[0].crop)
    want = A.paste_back(background, np.clip(restored, 0, 1), faces[0].transform @ np.diag([0.25, 0.25, 1.0]), crop_size=16)
    np.testing.assert_allclose(got, np.round(want * 255) / 255, atol=1.5 / 255)
    assert np.abs(got - np.round(background * 255) / 255).max() > 0.05  # the face region really changed
    # Argument errors are explained.
    assert cli.main(["restore", "--checkpoint", str(workdir), "--faces", "16", "--tile", "16", str(src), str(out)]) == 2
    assert "--faces restores the faces of one photo" in capsys.readouterr().err
