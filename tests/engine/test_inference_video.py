"""``Restorer.video`` and ``restore-jax restore`` on videos.

A test-only window method (``fake_window``, this module's ``METHOD``, named by ``config.method_module``) maps 4
frames to 7 at x2 like Zooming Slow-Mo maps them at x4: frame ``2i`` of the output comes from input
frame ``i``, frame ``2i + 1`` from frames ``i`` and ``i + 1`` only. Such a network can also run on a
whole clip at once (``T`` frames in, ``2T - 1`` out), which is the reference: the chunked result
must equal it for every output frame. It is trained for 2 steps with the engine, so the checkpoint,
config snapshot, EMA and hooks all go through the real loading path. The reference model is merged
by hand from the EMA parameters restored with the checkpointing adapter.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from restore_jax import cli
from restore_jax.inference import Restorer, RestorerError
from restore_jax.inference.chunking import plan_windows
from restore_jax.ops.pixel import pixel_shuffle
from restore_jax.train.recipe import Recipe

from restore_jax import api
from restore_jax.methods.api import InferenceSpec, Method
from support.fake_methods import restored_ema, tiny_method_config, train_to

METHOD_ID = "fake_window"
WINDOW = {"window": 4, "stride": 3, "temporal_scale": 2}


class TinyWindowNet(nnx.Module):
    """``[B, N, h, w, 3] -> [B, 2N - 1, 2h, 2w, 3]``, temporally local (see the module docstring)."""

    def __init__(self, rngs: nnx.Rngs):
        self.feat = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.out = nnx.Conv(8, 12, (3, 3), rngs=rngs)

    def __call__(self, x):
        b, n, h, w, c = x.shape
        f = jax.nn.relu(self.feat(x.reshape(b * n, h, w, c))).reshape(b, n, h, w, -1)
        mid = 0.5 * (f[:, :-1] + f[:, 1:])
        seq = jnp.stack([f[:, :-1], mid], axis=2).reshape(b, 2 * (n - 1), h, w, -1)
        seq = jnp.concatenate([seq, f[:, -1:]], axis=1)
        y = pixel_shuffle(self.out(seq.reshape(b * (2 * n - 1), h, w, -1)), 2)
        return y.reshape(b, 2 * n - 1, 2 * h, 2 * w, 3)


# -- the method (this module's METHOD; configs name this module in config.method_module) --


def make_recipe(config) -> Recipe:
    def loss_fn(models, batch, rng):
        del rng
        loss = jnp.mean(jnp.abs(models["G"](batch["lr"]) - batch["hr"]))
        return loss, {"loss/l1": loss}

    return Recipe(
        networks={"G": lambda rngs: TinyWindowNet(rngs)},
        losses={"G": loss_fn},
        primary="G",
        input_keys=("lr",),
        batch_keys=("lr", "hr"),
        predict=lambda models, batch: models["G"](batch["lr"]),
    )


def inference(config) -> InferenceSpec:
    return InferenceSpec(input_kind="window", scale=2, **WINDOW)


METHOD = Method(id=METHOD_ID, make_recipe=make_recipe, inference=inference)




def _config():
    return tiny_method_config(METHOD_ID, "septuplet", __name__)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    return train_to(_config(), tmp_path_factory.mktemp("video") / "run")


@pytest.fixture(scope="module")
def restorer(workdir) -> Restorer:
    return api.load_restorer(workdir)


@pytest.fixture(scope="module")
def whole_clip(workdir):
    """Reference: the network merged from the restored EMA parameters, run on a whole clip at once."""
    graphdef, ema, _ = restored_ema(_config(), workdir, step=2)

    def run(frames):
        model = nnx.merge(graphdef, ema, {})
        return np.asarray(model(jnp.asarray(frames, jnp.float32)[None]))[0]

    return run


def _clip(t, h, w, seed=0):
    return np.random.default_rng(seed).random((t, h, w, 3)).astype(np.float32)


class _CountingRun:
    """Wraps ``restorer._run`` to count model calls (it keeps ``lower``, like the jitted function)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)

    def lower(self, *args):
        return self.fn.lower(*args)


def test_hooks_reach_the_restorer(restorer):
    assert restorer.method == METHOD_ID and restorer.step == 2 and restorer.scale == 2
    assert restorer.video_mode == WINDOW and "temporal x2" in repr(restorer)


@pytest.mark.parametrize("t", [11, 10, 3])
def test_chunked_video_equals_whole_clip_each_frame_once(restorer, whole_clip, t, monkeypatch):
    frames = _clip(t, 9, 13, seed=t)
    counter = _CountingRun(restorer._run)
    monkeypatch.setattr(restorer, "_run", counter)
    y = restorer.video(frames, progress=False)
    assert y.shape == (2 * t - 1, 18, 26, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, whole_clip(frames), rtol=1e-5, atol=1e-5)
    # one model call per planned window, and the kept outputs partition the output frames
    plan = plan_windows(t, **WINDOW)
    assert counter.calls == len(plan)
    owned = np.concatenate([np.arange(w.out_offset + w.keep_start, w.out_offset + w.keep_stop) for w in plan])
    assert np.array_equal(owned, np.arange(2 * t - 1))


def test_one_compilation_per_video_whatever_its_length(restorer):
    restorer.video(_clip(7, 10, 12, 1), progress=False)
    compiled = restorer._run._cache_size()
    restorer.video(_clip(17, 10, 12, 2), progress=False)  # another length: same window shape
    # uint8 frames (as decoded from files) are converted batch by batch on the host: same compilation
    restorer.video((_clip(5, 10, 12, 3) * 255).astype(np.uint8), progress=False, tile=None)
    assert restorer._run._cache_size() == compiled
    n = compiled
    restorer.video(_clip(6, 20, 28, 4), tile=12, overlap=6, margin=2, progress=False)
    restorer.video(_clip(9, 30, 17, 5), tile=12, overlap=6, margin=2, progress=False)  # other size, same tiles
    assert restorer._run._cache_size() == n + 1


def test_tiled_video_equals_whole_clip(restorer, whole_clip):
    # receptive field: two 3x3 convolutions (radius 2 LR pixels) <= margin 2: tiles are exact
    frames = _clip(5, 20, 28, 6)
    y = restorer.video(frames, tile=12, overlap=6, margin=2, progress=False)
    np.testing.assert_allclose(y, whole_clip(frames), rtol=1e-5, atol=1e-5)


def test_cli_video_doubles_the_frame_rate(workdir, restorer, tmp_path, capsys):
    from input_pipelines.video_io import decode_all, probe_video
    from restore_jax.inference.image_io import write_frames

    frames = (_clip(7, 16, 16, 7) * 255).astype(np.uint8)
    src = write_frames(tmp_path / "in.mp4", frames, fps=10, crf=0)
    decoded = decode_all(src)  # what the model sees (yuv420p round trip)
    out = tmp_path / "out.mp4"
    assert cli.main(["restore", "--checkpoint", str(workdir), str(src), str(out)]) == 0, capsys.readouterr().err
    info = probe_video(out)
    assert info.num_frames == 13 and (info.height, info.width) == (32, 32)
    assert info.fps == pytest.approx(20.0)
    expected = np.clip(restorer.video(decoded, progress=False), 0, 1)
    luma = np.asarray([0.299, 0.587, 0.114], np.float32)
    got = decode_all(out).astype(np.float32) / 255.0
    assert np.abs(got @ luma - expected @ luma).mean() < 0.03  # H.264 yuv420p, crf 18: luma survives
    # --fps overrides; a PNG folder output is lossless: each frame equals the array result (8-bit rounding)
    out2 = tmp_path / "frames"
    assert cli.main(["restore", "--checkpoint", str(workdir), "--fps", "7.5", str(src), str(out2)]) == 0
    files = sorted(out2.glob("frame_*.png"))
    assert len(files) == 13
    from PIL import Image

    pngs = np.stack([np.asarray(Image.open(f)) for f in files]).astype(np.float32) / 255.0
    np.testing.assert_allclose(pngs, expected, atol=0.5 / 255 + 1e-5)
    gif = tmp_path / "out.gif"
    assert restorer.video(src, gif, fps=5, progress=False) == gif
    with Image.open(gif) as im:
        assert im.n_frames == 13 and 1000 / im.info["duration"] == 5  # playback rate stored in the file


def test_per_frame_video_for_image_models(tmp_path):
    """Without ``video_mode`` every frame goes through the image model (chunks, tiles, one compilation)."""
    w = np.random.default_rng(0).normal(size=(3, 3, 3, 12)).astype(np.float32) * 0.3

    def apply(params, x, *, gain):
        y = jax.lax.conv_general_dilated(x, params["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return pixel_shuffle(jnp.tanh(y), 2) * gain[:, None, None, None]

    from restore_jax.inference.export import ControlSpec

    r = Restorer(apply_fn=apply, params={"w": w}, scale=2, multiple=1, controls={"gain": ControlSpec(default=1.0, min=0.0, max=2.0)})
    frames = _clip(19, 11, 9, 8)  # more than one chunk of frames
    ref = np.stack([r(f, gain=0.5) for f in frames])
    np.testing.assert_allclose(r.video(frames, progress=False, gain=0.5), ref, rtol=1e-5, atol=1e-6)
    tiled = r.video(frames, tile=8, overlap=4, margin=1, progress=False, gain=0.5)
    np.testing.assert_allclose(tiled, ref, rtol=1e-5, atol=1e-6)
    out = r.video(frames[:3], tmp_path / "f_%02d.png", progress=False)
    assert sorted(p.name for p in tmp_path.glob("f_*.png")) == ["f_00.png", "f_01.png", "f_02.png"] and out.name == "f_%02d.png"


def test_video_errors(restorer, workdir, tmp_path, capsys):
    with pytest.raises(RestorerError, match=r"is a video model \(windows of 4 frames\).*restorer.video"):
        restorer(_clip(1, 8, 8)[0])
    with pytest.raises(RestorerError, match=r"expected video frames \[T, H, W, 3\]"):
        restorer.video(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(RestorerError, match="float in \\[0, 1\\] or uint8"):
        restorer.video(np.zeros((2, 8, 8, 3), np.int32))
    with pytest.raises(RestorerError, match="does not exist"):
        restorer.video(tmp_path / "missing.mp4")
    with pytest.raises(RestorerError, match="not a video file"):
        restorer.video(tmp_path / "clip.txt")
    with pytest.raises(RestorerError, match="unsupported frame-sequence output '.avi'"):
        restorer.video(_clip(2, 8, 8), tmp_path / "out.avi")
    with pytest.raises(RestorerError, match="accepted controls: none"):
        restorer.video(_clip(2, 8, 8), strength=1.0)
    # window models export too (a multi-frame bundle; round trips in tests/methods/zsm/test_export.py)
    from restore_jax.inference import load_bundle

    assert load_bundle(restorer.export(tmp_path / "bundle")).kind == "window"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert cli.main(["restore", "--checkpoint", str(workdir), str(bad), str(tmp_path / "o.mp4")]) == 2
    assert "cannot read video" in capsys.readouterr().err
