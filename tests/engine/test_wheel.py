"""The built wheel works on its own: installed into a fresh virtual environment (no checkout on its
path), its ``restore-jax`` console script trains the shipped ``baseline_sr:ci`` config from another
working directory, restores an image and exports a bundle, with no shared data.

The wheel is built (``python -m build --wheel --no-isolation``) from a copy of the packaging files
and top-level packages, so no ``build/`` folder (whose stale copies setuptools would ship) is read
from or written to the checkout. The new environment gets the checkout venv's installed
dependencies through a ``.pth`` file holding that site-packages path as a plain line: ``.pth`` files
inside a directory added that way are not processed, so the checkout's editable-install finder
stays inactive and ``restore_jax`` can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT = 600


def _site_dirs(python: str | pathlib.Path) -> list[str]:
    """purelib and platlib of an interpreter, from its own ``sysconfig``."""
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib')); print(sysconfig.get_path('platlib'))"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()
    return list(dict.fromkeys(out))


def _copy_sources(dst: pathlib.Path) -> None:
    """The top-level files (pyproject.toml, setup.py, README.md, ...) and packages the build reads."""
    dst.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for entry in REPO.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            shutil.copy2(entry, dst / entry.name)
        elif entry.is_dir() and (entry / "__init__.py").is_file():  # restore_jax, input_pipelines, configs
            shutil.copytree(entry, dst / entry.name, ignore=ignore)


def _run(cmd, *, cwd, env, what):
    t0 = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    print(f"{what}: {time.perf_counter() - t0:.1f} s")
    return proc


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """``(venv python, restore-jax script, env, working dir)`` of a fresh venv with only the wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    src, dist, venv = root / "src", root / "dist", root / "venv"
    _copy_sources(src)
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", dist], cwd=src, env=base_env, what="build")
    wheels = sorted(dist.glob("restore_jax-*.whl"))
    assert len(wheels) == 1, wheels

    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root, env=base_env, what="venv")
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--no-input",
         "--disable-pip-version-check", wheels[0]],
        cwd=root, env=base_env, what="pip install",
    )
    new_site = _site_dirs(python)[0]
    deps = _site_dirs(sys.executable)  # the checkout venv (this interpreter): the installed dependencies
    assert new_site not in deps
    (pathlib.Path(new_site) / "_restore_jax_test_deps.pth").write_text("".join(d + "\n" for d in deps))

    cwd = root / "elsewhere"
    cwd.mkdir()
    env = dict(
        base_env,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
        RESTORE_JAX_SHARED=str(root / "no-shared-here"),  # does not exist: nothing from shared/ is needed
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    script = venv / "bin" / "restore-jax"
    assert script.is_file()
    return python, script, env, cwd


def test_wheel_imports_from_its_own_venv(wheel_env):
    python, _, env, cwd = wheel_env
    code = (
        "import json, importlib.resources, restore_jax, input_pipelines\n"
        "from restore_jax import locations\n"
        "from restore_jax.config import available_configs\n"
        "print(json.dumps({'restore_jax': restore_jax.__file__, 'input_pipelines': input_pipelines.__file__,\n"
        "  'configs': str(importlib.resources.files('restore_jax.configs')),\n"
        "  'checkout_root': str(locations.checkout_root()), 'available': available_configs()}))\n"
    )
    info = json.loads(_run([python, "-c", code], cwd=cwd, env=env, what="import").stdout.strip().splitlines()[-1])
    venv = python.parent.parent.resolve()
    for key in ("restore_jax", "input_pipelines", "configs"):
        path = pathlib.Path(info[key]).resolve()
        assert path.is_relative_to(venv), (key, path)
        assert not path.is_relative_to(REPO), (key, path)
    assert info["checkout_root"] == "None"
    assert {"baseline_sr", "cfmd", "zsm"} <= set(info["available"])


def test_wheel_console_script_train_restore_export(wheel_env):
    _, script, env, cwd = wheel_env
    workdir = cwd / "W"
    proc = _run(
        [script, "train", "--config", "baseline_sr:ci", "--workdir", workdir,
         "--config.train.num_steps=2", "--config.optim.warmup_steps=1",  # warm-up must be < num_steps
         "--config.eval.final=False", "--config.checkpoint.every_steps=2"],
        cwd=cwd, env=env, what="restore-jax train",
    )
    assert "done: step 2/2" in proc.stdout, proc.stdout[-2000:]
    assert (workdir / "checkpoints" / "2").is_dir()

    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((24, 20, 3)) * 255).astype(np.uint8)).save(cwd / "in.png")
    _run([script, "restore", "--checkpoint", workdir, "in.png", "out.png"], cwd=cwd, env=env, what="restore-jax restore")
    with Image.open(cwd / "out.png") as out:
        assert out.size == (80, 96)  # (width, height) x4

    _run([script, "export", "--checkpoint", workdir, "--out", "bundle"], cwd=cwd, env=env, what="restore-jax export")
    manifest = json.loads((cwd / "bundle" / "manifest.json").read_text())
    assert manifest["method"] == "baseline_sr" and manifest["scale"] == 4
