"""Export bundles (restore_jax.inference.export) and their loader (jax, numpy, flatbuffers only;
a fresh virtual environment with just those: tests/engine/test_bundle_fresh_env.py).

Reference: the live Flax NNX model, with the loader's padding re-stated by ``np.pad``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import nnx

from restore_jax.inference.bundle_loader import BUNDLE_REQUIREMENTS, BundleError, load_bundle
from restore_jax.inference.export import (
    DEFAULT_MAX_BATCH_PIXELS,
    EXPORT_PLATFORMS,
    ControlSpec,
    check_platforms,
    export_bundle,
)
from restore_jax.ops.pixel import pixel_shuffle, pixel_unshuffle

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


_NP_RNG = np.random.default_rng(0)


def _np_init(key, shape, dtype=jnp.float32):
    """NumPy initialiser: jax.random's samplers would be compiled eagerly at import (slow on CPU)."""
    return jnp.asarray(_NP_RNG.normal(size=shape) * 0.2, dtype)


class TinySR(nnx.Module):
    """x2 SR with a moment-like control ``u``: works at half resolution (needs sizes divisible by 2)."""

    def __init__(self, rngs: nnx.Rngs):
        conv = dict(kernel_init=_np_init, bias_init=_np_init, rngs=rngs)
        self.down = nnx.Conv(12, 16, (3, 3), **conv)
        self.blocks = nnx.List([nnx.Conv(16, 16, (3, 3), **conv) for _ in range(2)])
        self.up = nnx.Conv(16, 3 * 16, (3, 3), **conv)

    def __call__(self, x, u):
        h = jax.nn.relu(self.down(pixel_unshuffle(x, 2)))
        for blk in self.blocks:
            h = h + u[:, None, None, None] * jnp.tanh(blk(h))
        return pixel_shuffle(self.up(h), 4)


MODEL = TinySR(nnx.Rngs(0))
GRAPHDEF, PARAMS = nnx.split(MODEL, nnx.Param)


def apply_fn(params, x, *, u):
    return nnx.merge(GRAPHDEF, params)(x, u)


live = jax.jit(apply_fn)
PARAMS_LEAVES = jax.tree_util.tree_leaves(PARAMS)
CONTROLS = {"u": ControlSpec(default=0.5, min=0.0, max=1.0, description="restoration strength")}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny_sr"
    return export_bundle(
        apply_fn, PARAMS, out, example_input_shape=(16, 16, 3), dtype=jnp.float32, multiple=4, scale=2,
        controls=CONTROLS, manifest_extra={"checkpoint_step": 123}, method="tiny_sr",
    )


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return load_bundle(bundle_dir)


class TinyWindow(nnx.Module):
    """A window model ``[b, 3, h, w, 3] -> [b, 5, 2h, 2w, 3]`` (frames and their mid-points, x2 in
    space) with a per-window gain ``g``; works at half resolution (needs sizes divisible by 2)."""

    def __init__(self, rngs: nnx.Rngs):
        self.up = nnx.Conv(12, 3 * 16, (3, 3), kernel_init=_np_init, bias_init=_np_init, rngs=rngs)

    def __call__(self, x, g):
        b, t, h, w, c = x.shape
        mid = 0.5 * (x[:, :-1] + x[:, 1:])
        seq = jnp.concatenate([jnp.stack([x[:, :-1], mid], axis=2).reshape(b, 2 * (t - 1), h, w, c), x[:, -1:]], axis=1)
        y = pixel_shuffle(jnp.tanh(self.up(pixel_unshuffle(seq.reshape(b * (2 * t - 1), h, w, c), 2))), 4)
        return y.reshape(b, 2 * t - 1, 2 * h, 2 * w, 3) * g[:, None, None, None, None]


WIN_GRAPHDEF, WIN_PARAMS = nnx.split(TinyWindow(nnx.Rngs(1)), nnx.Param)


def window_fn(params, x, *, g):
    return nnx.merge(WIN_GRAPHDEF, params)(x, g)


live_window = jax.jit(window_fn)
GAIN = {"g": ControlSpec(default=1.0, min=0.0, max=2.0, description="output gain")}


@pytest.fixture(scope="module")
def window_bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny_window"
    return export_bundle(
        window_fn, WIN_PARAMS, out, example_input_shape=(3, 8, 8, 3), input_kind="window", temporal_scale=2,
        stride=2, multiple=2, scale=2, controls=GAIN, method="tiny_window",
    )


@pytest.fixture(scope="module")
def window_bundle(window_bundle_dir):
    return load_bundle(window_bundle_dir)


def _window_reference(x, g):
    """Live window model on ``x [b, 3, h, w, 3]`` padded like the loader pads (reflect, bottom / right), cropped."""
    b, _, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="reflect")
    y = np.asarray(live_window(WIN_PARAMS, xp, g=np.broadcast_to(np.asarray(g, np.float32), (b,))))
    return y[:, :, : 2 * h, : 2 * w]


def _reference(x, u, multiple=4, scale=2):
    """Live model on the input padded like the loader promises (reflect, bottom / right), cropped."""
    b, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0)), mode="reflect")
    y = np.asarray(live(PARAMS, xp, u=np.broadcast_to(np.asarray(u, np.float32), (b,))))
    return y[:, : h * scale, : w * scale]


def _img(*shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_round_trip_two_sizes_one_export(bundle):
    assert "b" in str(bundle.exported.in_avals[len(PARAMS_LEAVES)].shape)  # symbolic batch
    x1 = _img(2, 16, 24, 3)  # multiples of 4: no padding
    np.testing.assert_allclose(bundle(x1, u=0.3), _reference(x1, 0.3), atol=1e-5, rtol=0)
    x2 = _img(3, 13, 22, 3, seed=1)  # padded to 16 x 24 inside the loader
    y2 = bundle(x2, u=np.array([0.0, 0.5, 1.0]))
    assert y2.shape == (3, 26, 44, 3)
    np.testing.assert_allclose(y2, _reference(x2, [0.0, 0.5, 1.0]), atol=1e-5, rtol=0)
    x3 = _img(9, 10, 3, seed=2)  # single image, default control
    np.testing.assert_allclose(bundle(x3), _reference(x3[None], 0.5)[0], atol=1e-5, rtol=0)


def test_bundle_files_and_manifest(bundle_dir):
    names = sorted(p.name for p in bundle_dir.iterdir())
    assert names == ["bundle_loader.py", "function.jaxexport", "manifest.json", "params.npz", "requirements.txt"]
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["format"] == "restore_jax.bundle" and m["method"] == "tiny_sr"
    assert m["kind"] == "image" and m["format_version"] == 1  # image bundles stay readable by format-1 loaders
    assert m["max_batch_pixels"] == DEFAULT_MAX_BATCH_PIXELS and "window" not in m
    assert m["scale"] == 2 and m["multiple"] == 4 and m["pad_mode"] == "reflect"
    assert m["jax_version"] == jax.__version__
    # What loading needs: jax at least the exporting version, numpy, flatbuffers (jax.export's deserializer).
    assert m["requirements"] == [f"jax>={jax.__version__}", "numpy>=1.26", "flatbuffers"]
    assert [r.partition(">=")[0] for r in BUNDLE_REQUIREMENTS] == ["jax", "numpy", "flatbuffers"]
    reqs = (bundle_dir / "requirements.txt").read_text().splitlines()
    assert [line for line in reqs if line and not line.startswith("#")] == m["requirements"]
    assert m["input"]["layout"] == m["output"]["layout"] == "NHWC"
    assert m["input"]["channels"] == 3 and m["output"]["channels"] == 3
    assert m["input"]["range"] == [0.0, 1.0] and m["input"]["dtype"] == "float32"
    assert m["input"]["shape"] == "(b, 4*hk, 4*wk, 3)"
    assert m["controls"] == {
        "u": {"default": 0.5, "min": 0.0, "max": 1.0, "shape": [], "dtype": "float32", "description": "restoration strength"}
    }
    assert m["extra"] == {"checkpoint_step": 123}
    assert m["params"]["count"] == len(PARAMS_LEAVES)
    assert m["params"]["size"] == sum(a.size for a in PARAMS_LEAVES)
    assert m["function"]["platforms"] == ["cpu"]
    with np.load(bundle_dir / "params.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"down/kernel", "down/bias", "up/kernel", "up/bias"} | {
            f"blocks/{i}/{n}" for i in range(2) for n in ("kernel", "bias")
        }
        np.testing.assert_array_equal(npz["blocks/1/kernel"], np.asarray(MODEL.blocks[1].kernel[...]))


def test_controls_validation(bundle):
    x = _img(8, 8, 3)
    with pytest.raises(BundleError, match="unknown control"):
        bundle(x, strength=1.0)
    with pytest.raises(BundleError, match="above its maximum"):
        bundle(x, u=1.5)
    with pytest.raises(BundleError, match="shape"):
        bundle(_img(2, 8, 8, 3), u=np.zeros(3))
    with pytest.raises(BundleError, match="channels"):
        bundle(_img(8, 8, 4))
    with pytest.raises(BundleError, match="floating"):
        bundle((x * 255).astype(np.uint8))


def test_tile_fn_with_tiled_apply(bundle):
    from restore_jax.inference import tiled_apply

    # Receptive radius: 4 half-resolution pixels -> at most 9 input pixels; margin 11 covers it,
    # so the tiled result equals the whole-image one.
    x = _img(52, 72, 3, seed=3)
    y = tiled_apply(bundle.tile_fn(u=0.7), x, tile=48, overlap=24, margin=11, scale=2, multiple=4, batch_tiles=4)
    assert y.shape == (104, 144, 3)
    np.testing.assert_allclose(y, bundle(x, u=0.7), atol=2e-5, rtol=0)


_LOADER_SCRIPT = r"""
import sys
sys.modules["flax"] = None  # any `import flax` now raises ImportError
import numpy as np


def report(tag):
    flax = sorted(m for m in sys.modules if m.startswith("flax") and sys.modules[m] is not None)
    project = sorted(m for m in sys.modules if m.startswith(("restore_jax", "input_pipelines")))
    print(tag, "FLAX", flax, "PROJECT", project)


bundle_dir, window_dir, x_path, xw_path, out_dir = sys.argv[1:6]
x, xw = np.load(x_path), np.load(xw_path)
sys.path.insert(0, bundle_dir)  # 1. the copy of the loader shipped inside the bundle
from bundle_loader import load_bundle as standalone_load

np.save(out_dir + "/standalone.npy", standalone_load(bundle_dir)(x, u=0.25))
np.save(out_dir + "/standalone_window.npy", standalone_load(window_dir)(xw, g=0.75))
report("standalone")
from restore_jax.inference.bundle_loader import load_bundle  # 2. through the installed package

np.save(out_dir + "/package.npy", load_bundle(bundle_dir)(x, u=0.25))
np.save(out_dir + "/package_window.npy", load_bundle(window_dir)(xw, g=0.75))
report("package")
"""


def test_loader_runs_without_flax(bundle_dir, window_bundle_dir, tmp_path):
    x = _img(2, 11, 14, 3, seed=4)
    xw = _img(2, 3, 7, 6, 3, seed=5)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "xw.npy", xw)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [
            sys.executable, "-c", _LOADER_SCRIPT, str(bundle_dir), str(window_bundle_dir),
            str(tmp_path / "x.npy"), str(tmp_path / "xw.npy"), str(tmp_path),
        ],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()[-2:]
    assert lines == [
        "standalone FLAX [] PROJECT []",
        "package FLAX [] PROJECT ['restore_jax', 'restore_jax.inference', 'restore_jax.inference.bundle_loader']",
    ]
    ref, ref_window = _reference(x, 0.25), _window_reference(xw, 0.75)
    for name in ("standalone", "package"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.load(tmp_path / f"{name}_window.npy"), ref_window, atol=1e-5, rtol=0)


def test_bfloat16_params_and_two_platforms(tmp_path):
    params = {"w": jnp.asarray([0.5, 1.25, -2.0], jnp.bfloat16), "b": np.float32(0.25)}

    def fn(p, x):
        return x * p["w"].astype(jnp.float32) + p["b"]

    # Lowered for CPU and CUDA at once (no GPU needed to export; this test runs it on CPU).
    path = export_bundle(
        fn, params, tmp_path / "b16", example_input_shape=(4, 4, 3), dtype=jnp.float32, platforms=("cpu", "cuda")
    )
    m = json.loads((path / "manifest.json").read_text())
    assert m["params"]["stored_dtypes"] == {"w": "bfloat16"}
    assert m["function"]["platforms"] == ["cpu", "cuda"]
    loaded = load_bundle(path)
    assert loaded.params["w"].dtype == jnp.bfloat16
    x = _img(5, 7, 3)
    np.testing.assert_allclose(loaded(x), x * np.array([0.5, 1.25, -2.0], np.float32) + 0.25, atol=1e-6)


def test_export_errors(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        export_bundle(apply_fn, PARAMS, tmp_path / "a", example_input_shape=(8, 8, 3), multiple=4, scale=1, controls=CONTROLS)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        export_bundle(lambda p, x: x, {}, tmp_path / "full", example_input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="outside"):
        ControlSpec.of("u", {"default": 2.0, "min": 0.0, "max": 1.0})
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path / "full")


def test_window_round_trip_two_sizes_with_controls(window_bundle, window_bundle_dir):
    m = json.loads((window_bundle_dir / "manifest.json").read_text())
    assert (m["kind"], m["window"], m["temporal_scale"], m["stride"], m["format_version"]) == ("window", 3, 2, 2, 2)
    assert m["input"]["layout"] == m["output"]["layout"] == "NTHWC"
    assert m["input"]["shape"] == "(b, 3, 2*hk, 2*wk, 3)" and m["output"]["shape"] == "(b, 5, 4*hk, 4*wk, 3)"
    assert "b" in str(window_bundle.exported.in_avals[len(jax.tree_util.tree_leaves(WIN_PARAMS))].shape)
    x = _img(2, 3, 7, 9, 3)  # padded to 8 x 10 inside the loader; one gain per window
    y = window_bundle(x, g=np.array([0.5, 1.5]))
    assert y.shape == (2, 5, 14, 18, 3)
    np.testing.assert_allclose(y, _window_reference(x, [0.5, 1.5]), atol=1e-5, rtol=0)
    x1 = _img(3, 6, 4, 3, seed=1)  # one window, another size, the default gain
    y1 = window_bundle(x1)
    assert y1.shape == (5, 12, 8, 3)
    np.testing.assert_allclose(y1, _window_reference(x1[None], 1.0)[0], atol=1e-5, rtol=0)
    # tile_fn hands windows of tiles to the raw function
    tiles = _img(4, 3, 6, 6, 3, seed=2)
    np.testing.assert_allclose(window_bundle.tile_fn(g=0.5)(tiles), _window_reference(tiles, 0.5), atol=1e-5, rtol=0)


def test_window_input_errors(window_bundle):
    with pytest.raises(BundleError, match=r"windows of exactly 3 frames.*got 4 frames.*stride 2"):
        window_bundle(_img(4, 8, 8, 3))
    with pytest.raises(BundleError, match=r"windows of exactly 3 frames.*got 2 frames"):
        window_bundle(_img(5, 2, 8, 8, 3))
    with pytest.raises(BundleError, match=r"expected a window of 3 frames \[3, H, W, 3\]"):
        window_bundle(_img(8, 8, 3))
    with pytest.raises(BundleError, match="above its maximum"):
        window_bundle(_img(3, 8, 8, 3), g=3.0)


def test_export_window_errors(tmp_path):
    kw = dict(input_kind="window", temporal_scale=2, multiple=2, scale=2, controls=GAIN)
    with pytest.raises(ValueError, match="window=4 but example_input_shape"):
        export_bundle(window_fn, WIN_PARAMS, tmp_path / "a", example_input_shape=(3, 8, 8, 3), window=4, **kw)
    with pytest.raises(ValueError, match=r"\(T, H, W, C\) or \(B, T, H, W, C\)"):
        export_bundle(window_fn, WIN_PARAMS, tmp_path / "b", example_input_shape=(8, 8, 3), **kw)
    with pytest.raises(ValueError, match="check scale=2, temporal_scale=3"):
        export_bundle(window_fn, WIN_PARAMS, tmp_path / "c", example_input_shape=(3, 8, 8, 3), **{**kw, "temporal_scale": 3})
    with pytest.raises(ValueError, match="input_kind must be one of"):
        export_bundle(apply_fn, PARAMS, tmp_path / "d", example_input_shape=(8, 8, 3), input_kind="video")
    with pytest.raises(ValueError, match="for input_kind='window'"):
        export_bundle(apply_fn, PARAMS, tmp_path / "e", example_input_shape=(8, 8, 3), temporal_scale=2)


def test_max_batch_pixels(tmp_path):
    path = export_bundle(
        apply_fn, PARAMS, tmp_path / "small", example_input_shape=(8, 8, 3), multiple=4, scale=2,
        controls=CONTROLS, max_batch_pixels=2 * 12 * 12,
    )
    small = load_bundle(path)
    assert small.max_batch_pixels == 288
    x = _img(2, 11, 12, 3)  # padded: 2 x 12 x 12 = 288 pixels, at the bound
    np.testing.assert_allclose(small(x, u=0.5), _reference(x, 0.5), atol=1e-5, rtol=0)
    with pytest.raises(BundleError, match=r"at most 288 pixels.*3 x 12 x 12 = 432.*tile_fn"):
        small(_img(3, 12, 12, 3))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "video"}, r"unknown input kind 'video'"),
        ({"kind": "window", "window": 3}, r"kind='window', window=3.*takes x of shape \(b, 4\*hk, 4\*wk, 3\)"),
        ({"scale": "2"}, r"scale must be a positive integer, got '2'"),
        ({"multiple": 0}, r"multiple must be a positive integer, got 0"),  # was a ZeroDivisionError at call time
        # An edited scale used to crop the output silently (scale 1) or return it unchanged (scale 4).
        ({"scale": 1}, r"scale=1, but the exported function maps a 4x4 input to 8x8 \(scale 2\)"),
        ({"scale": 4}, r"scale=4, but the exported function maps a 4x4 input to 8x8"),
        ({"multiple": 2}, r"multiple=2, but the exported function does not take a 2x2 input.*re-export"),
        ({"max_batch_pixels": -1}, r"max_batch_pixels must be a positive integer"),
        ({"pad_mode": "wrap"}, r"pad_mode 'wrap'"),
        ({"controls": {}}, r"lists controls \[\], the exported function takes \['u'\]"),
        ({"controls": {"u": {"shape": [2], "dtype": "float32"}}}, r"control 'u' is float32\[2\]"),
        ({"input": {"channels": 4, "dtype": "float32"}}, r"4 channels, but the exported function takes x"),
        ({"function": {"file": "../function.jaxexport"}}, r"plain file name inside the bundle"),
        ({"format_version": "1"}, r"format_version must be an integer"),
        ({"format_version": 99}, r"newer than this loader"),
    ],
)
def test_loader_checks_the_manifest(bundle_dir, tmp_path, change, message):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, **change}))
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_window_manifest_must_match_function(window_bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(window_bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for change, message in (
        ({"window": 4}, r"window=4.*takes x of shape \(b, 3, 2\*hk, 2\*wk, 3\)"),
        ({"window": 0}, r"window must be a positive integer, got 0"),
        ({"window": True}, r"window must be a positive integer, got True"),
        ({"temporal_scale": 1}, r"mean 3 output frames"),
        ({"stride": "2"}, r"stride must be a positive integer"),
        ({"scale": 1}, r"scale=1, but the exported function maps a 2x2 input to 4x4"),
        ({"kind": "image"}, r"kind='image', 3 channels, but the exported function takes x of shape \(b, 3,"),
    ):
        (copy / "manifest.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(BundleError, match=message):
            load_bundle(copy)


def test_format_1_manifest_without_kind_loads_as_image(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for key in ("kind", "max_batch_pixels"):
        del manifest[key]
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    old = load_bundle(copy)
    assert old.kind == "image" and old.max_batch_pixels is None
    x = _img(1, 8, 12, 3)
    np.testing.assert_allclose(old(x, u=0.5), _reference(x, 0.5), atol=1e-5, rtol=0)


def test_edited_scale_is_refused_not_cropped(bundle_dir, tmp_path):
    """Regression: ``"scale": 1`` in the manifest of a x2 bundle loaded and returned the top-left
    quarter of the output, with no error."""
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert load_bundle(copy)(_img(1, 8, 8, 3)).shape == (1, 16, 16, 3)
    (copy / "manifest.json").write_text(json.dumps({**manifest, "scale": 1}))
    with pytest.raises(BundleError, match=r"manifest.json: scale=1, but .* re-export the bundle"):
        load_bundle(copy)


@pytest.mark.parametrize("keep", ["empty", "header", "half", "all but one byte"])
def test_truncated_params_file(bundle_dir, tmp_path, keep):
    """Regression: a truncated params.npz raised a raw zipfile.BadZipFile (or EOFError)."""
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    data = (copy / "params.npz").read_bytes()
    size = {"empty": 0, "header": 10, "half": len(data) // 2, "all but one byte": len(data) - 1}[keep]
    (copy / "params.npz").write_bytes(data[:size])
    with pytest.raises(BundleError, match=r"params\.npz: unreadable parameter file .*re-export the bundle"):
        load_bundle(copy)


def test_check_platforms():
    assert EXPORT_PLATFORMS == ("cpu", "cuda", "rocm", "tpu")
    assert check_platforms(None) is None
    assert check_platforms(("cpu", "CUDA", "cpu")) == ("cpu", "cuda")
    assert check_platforms(" cpu , tpu ") == ("cpu", "tpu")
    with pytest.raises(ValueError, match=r"unknown platform 'bogus'; valid platforms: cpu, cuda, rocm, tpu"):
        check_platforms(("cpu", "bogus"))
    with pytest.raises(ValueError, match=r"'gpu' is not a lowering platform: name 'cuda' or 'rocm'"):
        check_platforms("gpu")
    with pytest.raises(ValueError, match="no platform given; valid platforms"):
        check_platforms(())


def test_export_refuses_unknown_platforms_before_writing(tmp_path):
    """Regression: ``platforms=("bogus",)`` lowered and wrote a bundle that no machine can load."""
    out = tmp_path / "b"
    with pytest.raises(ValueError, match=r"unknown platform 'bogus'; valid platforms: cpu, cuda, rocm, tpu"):
        export_bundle(apply_fn, PARAMS, out, example_input_shape=(8, 8, 3), multiple=4, scale=2,
                      controls=CONTROLS, platforms=("bogus",))
    assert not out.exists()


def test_cli_export_refuses_unknown_platforms(tmp_path, capsys):
    """``restore-jax export --platforms cpu,bogus`` exits 2 naming the valid platforms, before it
    loads the checkpoint (this one does not even exist) or writes anything."""
    from restore_jax import cli

    out = tmp_path / "bundle"
    code = cli.main(["export", "--checkpoint", str(tmp_path / "no_run"), "--out", str(out), "--platforms", "cpu,bogus"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--platforms cpu,bogus: unknown platform 'bogus'; valid platforms: cpu, cuda, rocm, tpu" in err
    assert not out.exists()


_NO_FLATBUFFERS_SCRIPT = r"""
import sys
sys.modules["flatbuffers"] = None  # as in an environment without it: `import flatbuffers` raises
sys.path.insert(0, sys.argv[1])
from bundle_loader import BundleError, load_bundle
try:
    load_bundle(sys.argv[1])
except BundleError as e:
    print("BundleError:", e)
"""


def test_missing_flatbuffers_names_the_requirements(bundle_dir, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", _NO_FLATBUFFERS_SCRIPT, str(bundle_dir)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BundleError:" in proc.stdout and "flatbuffers" in proc.stdout, proc.stdout
    assert f"pip install -r {bundle_dir / 'requirements.txt'}" in proc.stdout
