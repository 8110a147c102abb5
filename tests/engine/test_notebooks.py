"""The Colab notebooks in ``colab/`` run top to bottom.

Each notebook is executed with nbclient in a kernel that runs this interpreter (a kernelspec
written for the test, so the venv's Python and its ``restore_jax`` are used, whatever ``python``
is on PATH), with ``RESTORE_JAX_NOTEBOOK_CI=1`` (the seconds-long ``ci`` presets) and its outputs
in a temporary folder. A cell that raises fails the test with the cell's traceback.
"""

from __future__ import annotations

import json
import pathlib
import sys

import nbformat
import pytest
from nbclient import NotebookClient

COLAB = pathlib.Path(__file__).resolve().parents[2] / "colab"
KERNEL = "restore-jax-notebook-test"

# notebook -> text its outputs must contain (what the notebook is for)
EXPECTED = {
    "quickstart": ["nothing to install", "trained to step 6", "PSNR model", "max |bundle - restorer| = "],
    "controllable_deblur": ["nothing to install", "controls: u", "the sweep as a GIF"],
    "space_time_sr": ["nothing to install", "video window 4 stride 3 temporal x2", "output frames at"],
}


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "restore_jax tests", "language": "python"}))
    return root


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_top_to_bottom(name, jupyter_path, tmp_path, monkeypatch):
    path = COLAB / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("RESTORE_JAX_NOTEBOOK_CI", "1")
    monkeypatch.setenv("RESTORE_JAX_NOTEBOOK_WORKDIR", str(tmp_path))
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # one CPU device in the kernel, like a laptop / Colab
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    client = NotebookClient(nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(COLAB)}})
    client.execute()
    text = _text(nb)
    for expected in EXPECTED[name]:
        assert expected in text, f"{name}: {expected!r} not in the outputs:\n{text[-3000:]}"
    assert list((tmp_path / name).glob("*.png")), "the notebook shows (and saves) its pictures"
