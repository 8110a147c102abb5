"""Method controls in ``Restorer`` / ``restore-jax restore`` and control sweeps (``--frames K``).

A test-only controllable method (``fake_ctrl``, this module's ``METHOD``, named by ``config.method_module``): a x2
network whose features are modulated by a moment-like control ``u`` in ``[0, 1]`` and a ``gain`` in
``[0, 2]``, trained for 2 steps with the engine (``u`` drawn per example). The reference is the
network merged by hand from the EMA parameters restored with the checkpointing adapter.
"""

from __future__ import annotations

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from restore_jax import cli
from restore_jax.inference import Restorer, RestorerError
from restore_jax.inference.export import ControlSpec
from restore_jax.ops.pixel import pixel_shuffle
from restore_jax.train.recipe import Recipe

from restore_jax import api
from restore_jax.methods.api import InferenceSpec, Method
from support.fake_methods import restored_ema, tiny_method_config, train_to

METHOD_ID = "fake_ctrl"


class TinyControlled(nnx.Module):
    """x2 SR; ``u`` mixes two feature branches, ``gain`` scales the output."""

    def __init__(self, rngs: nnx.Rngs):
        self.a = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.b = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.out = nnx.Conv(8, 12, (3, 3), rngs=rngs)

    def __call__(self, x, u, gain):
        u = u[:, None, None, None]
        f = (1 - u) * jax.nn.relu(self.a(x)) + u * jnp.tanh(self.b(x))
        return pixel_shuffle(self.out(f), 2) * gain[:, None, None, None]


def make_recipe(config) -> Recipe:
    def loss_fn(models, batch, rng):
        n = batch["lr"].shape[0]
        u = jax.random.uniform(rng, (n,))
        loss = jnp.mean(jnp.abs(models["G"](batch["lr"], u, jnp.ones((n,))) - batch["hr"]))
        return loss, {"loss/l1": loss}

    def predict(models, batch):
        n = batch["lr"].shape[0]
        u = batch.get("u", jnp.full((n,), 0.5))
        gain = batch.get("gain", jnp.ones((n,)))
        return models["G"](batch["lr"], u, gain)

    return Recipe(
        networks={"G": lambda rngs: TinyControlled(rngs)},
        losses={"G": loss_fn},
        primary="G",
        input_keys=("lr",),
        batch_keys=("lr", "hr"),
        predict=predict,
    )


def inference(config) -> InferenceSpec:
    controls = {
        "u": ControlSpec(default=0.5, min=0.0, max=1.0, description="moment u: which latent sharp frame"),
        "gain": ControlSpec(default=1.0, min=0.0, max=2.0, description="output gain"),
    }
    return InferenceSpec(scale=2, controls=controls)


METHOD = Method(id=METHOD_ID, make_recipe=make_recipe, inference=inference)




def _config():
    return tiny_method_config(METHOD_ID, "sr_pair", __name__)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    return train_to(_config(), tmp_path_factory.mktemp("sweep") / "run")


@pytest.fixture(scope="module")
def restorer(workdir) -> Restorer:
    return api.load_restorer(workdir)


@pytest.fixture(scope="module")
def reference(workdir):
    """``ref(x, u, gain)`` on one image with the EMA network merged by hand."""
    graphdef, ema, _ = restored_ema(_config(), workdir, step=2)

    def ref(x, u=0.5, gain=1.0):
        model = nnx.merge(graphdef, ema, {})
        return np.asarray(model(jnp.asarray(x)[None], jnp.full((1,), u), jnp.full((1,), gain)))[0]

    return ref


def _image(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _png(path, h, w, seed=0, mode="RGB"):
    c = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8).squeeze(), mode).save(path)
    return path


def _read(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0


def test_controls_reach_the_restorer(restorer, reference):
    assert set(restorer.controls) == {"u", "gain"} and restorer.sweep_control() == "u"
    x = _image(9, 11, 1)
    np.testing.assert_allclose(restorer(x, u=0.2, gain=1.5), reference(x, 0.2, 1.5), rtol=1e-5, atol=1e-5)
    assert np.abs(restorer(x, u=0.9) - restorer(x, u=0.1)).max() > 1e-3  # the control matters


def test_sweep_values_and_one_compilation(restorer, reference):
    x = _image(10, 12, 2)
    frames = restorer.sweep(x, num=4, gain=0.8)
    assert frames.shape == (4, 20, 24, 3)
    for i, f in enumerate(frames):  # u = i / K: 0, 0.25, 0.5, 0.75
        np.testing.assert_allclose(f, reference(x, i / 4, 0.8), rtol=1e-5, atol=1e-5)
    compiled = restorer._run._cache_size()
    big = _image(20, 28, 3)
    # receptive field radius 2 (two 3x3 convolutions) <= margin 2: tiles are exact
    tiled = restorer.sweep(big, "u", 5, tile=12, overlap=6, margin=2)
    # control values are arguments of the jitted tile function: 5 values, one new compilation
    assert restorer._run._cache_size() == compiled + 1
    for i, f in enumerate(tiled):
        np.testing.assert_allclose(f, reference(big, i / 5), rtol=1e-5, atol=1e-5)


def test_sweep_errors(restorer):
    x = _image(8, 8)
    with pytest.raises(RestorerError, match="control 'gain' cannot be swept: .*range \\[0, 1\\]"):
        restorer.sweep(x, "gain")
    with pytest.raises(RestorerError, match="unknown control 'v'.*accepted controls: u, gain"):
        restorer.sweep(x, "v")
    with pytest.raises(RestorerError, match="what the sweep varies"):
        restorer.sweep(x, num=3, u=0.2)
    with pytest.raises(RestorerError, match="num must be a positive integer"):
        restorer.sweep(x, num=0)
    with pytest.raises(RestorerError, match="one image"):
        restorer.sweep(np.stack([x, x]), num=2)
    with pytest.raises(RestorerError, match="above its maximum 1.0"):
        restorer(x, u=1.5)


def test_cli_control_option(workdir, reference, tmp_path, capsys):
    src = _png(tmp_path / "in.png", 9, 10, 3)
    out = tmp_path / "out.png"
    argv = ["restore", "--checkpoint", str(workdir), "--u", "0.3", "--gain", "1.2", str(src), str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    expected = np.clip(reference(_read(src), 0.3, 1.2), 0, 1)
    np.testing.assert_allclose(_read(out), expected, atol=0.5 / 255 + 1e-5)
    # --method is a check against the checkpoint's method
    assert cli.main(argv[:3] + ["--method", METHOD_ID] + argv[3:]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--v", "0.3"], "unknown option\\(s\\) --v; method 'fake_ctrl' accepts the controls --u, --gain"),
        (["--u", "1.5"], "above its maximum 1.0"),
        (["--u", "abc"], "--u expects a number"),
        (["--method", "baseline_sr"], "does not match the checkpoint: .* method 'fake_ctrl'"),
        (["--frames", "3", "--u", "0.2"], "--u is what --frames sweeps"),
        (["--frames", "0"], "--frames must be >= 1"),
        (["--frames", "3", "--sweep-control", "gain"], "control 'gain' cannot be swept"),
        (["--sweep-control", "u"], "--sweep-control needs --frames"),
        (["--fps", "10"], "--fps applies to video inputs and --frames sweeps only"),
    ],
)
def test_cli_control_errors(workdir, tmp_path, capsys, extra, message):
    src = _png(tmp_path / "in.png", 8, 8)
    out = tmp_path / ("out.gif" if "--frames" in extra else "out.png")
    try:
        code = cli.main(["restore", "--checkpoint", str(workdir), *extra, str(src), str(out)])
    except SystemExit as e:  # argparse's own errors (a value its type= rejects): usage + message
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and re.search(message, err), err


def test_cli_help_lists_method_controls(workdir, capsys):
    assert cli.main(["restore", "--checkpoint", str(workdir), "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "controls of method fake_ctrl" in out and "--u VALUE" in out and "moment u: which latent sharp frame" in out
    assert "range [0.0, 1.0], default 0.5" in out and "--gain VALUE" in out and "--tile" in out


def test_cli_frames_sweep_outputs(workdir, reference, tmp_path, capsys):
    from input_pipelines.video_io import probe_video

    src = _png(tmp_path / "in.png", 8, 12, 4)
    x = _read(src)
    base = ["restore", "--checkpoint", str(workdir), "--gain", "0.9"]
    # PNG folder: frame i has u = i / K
    assert cli.main(base + ["--frames", "3", str(src), str(tmp_path / "seq")]) == 0, capsys.readouterr().err
    files = sorted((tmp_path / "seq").glob("frame_*.png"))
    assert [f.name for f in files] == [f"frame_{i:06d}.png" for i in range(3)]
    for i, f in enumerate(files):
        np.testing.assert_allclose(_read(f), np.clip(reference(x, i / 3, 0.9), 0, 1), atol=0.5 / 255 + 1e-5)
    # a pattern, a GIF and an MP4 (frame rate from --fps)
    assert cli.main(base + ["--frames", "4", str(src), str(tmp_path / "p" / "u_%02d.png")]) == 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["u_00.png", "u_01.png", "u_02.png", "u_03.png"]
    assert cli.main(base + ["--frames", "4", "--fps", "5", str(src), str(tmp_path / "s.gif")]) == 0
    with Image.open(tmp_path / "s.gif") as im:
        # the playback rate written into the file (GIF keeps a per-frame delay in ms, 10 ms resolution)
        assert im.n_frames == 4 and im.size == (24, 16) and 1000 / im.info["duration"] == 5
    assert cli.main(base + ["--frames", "5", "--fps", "12", str(src), str(tmp_path / "s.mp4")]) == 0
    info = probe_video(tmp_path / "s.mp4")
    assert info.num_frames == 5 and info.fps == pytest.approx(12.0) and (info.height, info.width) == (16, 24)
    # grey input: the PNG sequence keeps its mode
    grey = _png(tmp_path / "grey.png", 8, 8, 5, mode="L")
    assert cli.main(base + ["--frames", "2", str(grey), str(tmp_path / "g")]) == 0
    with Image.open(tmp_path / "g" / "frame_000001.png") as im:
        assert im.mode == "L" and im.size == (16, 16)
    # bad outputs and inputs
    assert cli.main(base + ["--frames", "2", str(src), str(tmp_path / "x.avi")]) == 2
    assert "unsupported frame-sequence output '.avi'" in capsys.readouterr().err
    assert cli.main(base + ["--frames", "2", str(tmp_path), str(tmp_path / "y.gif")]) == 2
    assert "not an image file" in capsys.readouterr().err
