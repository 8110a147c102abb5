"""``restore-jax export`` of a CFMD checkpoint: an image bundle with the moment ``u`` as an input.

The ``ci`` preset's initial weights, perturbed, are saved as checkpoint 2 in the module fixture
(``support.checkpoints``: no training step is compiled), exported through the CLI and
loaded with the bundle's own loader (jax + flatbuffers only); the reference is the live ``Restorer`` at the same ``u``.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from restore_jax import api
from restore_jax.inference import load_bundle
from restore_jax.inference.bundle_loader import BundleError
from support.checkpoints import exported_init_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    return exported_init_checkpoint("cfmd:ci", tmp_path_factory.mktemp("cfmd_export"))


@pytest.fixture(scope="module")
def restorer(exported):
    return api.load_restorer(exported[0])


@pytest.fixture(scope="module")
def bundle(exported):
    return load_bundle(exported[1])


def _images(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_manifest_records_image_kind_and_u(exported, bundle):
    m = json.loads((exported[1] / "manifest.json").read_text())
    assert m["method"] == "cfmd" and m["kind"] == "image" and m["format_version"] == 1
    assert m["scale"] == 1 and m["multiple"] == 4
    assert m["input"]["layout"] == "NHWC" and m["input"]["shape"] == "(b, 4*hk, 4*wk, 3)"
    u = m["controls"]["u"]
    assert (u["min"], u["max"], u["shape"], u["dtype"]) == (0.0, 1.0, [], "float32")
    assert u["default"] is not None and 0.0 <= u["default"] <= 1.0
    assert bundle.kind == "image" and set(bundle.controls) == {"u"}


def test_round_trip_at_two_u_values(bundle, restorer):
    # Batch 2, 30 x 22 (not multiples of 4): the loader pads to 32 x 24 and crops.
    x = _images(2, 30, 22, 3)
    y_lo, y_hi = bundle(x, u=0.1), bundle(x, u=0.9)
    assert y_lo.shape == y_hi.shape == (2, 30, 22, 3)
    assert np.abs(y_lo - restorer(x, u=0.1)).max() <= 1e-5
    assert np.abs(y_hi - restorer(x, u=0.9)).max() <= 1e-5
    assert np.abs(y_lo - y_hi).max() > 1e-4  # u reaches the model
    # One u per image, and the same bundle at another spatial size (symbolic shapes).
    x2 = _images(2, 16, 20, 3, seed=1)
    u = np.array([0.1, 0.9], np.float32)
    y2 = bundle(x2, u=u)
    assert y2.shape == (2, 16, 20, 3)
    assert np.abs(y2 - restorer(x2, u=u)).max() <= 1e-5


def test_control_errors(bundle):
    x = _images(8, 8, 3)
    with pytest.raises(BundleError, match=r"above its maximum 1.0"):
        bundle(x, u=1.5)
    with pytest.raises(BundleError, match=r"unknown control\(s\) \['v'\]; this bundle accepts: u"):
        bundle(x, v=0.5)
    with pytest.raises(BundleError, match=r"expected an image \[H, W, 3\] or a batch \[B, H, W, 3\]"):
        bundle(_images(1, 4, 8, 8, 3))
