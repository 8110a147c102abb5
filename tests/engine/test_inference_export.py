"""Export bundles (restore_jax.inference.export) and their jax+numpy-only loader.

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

from restore_jax.inference.bundle_loader import BundleError, load_bundle
from restore_jax.inference.export import ControlSpec, export_bundle
from restore_jax.ops.pixel import pixel_shuffle, pixel_unshuffle

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


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
    assert names == ["bundle_loader.py", "function.jaxexport", "manifest.json", "params.npz"]
    m = json.loads((bundle_dir / "manifest.json").read_text())
    assert m["format"] == "restore_jax.bundle" and m["method"] == "tiny_sr"
    assert m["scale"] == 2 and m["multiple"] == 4 and m["pad_mode"] == "reflect"
    assert m["jax_version"] == jax.__version__
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


bundle_dir, x_path, out_dir = sys.argv[1:4]
x = np.load(x_path)
sys.path.insert(0, bundle_dir)  # 1. the copy of the loader shipped inside the bundle
from bundle_loader import load_bundle as standalone_load

np.save(out_dir + "/standalone.npy", standalone_load(bundle_dir)(x, u=0.25))
report("standalone")
from restore_jax.inference.bundle_loader import load_bundle  # 2. through the installed package

np.save(out_dir + "/package.npy", load_bundle(bundle_dir)(x, u=0.25))
report("package")
"""


def test_loader_runs_without_flax(bundle_dir, tmp_path):
    x = _img(2, 11, 14, 3, seed=4)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-c", _LOADER_SCRIPT, str(bundle_dir), str(tmp_path / "x.npy"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()[-2:]
    assert lines == [
        "standalone FLAX [] PROJECT []",
        "package FLAX [] PROJECT ['restore_jax', 'restore_jax.inference', 'restore_jax.inference.bundle_loader']",
    ]
    ref = _reference(x, 0.25)
    for name in ("standalone", "package"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), ref, atol=1e-5, rtol=0)


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
