"""A method defined outside the repository plugs in without editing the library.

The method package and its config are the example code blocks of ``docs/adding_a_method.md``
(fenced as ```` ```python title=<path> ````), written to a temporary folder, so the page stays
true. Routes checked: ``config.method_module`` (train, restore, export through the CLI, in a subprocess
with the folder on ``PYTHONPATH``) and an entry point in group ``restore_jax.methods`` (a minimal
``.dist-info`` folder on ``PYTHONPATH``; the config has no ``method_module``), plus the error for
an unknown method id.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from restore_jax.errors import ConfigError
from restore_jax.methods import registry

REPO = pathlib.Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "adding_a_method.md"
FILES = ("my_sr_method/__init__.py", "my_sr.py")
MODULE_LINE = '    c.method_module = "my_sr_method"  # not needed once the package declares the entry point\n'
TIMEOUT = 600


def doc_files() -> dict[str, str]:
    """``{path: code}`` of the doc's fenced blocks tagged ``python title=<path>``."""
    blocks = re.findall(r"^```python title=(\S+)[ \t]*\n(.*?)^```[ \t]*$", DOC.read_text(), flags=re.M | re.S)
    return dict(blocks)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The folder holding the doc's package and config (``pkg/``), a work folder and an env for subprocesses."""
    root = tmp_path_factory.mktemp("plugin")
    pkg = root / "pkg"
    for rel, code in doc_files().items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
        RESTORE_JAX_SHARED=str(root / "no-shared"),
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=str(pkg),
    )
    work = root / "work"
    work.mkdir()
    return pkg, work, env


def _run(args, *, cwd, env, expect=0):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == expect, f"exit {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_doc_example_is_complete():
    files = doc_files()
    assert set(files) == set(FILES), sorted(files)
    for rel, code in files.items():
        compile(code, rel, "exec")
    # a config file imports only restore_jax.config
    imports = [n for n in ast.walk(ast.parse(files["my_sr.py"])) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [("restore_jax", ["config"])]
    assert MODULE_LINE in files["my_sr.py"]


def test_method_module_route_trains_and_restores_through_the_cli(plugin):
    pkg, work, env = plugin
    workdir = work / "run"
    proc = _run(
        ["-m", "restore_jax.cli", "train", "--config", f"{pkg / 'my_sr.py'}:ci", "--workdir", workdir],
        cwd=work, env=env,
    )
    assert "done: step 2/2" in proc.stdout, proc.stdout[-2000:]
    assert (workdir / "checkpoints" / "2").is_dir()

    Image.fromarray((np.random.default_rng(0).random((20, 16, 3)) * 255).astype(np.uint8)).save(work / "in.png")
    proc = _run(
        ["-m", "restore_jax.cli", "restore", "--checkpoint", workdir, "--method", "my_sr", "in.png", "out.png"],
        cwd=work, env=env,
    )
    assert "method='my_sr'" in proc.stdout and "scale=2" in proc.stdout, proc.stdout
    with Image.open(work / "out.png") as out:
        assert out.size == (32, 40)  # (width, height) x2

    _run(["-m", "restore_jax.cli", "export", "--checkpoint", workdir, "--out", "bundle"], cwd=work, env=env)
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    assert manifest["method"] == "my_sr" and manifest["scale"] == 2


ENTRY_POINT_CHECK = r"""
import json, sys
from restore_jax import api, cli
from restore_jax.methods import registry

out = {"names": registry.method_names(), "id": registry.get_method("my_sr").id}
for preset in ("small", "ci"):  # the last one, ci, is trained below
    config = api.load_config(sys.argv[1] + ":" + preset)
    out[preset] = [config.method, config.method_module, config.eval.get("sr_psnr_ssim") is not None]
    api.check_config(config, num_devices=1)
api.train(config, sys.argv[2] + "/ep")  # no method_module anywhere
restorer = api.load_restorer(sys.argv[2] + "/ep")  # from the config saved with the checkpoint
out["restorer"] = [restorer.method, restorer.scale, restorer.step]
out["cli"] = cli.main(["train", "--config", sys.argv[1] + ":ci", "--workdir", sys.argv[2], "--config.method=nope_sr"])
print("RESULT=" + json.dumps(out))
"""


def test_entry_point_route_without_method_module(plugin, tmp_path):
    pkg, _, env = plugin
    # a config without method_module: the method is found through the entry point
    config = (pkg / "my_sr.py").read_text()
    assert MODULE_LINE in config
    (tmp_path / "my_sr_ep.py").write_text(config.replace(MODULE_LINE, ""))
    # what `pip install` of a package declaring the entry point leaves on sys.path
    dist_info = tmp_path / "site" / "my_sr_method-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-sr-method\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[restore_jax.methods]\nmy_sr = my_sr_method\n")
    env = dict(env, PYTHONPATH=os.pathsep.join([str(pkg), str(tmp_path / "site")]))

    proc = _run(["-c", ENTRY_POINT_CHECK, tmp_path / "my_sr_ep.py", tmp_path / "run"], cwd=tmp_path, env=env)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT=")][-1]
    out = json.loads(line[len("RESULT="):])
    assert "my_sr" in out["names"] and out["id"] == "my_sr"
    assert out["ci"] == ["my_sr", "", True] and out["small"] == ["my_sr", "", True]
    assert out["restorer"] == ["my_sr", 2, 2]
    assert out["cli"] == 2
    assert "unknown method 'nope_sr'" in proc.stderr and "my_sr" in proc.stderr.split("unknown method", 1)[1]


def test_unknown_method_error_names_both_routes():
    with pytest.raises(ConfigError) as e:
        registry.get_method("no_such_method_xyz")
    message = str(e.value)
    assert "unknown method 'no_such_method_xyz'" in message
    assert "baseline_sr" in message  # the known ids
    assert "method_module" in message and f"{registry.ENTRY_POINT_GROUP!r}" in message
