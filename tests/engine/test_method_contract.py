"""The method contract: the registry, ``Method`` / ``InferenceSpec`` checks, protocol defaults, and
method data reaching the pipeline through an explicit catalog (nothing registers on import)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from restore_jax import api
from restore_jax import config as rc
from restore_jax.errors import ConfigError
from restore_jax.methods import registry
from restore_jax.methods.api import InferenceSpec, Method


def test_registry_resolves_built_in_methods_and_explains_unknown_ids():
    assert {"baseline_sr", "zsm", "cfmd"} <= set(registry.method_names())
    for method_id in ("baseline_sr", "zsm", "cfmd"):
        method = registry.get_method(method_id)
        assert isinstance(method, Method) and method.id == method_id
    with pytest.raises(ConfigError, match=r"unknown method 'nope'.*method_module.*restore_jax\.methods"):
        registry.get_method("nope")
    with pytest.raises(ConfigError, match="cannot be imported"):
        registry.get_method("x", module="no_such_package_anywhere.mod")
    with pytest.raises(ConfigError, match="does not provide"):
        registry.get_method("x", module="restore_jax.config")  # a module without METHOD
    with pytest.raises(ConfigError, match="whose id is 'zsm'"):
        registry.get_method("other", module="restore_jax.methods.zsm")


def test_config_layer_and_registry_import_no_jax_and_no_method():
    code = (
        "import sys, restore_jax.config, restore_jax.methods.registry, restore_jax.methods.api;"
        "bad = [m for m in sys.modules if m == 'jax' or m.startswith(('restore_jax.methods.zsm', 'restore_jax.methods.cfmd'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_inference_spec_checks_its_fields():
    spec = InferenceSpec(input_kind="window", scale=4, multiple=4, window=4, stride=3, temporal_scale=2)
    assert spec.video_mode == {"window": 4, "stride": 3, "temporal_scale": 2} and spec.output_frames(4) == 7
    assert InferenceSpec(scale=2).video_mode is None
    with pytest.raises(ValueError, match="input_kind"):
        InferenceSpec(input_kind="movie")
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        InferenceSpec(scale=0)
    with pytest.raises(ValueError, match="window model needs"):
        InferenceSpec(input_kind="window")


def test_protocol_defaults_are_filled_and_unknown_protocols_named():
    method = registry.get_method("zsm")
    raw = rc.load_config_file("zsm:ci")
    assert "batch_windows" not in raw.eval.vid4  # the config file sets only what differs
    full = method.complete_config(raw)
    assert full.eval.vid4.batch_windows == 0 and tuple(full.eval.vid4.clips) == ()  # default + file value
    assert api.load_config("zsm:ci", ["--config.eval.vid4.batch_windows=8"]).eval.vid4.batch_windows == 8
    bad = rc.apply_overrides(raw, ["--config.eval.protocols=(vid4,cfmd_s2s)"])
    with pytest.raises(ConfigError, match=r"'cfmd_s2s', which method 'zsm' does not provide"):
        method.complete_config(bad)
    with pytest.raises(ConfigError, match="but this is method 'cfmd'"):
        registry.get_method("cfmd").check_config(full)


def test_importing_methods_registers_nothing_globally():
    from input_pipelines import builders, sources
    from restore_jax.train import evaluation

    before = (set(builders.BUILDERS), set(sources.SOURCES), set(evaluation.BUILTIN_EVALUATORS))
    for method_id in registry.method_names():
        registry.get_method(method_id)
    assert (set(builders.BUILDERS), set(sources.SOURCES), set(evaluation.BUILTIN_EVALUATORS)) == before
    cfmd = registry.get_method("cfmd")
    assert "cfmd_blur" in cfmd.builders and "cfmd_blur" not in builders.BUILDERS
    assert {"face_video", "vw300", "mixture"} <= set(cfmd.sources) and "face_video" not in sources.SOURCES


def _halves(record, rng, *, size: int):
    """A test builder: the image and its 2x2 block means (a module-level function: picklable)."""
    del rng
    hr = np.asarray(record["image"], np.float32)[:size, :size]
    lr = hr.reshape(size // 2, 2, size // 2, 2, 3).mean(axis=(1, 3))
    return {"lr": lr, "hr": hr}


def test_a_methods_builder_reaches_the_pipeline_through_the_catalog():
    from input_pipelines.builders import BuilderSpec
    from input_pipelines.pipeline import Catalog, build

    data = rc.data_config("sr_pair")
    data.source.kwargs.update(size=16, num_examples=8, num_identities=2)
    data.builder.name, data.builder.kwargs = "halves", rc.ConfigDict({"size": 16})
    data.num_workers = 0
    kwargs = dict(split="train", global_batch_size=4, seed=0, process_index=0, process_count=1)
    with pytest.raises(ValueError, match=r"unknown builder 'halves'.*Method\.builders"):
        build(data, **kwargs)
    it = build(data, catalog=Catalog(builders={"halves": BuilderSpec(_halves, 1, "image")}), **kwargs)
    batch = next(it)
    want = batch["hr"].reshape(4, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(batch["lr"], want, rtol=0, atol=1e-6)
