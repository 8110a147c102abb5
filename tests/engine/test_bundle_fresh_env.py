"""A bundle loads and runs in a fresh virtual environment that holds only what the bundle declares.

``restore-jax export`` writes ``requirements.txt`` into every bundle (``BUNDLE_REQUIREMENTS``: jax,
numpy, flatbuffers). This test exports ``baseline_sr:ci`` (initial weights, no training), creates a
new venv (``python -m venv``, no system site-packages), runs ``pip install -r
<bundle>/requirements.txt`` from the package sources configured on this machine that are *local*
(``file://`` indexes and find-links folders; every other pip setting is switched off, so nothing is
fetched from the internet), and in that venv, from an empty working directory, imports the
``bundle_loader.py`` shipped inside the bundle and restores an image. The result must equal the
live ``Restorer`` of the same checkpoint in this process, the venv must hold exactly jax's closure
plus flatbuffers, and ``restore_jax``, ``flax`` and ``orbax`` must not be importable there.

Before the fix, jax's deserializer failed there with "Please install 'flatbuffers'".
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from support.checkpoints import exported_init_checkpoint

# What `pip install -r requirements.txt` must put into the venv: jax and its dependencies, plus
# flatbuffers (needed by jax.export.deserialize, not a dependency of jax). Nothing else.
EXPECTED_DISTRIBUTIONS = {"jax", "jaxlib", "numpy", "ml-dtypes", "opt-einsum", "scipy", "flatbuffers"}
VENV_TOOLS = {"pip", "setuptools", "wheel"}  # what `python -m venv` itself installs


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _local_package_sources() -> list[str]:
    """pip options naming only the local package sources of this machine's pip configuration
    (``file://`` indexes, find-links folders), plus ``RESTORE_JAX_WHEELHOUSE`` (a folder of wheels)
    when set."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=120, check=True
    )
    indexes: list[str] = []
    links: list[str] = []
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        option = key.rsplit(".", 1)[-1]
        for item in value.strip().strip("'\"").split():
            local = item.startswith("file://") or (item.startswith("/") and pathlib.Path(item).is_dir())
            if not local:
                continue
            if option in ("index-url", "extra-index-url") and item not in indexes:
                indexes.append(item)
            elif option == "find-links" and item not in links:
                links.append(item)
    wheelhouse = os.environ.get("RESTORE_JAX_WHEELHOUSE")
    if wheelhouse:
        links.append(wheelhouse)
    if not indexes and not links:
        pytest.fail(
            "no local package source: this test installs the bundle's requirements without the internet, "
            "from file:// indexes or find-links folders in pip's configuration, or RESTORE_JAX_WHEELHOUSE"
        )
    args = ["--index-url", indexes[0], *[a for i in indexes[1:] for a in ("--extra-index-url", i)]] if indexes else ["--no-index"]
    return args + [a for link in links for a in ("--find-links", link)]


def _clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment: no PYTHONPATH, no PIP_* settings, no pip configuration files."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    return {**env, "PIP_CONFIG_FILE": os.devnull, **extra}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(workdir, bundle_dir)``: ``baseline_sr:ci`` initial weights exported by ``restore-jax export``."""
    return exported_init_checkpoint("baseline_sr:ci", tmp_path_factory.mktemp("fresh_env_bundle"))


@pytest.fixture(scope="module")
def fresh_python(exported, tmp_path_factory) -> pathlib.Path:
    """The python of a new venv into which only the bundle's requirements.txt was installed."""
    _, bundle = exported
    venv = tmp_path_factory.mktemp("fresh_env") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=_clean_env())
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [
            str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
            *_local_package_sources(), "-r", str(bundle / "requirements.txt"),
        ],
        capture_output=True, text=True, timeout=600, env=_clean_env(),
    )
    assert proc.returncode == 0, f"pip install -r requirements.txt failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return python


_RUN_IN_FRESH_ENV = r"""
import importlib.metadata, importlib.util, json, sys
import numpy as np

bundle, x_path, out_path = sys.argv[1:4]
importable = {name: importlib.util.find_spec(name) is not None
              for name in ("restore_jax", "flax", "orbax", "input_pipelines", "tensorflow", "torch")}
sys.path.insert(0, bundle)  # the loader copy inside the bundle
import bundle_loader

restore = bundle_loader.load_bundle(bundle)
np.save(out_path, restore(np.load(x_path)))
import jax
print(json.dumps({
    "importable": importable,
    "distributions": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
    "loader": bundle_loader.__file__,
    "prefix": sys.prefix,
    "numpy": np.__file__,
    "jax": jax.__file__,
    "modules": sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)),
}))
"""


def test_bundle_runs_in_a_fresh_venv_with_only_its_requirements(exported, fresh_python, tmp_path):
    from restore_jax import api

    workdir, bundle = exported
    x = np.random.default_rng(7).random((2, 13, 10, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run(
        [str(fresh_python), "-I", "-c", _RUN_IN_FRESH_ENV, str(bundle), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=300, cwd=cwd, env=_clean_env(JAX_PLATFORMS="cpu"),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])

    venv = pathlib.Path(info["prefix"])
    assert venv == fresh_python.parent.parent
    for name in ("numpy", "jax"):  # imported from the fresh venv, not from this environment
        assert pathlib.Path(info[name]).is_relative_to(venv), info[name]
    assert pathlib.Path(info["loader"]) == bundle / "bundle_loader.py"
    assert info["importable"] == dict.fromkeys(("restore_jax", "flax", "orbax", "input_pipelines", "tensorflow", "torch"), False)
    assert {_normalize(n) for n in info["distributions"]} - VENV_TOOLS == EXPECTED_DISTRIBUTIONS
    assert "flatbuffers" in info["modules"]  # the reason it is declared

    y = np.load(tmp_path / "y.npy")
    expected = np.asarray(api.load_restorer(workdir)(x))
    assert y.shape == expected.shape == (2, 52, 40, 3)
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=0)
