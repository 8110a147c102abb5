"""The layer contract (``[tool.importlinter]`` in pyproject.toml) holds, and the checker can fail.

``lint-imports`` is run on the real tree; a second run on a throw-away package with one upward import
shows that the same kind of contract reports it (so a green first test means something).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _lint_imports() -> str:
    exe = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]' (import-linter)")
    return exe


def test_the_layer_contract_is_kept():
    out = subprocess.run([_lint_imports()], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout and "broken" not in out.stdout.replace("0 broken", ""), out.stdout[-2000:]


def test_an_upward_import_breaks_a_layers_contract(tmp_path):
    pkg = tmp_path / "layered_demo"
    for sub in ("", "high", "low"):
        (pkg / sub).mkdir(exist_ok=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "high" / "a.py").write_text("from layered_demo.low import b\n")
    (pkg / "low" / "b.py").write_text("import layered_demo.high.a  # upward\n")
    (tmp_path / "contract.toml").write_text(
        textwrap.dedent(
            """
            [tool.importlinter]
            root_package = "layered_demo"

            [[tool.importlinter.contracts]]
            name = "demo layers"
            type = "layers"
            layers = ["layered_demo.high", "layered_demo.low"]
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [_lint_imports(), "--config", str(tmp_path / "contract.toml"), "--no-cache"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode != 0 and "BROKEN" in out.stdout, out.stdout[-2000:] + out.stderr[-1000:]
    assert "layered_demo.low.b -> layered_demo.high.a" in out.stdout


def test_config_files_import_only_restore_jax_config():
    import ast

    allowed = {"__future__", "restore_jax.config"}
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((REPO / "configs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                names = [f"{base}.{a.name}" if base == "restore_jax" else base for a in node.names]
            else:
                continue
            for name in names:
                ok = name in allowed or name.split(".")[0] in stdlib
                assert ok, f"{path.name} imports {name}: config files import only restore_jax.config (and the standard library)"
