"""``restore-jax export`` of a Zooming Slow-Mo checkpoint: a window bundle equal to the live Restorer.

The ``ci`` preset's initial weights, perturbed, are saved as checkpoint 2 in the module fixture
(``support.checkpoints``: no training step is compiled), exported through the CLI and
loaded with the bundle's own loader (jax + flatbuffers only); the reference is ``Restorer.video`` on the same window (one
window of 4 LR frames -> 7 HR frames, padded to the size multiple like the loader pads).
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from restore_jax import api
from restore_jax.inference import load_bundle
from restore_jax.inference.bundle_loader import BundleError
from support.checkpoints import exported_init_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    return exported_init_checkpoint("zsm:ci", tmp_path_factory.mktemp("zsm_export"))


@pytest.fixture(scope="module")
def restorer(exported):
    return api.load_restorer(exported[0])


@pytest.fixture(scope="module")
def bundle(exported):
    return load_bundle(exported[1])


def _frames(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_manifest_records_the_window(exported, bundle, restorer):
    m = json.loads((exported[1] / "manifest.json").read_text())
    assert m["method"] == "zsm" and m["kind"] == "window" and m["format_version"] == 2
    assert (m["window"], m["temporal_scale"], m["stride"]) == (4, 2, 3)
    assert restorer.video_mode == {"window": 4, "stride": 3, "temporal_scale": 2}
    assert m["scale"] == 4 and m["multiple"] == 4 and m["controls"] == {}
    assert m["input"]["layout"] == m["output"]["layout"] == "NTHWC"
    assert m["input"]["shape"] == "(b, 4, 4*hk, 4*wk, 3)"  # symbolic batch / height / width
    assert m["output"]["shape"] == "(b, 7, 16*hk, 16*wk, 3)"
    assert m["extra"]["step"] == 2
    assert (bundle.kind, bundle.window, bundle.output_frames, bundle.stride) == ("window", 4, 7, 3)


def test_round_trip_equals_live_restorer(bundle, restorer):
    # Batch 2, 13 x 18 (not multiples of 4): the loader pads to 16 x 20 and crops.
    x = _frames(2, 4, 13, 18, 3)
    y = bundle(x)
    assert y.shape == (2, 7, 52, 72, 3)
    live = np.stack([restorer.video(w, progress=False) for w in x])
    assert live.shape == y.shape
    assert np.abs(y - live).max() <= 1e-5
    # The same bundle at another spatial size (symbolic shapes), one window without a batch axis.
    x2 = _frames(4, 8, 12, 3, seed=1)
    y2 = bundle(x2)
    assert y2.shape == (7, 32, 48, 3)
    assert np.abs(y2 - restorer.video(x2, progress=False)).max() <= 1e-5


def test_wrong_frame_count_and_bad_manifest(bundle, exported, tmp_path):
    with pytest.raises(BundleError, match=r"windows of exactly 4 frames.*got 5 frames.*stride 3"):
        bundle(_frames(5, 8, 8, 3))
    with pytest.raises(BundleError, match=r"windows of exactly 4 frames.*got 3 frames"):
        bundle(_frames(2, 3, 8, 8, 3))
    with pytest.raises(BundleError, match=r"expected a window of 4 frames \[4, H, W, 3\]"):
        bundle(_frames(8, 8, 3))
    # The loader checks the manifest against the exported function instead of trusting it.
    copy = tmp_path / "bundle"
    shutil.copytree(exported[1], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for change, message in (
        ({"window": 5}, r"window=5.*takes x of shape"),
        ({"kind": "image"}, r"kind='image'.*takes x of shape"),
        ({"temporal_scale": 3}, r"10 output frames"),
        ({"kind": "clip"}, r"unknown input kind 'clip'"),
    ):
        (copy / "manifest.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(BundleError, match=message):
            load_bundle(copy)
