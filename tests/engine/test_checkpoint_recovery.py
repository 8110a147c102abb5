"""Unreadable checkpoints, the workdir lock and leftovers of killed runs (docs/engine.md, "Failure modes").

One tiny run (8 steps, checkpoints at 4 and 8, ``ArraySRData``) is trained once per module; each
test damages a copy of it.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from restore_jax import cli
from restore_jax import config as common
from restore_jax.api import make_trainer
from restore_jax.errors import CheckpointError, WorkdirLockedError
from restore_jax.train import mesh as mesh_lib
from restore_jax.train.workdir_lock import WorkdirLock
from support.engine_data import TINY_SR_OVERRIDES, ArraySRData, tiny_sr_config

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = TINY_SR_OVERRIDES + ("--config.checkpoint.every_steps=4",)
NOISE = ("Traceback", "Event loop is closed", "never retrieved", "tensorstore_spec", "oneDNN", "absl::InitializeLog")


@pytest.fixture(scope="module")
def trainer():
    config = tiny_sr_config()
    # One device compiles faster than the 8 fake ones; mesh.shape stays (-1, 1) in the saved config,
    # so restore-jax restore (8 devices in-process, 1 in a subprocess) can rebuild its mesh.
    mesh = mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:1])
    return make_trainer(config, mesh=mesh, data_factory=ArraySRData(hr_size=32))


@pytest.fixture(scope="module")
def run8(trainer, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run8")
    trainer.fit(workdir)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "8"]
    return workdir


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst)
    return dst


def _truncate(workdir: pathlib.Path, step: int) -> None:
    files = list((workdir / "checkpoints" / str(step) / "state").rglob("d/*"))
    assert files
    for f in files:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    for k in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"):  # the CLI's own defaults are under test
        env.pop(k, None)
    return subprocess.run(
        [sys.executable, "-m", "restore_jax.cli", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _variant(trainer, *overrides: str):
    t = copy.copy(trainer)
    t.config = common.apply_overrides(trainer.config, list(overrides))
    return t


# Orbax leaves asyncio callbacks behind after a failed read; in-process they may surface at garbage
# collection in a later test (the subprocess checks below show they are filtered for people).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_every_checkpoint_unreadable_stops_instead_of_restarting(trainer, run8, tmp_path):
    workdir = _copy(run8, tmp_path / "run")
    _truncate(workdir, 4)
    _truncate(workdir, 8)

    # CLI: exit 2, a readable error naming the moved-aside checkpoints and the option; no dumps.
    proc = _cli("train", "--config", "baseline_sr:ci", "--workdir", str(workdir), *TINY)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    err = proc.stderr
    assert "restore-jax: error: no checkpoint of" in err and "is readable" in err
    assert "--config.checkpoint.allow_fresh_start=True" in err
    moved = sorted(p.name for p in (workdir / "checkpoints_corrupt").iterdir())
    assert [m.split("-")[0] for m in moved] == ["4", "8"]
    for name in moved:
        assert str(workdir / "checkpoints_corrupt" / name) in err
    assert not any(word in err for word in NOISE), err[:3000]
    assert len(err.strip().splitlines()) <= 4, err  # two one-line warnings (8, 4) and the error
    assert "done:" not in proc.stdout and not (workdir / ".lock").exists()

    # Running the same command again (checkpoints/ now empty) still refuses.
    with pytest.raises(CheckpointError, match=r"holds unreadable ones moved aside.*allow_fresh_start=True"):
        trainer.fit(workdir)
    assert sorted(os.listdir(workdir / "checkpoints")) == []

    # The explicit option starts over from step 0.
    stream = io.StringIO()
    result = _variant(trainer, "--config.checkpoint.allow_fresh_start=True").fit(workdir, stream=stream)
    assert result.step == 8
    assert "starting from step 0 (checkpoint.allow_fresh_start=True)" in stream.getvalue()
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "8"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_restore_skips_an_unreadable_latest_checkpoint(run8, tmp_path, capsys):
    workdir = _copy(run8, tmp_path / "run")
    _truncate(workdir, 8)
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(image)

    # Fallback to the newest readable step, one warning line naming the bad one and --step.
    proc = _cli("restore", "--checkpoint", str(workdir), str(image), str(tmp_path / "out.png"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[:3000]
    assert lines[0].startswith("restore-jax: warning: latest checkpoint(s) of") and "step 8 (" in lines[0]
    assert "using step 4" in lines[0] and "--step" in lines[0]
    assert "step=4" in proc.stdout and (tmp_path / "out.png").is_file()
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "8"]  # restore moves nothing

    # The bad step asked for explicitly: an error with the other steps and --step.
    assert cli.main(["restore", "--checkpoint", str(workdir), "--step", "8", str(image), str(tmp_path / "o8.png")]) == 2
    err = capsys.readouterr().err
    assert "checkpoints/8 is unreadable" in err and "other steps: [4] (choose one with --step)" in err
    assert "tensorstore_spec" not in err

    # Nothing readable: an error listing each step, with the --step hint.
    _truncate(workdir, 4)
    assert cli.main(["restore", "--checkpoint", str(workdir), str(image), str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "is readable (step 8:" in err and "step 4:" in err and "--step N" in err


def test_locked_workdir_is_refused_and_a_stale_lock_replaced(trainer, run8, tmp_path, capsys):
    workdir = _copy(run8, tmp_path / "run")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"pid": owner.pid, "host": socket.gethostname(), "started": 1.0e9, "pid_start": None, "argv": []}
        (workdir / ".lock").write_text(json.dumps(lock))
        with pytest.raises(WorkdirLockedError, match=rf"in use by another training run \(pid {owner.pid} on host"):
            trainer.fit(workdir)
        # The CLI: exit 2 and the same message, nothing trained.
        code = cli.main(["train", "--config", "baseline_sr:ci", "--workdir", str(workdir), *TINY])
        assert code == 2
        err = capsys.readouterr().err
        assert "restore-jax: error: workdir" in err and f"delete {workdir / '.lock'}" in err
        assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "8"]
    finally:
        owner.kill()
        owner.wait()

    # Same lock, its process gone: stale. Plus an incomplete save a killed run left behind.
    tmp_save = workdir / "checkpoints" / "12.orbax-checkpoint-tmp"
    (tmp_save / "state").mkdir(parents=True)
    stream = io.StringIO()
    result = _variant(trainer, "--config.train.num_steps=12").fit(workdir, stream=stream)
    log = stream.getvalue()
    assert result.step == 12
    assert f"removed a stale lock {workdir / '.lock'} (pid {owner.pid} on host" in log
    assert f"removed an incomplete checkpoint save left by an interrupted run: {tmp_save}" in log
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["12", "4", "8"]
    assert not (workdir / ".lock").exists()  # released at the end


def test_lock_of_another_host_or_this_process_is_not_taken_over(tmp_path):
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": 1, "host": "another-host.invalid", "started": 1.0e9}))
    with pytest.raises(WorkdirLockedError, match=r"pid 1 on host another-host.invalid"):
        WorkdirLock(tmp_path).acquire()
    assert json.loads(path.read_text())["host"] == "another-host.invalid"  # left alone
    path.unlink()
    with WorkdirLock(tmp_path) as held:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(WorkdirLockedError):  # a second fit in the same process
            WorkdirLock(tmp_path).acquire()
        assert held.held
    assert not path.exists()
