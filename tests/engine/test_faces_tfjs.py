"""TF.js weights reader and face-api weight-folder resolution."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from restore_jax.faces import weights as W
from restore_jax.faces.detector import TinyFaceDetector
from restore_jax.faces.landmarks import FaceLandmarkNet
from restore_jax.faces.recognition import FaceRecognitionNet
from restore_jax.faces.tfjs import TfjsWeightsError, load_tfjs_weights, read_manifest


def _write_model(tmp_path: pathlib.Path, *, truncate: int = 0) -> tuple[pathlib.Path, dict]:
    """A two-group manifest: group 0 over two shards (float32 + uint8), group 1 (uint16 + int32)."""
    rng = np.random.default_rng(0)
    plain = rng.standard_normal((2, 3, 4)).astype("<f4")
    q8 = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
    q16 = rng.integers(0, 65536, size=(6,), dtype=np.uint16)
    ints = np.array([[1, -2], [3, 4]], dtype="<i4")
    stream0 = plain.tobytes() + q8.tobytes()
    cut = 50  # split group 0 across two shard files mid-tensor
    (tmp_path / "m.shard1").write_bytes(stream0[:cut])
    (tmp_path / "m.shard2").write_bytes(stream0[cut : len(stream0) - truncate])
    (tmp_path / "n.bin").write_bytes(q16.astype("<u2").tobytes() + ints.tobytes())
    manifest = [
        {
            "paths": ["m.shard1", "m.shard2"],
            "weights": [
                {"name": "a/plain", "shape": [2, 3, 4], "dtype": "float32"},
                {"name": "a/q8", "shape": [5, 7], "dtype": "float32",
                 "quantization": {"dtype": "uint8", "scale": 0.0123, "min": -1.5}},
            ],
        },
        {
            "paths": ["n.bin"],
            "weights": [
                {"name": "b/q16", "shape": [6], "dtype": "float32",
                 "quantization": {"dtype": "uint16", "min": 0.25, "scale": 1e-4}},
                {"name": "b/ints", "shape": [2, 2], "dtype": "int32"},
            ],
        },
    ]  # fmt: skip
    path = tmp_path / "m-weights_manifest.json"
    path.write_text(json.dumps(manifest))
    return path, {"plain": plain, "q8": q8, "q16": q16, "ints": ints}


def test_round_trip_and_dequantization(tmp_path):
    path, raw = _write_model(tmp_path)
    w = load_tfjs_weights(path)
    assert sorted(w) == ["a/plain", "a/q8", "b/ints", "b/q16"]
    assert all(v.dtype == np.float32 for v in w.values())
    np.testing.assert_array_equal(w["a/plain"], raw["plain"])
    # Dequantization formula: value = q * scale + min.
    np.testing.assert_allclose(w["a/q8"], raw["q8"].astype(np.float64) * 0.0123 - 1.5, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w["b/q16"], raw["q16"].astype(np.float64) * 1e-4 + 0.25, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(w["b/ints"], raw["ints"].astype(np.float32))
    assert len(read_manifest(path)) == 2


def test_truncated_bin_is_a_clear_error(tmp_path):
    path, _ = _write_model(tmp_path, truncate=3)
    with pytest.raises(TfjsWeightsError, match=r"truncated.*re-fetch|bytes"):
        load_tfjs_weights(path)


def test_missing_files_and_unknown_dtype(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_tfjs_weights(tmp_path / "nope-weights_manifest.json")
    path, _ = _write_model(tmp_path)
    (tmp_path / "n.bin").unlink()
    with pytest.raises(FileNotFoundError, match="n.bin"):
        load_tfjs_weights(path)
    bad = [{"paths": [], "weights": [{"name": "x", "shape": [1], "dtype": "complex64"}]}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(TfjsWeightsError, match="unknown dtype 'complex64'"):
        load_tfjs_weights(tmp_path / "bad.json")
    badq = [{"paths": [], "weights": [{"name": "x", "shape": [1], "dtype": "float32",
                                       "quantization": {"dtype": "int4", "scale": 1, "min": 0}}]}]
    (tmp_path / "badq.json").write_text(json.dumps(badq))
    with pytest.raises(TfjsWeightsError, match="quantization dtype 'int4'"):
        load_tfjs_weights(tmp_path / "badq.json")


def test_weights_dir_resolution(tmp_path, monkeypatch):
    arg, env = tmp_path / "arg", tmp_path / "env"
    arg.mkdir()
    env.mkdir()
    monkeypatch.setenv(W.ENV_VAR, str(env))
    assert W.resolve_weights_dir(arg) == arg  # argument first
    assert W.resolve_weights_dir() == env  # then the environment variable
    monkeypatch.delenv(W.ENV_VAR)
    monkeypatch.setenv("RESTORE_JAX_SHARED", str(tmp_path / "absent"))  # no shared/ folder
    with pytest.raises(FileNotFoundError, match=r"@vladmandic/face-api.*model/") as info:
        W.resolve_weights_dir()
    assert "tiny_face_detector_model.bin" in str(info.value)
    # A folder without the model's files names the missing files.
    with pytest.raises(FileNotFoundError, match="face_recognition_model-weights_manifest.json"):
        W.load_face_api_weights("face_recognition", arg)
    with pytest.raises(ValueError, match="unknown face-api model"):
        W.load_face_api_weights("nope", arg)


@pytest.mark.parametrize(
    "model, shapes",
    [
        ("face_recognition", FaceRecognitionNet.weight_shapes()),
        ("face_landmark_68", FaceLandmarkNet.weight_shapes("full")),
        ("face_landmark_68_tiny", FaceLandmarkNet.weight_shapes("tiny")),
        ("tiny_face_detector", TinyFaceDetector.weight_shapes()),
    ],
)
def test_face_api_manifests_match_the_architectures(face_api_weights, model, shapes):
    w = W.load_face_api_weights(model, face_api_weights)
    assert {k: tuple(v.shape) for k, v in w.items()} == shapes
    assert all(np.isfinite(v).all() for v in w.values())
