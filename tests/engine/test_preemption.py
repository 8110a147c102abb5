"""SIGTERM (preemption) handling of ``restore-jax train``: the reported checkpoint is committed even
when a second SIGTERM arrives during its save; the exit code says "preempted"; without
checkpointing nothing is claimed; Ctrl-C waits for a save in progress."""

from __future__ import annotations

import io
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import pytest

from restore_jax import cli
from restore_jax.api import make_trainer
from restore_jax.inference.restorer import read_checkpoint_config
from restore_jax.train import mesh as mesh_lib
from restore_jax.train.loop import _SigtermFlag
from support.engine_data import TINY_SR_OVERRIDES, ArraySRData, tiny_sr_config

REPO = pathlib.Path(__file__).resolve().parents[2]

TINY = TINY_SR_OVERRIDES


def _cli_env() -> dict[str, str]:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    for k in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"):  # the CLI's own defaults are under test
        env.pop(k, None)
    return env


def test_second_sigterm_during_save_keeps_the_reported_checkpoint(tmp_path):
    """SIGTERM, then SIGTERM again while the checkpoint is still ``<step>.orbax-checkpoint-tmp``
    (Slurm, Kubernetes send several): the save completes, "saved" is printed only after the
    commit, the run exits 143, and the checkpoint restores (state and data position)."""
    workdir = tmp_path / "run"
    argv = ["train", "--config", "baseline_sr:ci", "--workdir", str(workdir), *TINY,
            "--config.checkpoint.every_steps=100", "--config.checkpoint.async_save=True"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "preempted_train.py"), "3", *argv],
        cwd=REPO, env=_cli_env(), capture_output=True, text=True, timeout=300,
    )
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == cli.EXIT_PREEMPTED == 143, out[-3000:] + err[-3000:]
    lines = out.splitlines()
    second = next(i for i, l in enumerate(lines) if l.startswith("[test] second SIGTERM at uncommitted step"))
    step = int(lines[second].rsplit(" ", 1)[1])
    committed = lines.index(f"[test] committed step {step}")
    saved = next(i for i, l in enumerate(lines) if l.startswith(f"SIGTERM: saved a checkpoint at step {step} "))
    assert second < committed < saved  # "saved" only once it is on disk
    assert "(SIGTERM received 2 times; the save was finished first)" in lines[saved]
    assert f"stopped by SIGTERM: step {step}/8" in out
    assert f"exiting with 143 (preempted; checkpoint of step {step} committed)" in err
    # Exactly the reported checkpoint, complete: no temporary folder left.
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [str(step)]
    assert not (workdir / ".lock").exists()
    # The CLI's TensorFlow defaults: no start-up INFO lines on stderr.
    assert "oneDNN" not in err and "absl::InitializeLog" not in err, err[:2000]

    # Restorable: state and data-iterator position, onto this process's 8-device mesh.
    cli_config = read_checkpoint_config(workdir)
    config = tiny_sr_config()
    config.checkpoint.every_steps = 100
    assert cli_config.model.channels == config.model.channels == 8
    trainer = make_trainer(config, data_factory=ArraySRData(hr_size=32))
    data_iter = trainer.make_data_iter()
    ckpt = trainer.make_checkpointer(workdir)
    try:
        restored = ckpt.restore(trainer.abstract_restore_target(), data_iter=data_iter)
    finally:
        ckpt.close()
    assert restored.step == step and int(restored.state.step) == step
    assert not (workdir / "checkpoints_corrupt").exists()


def test_sigterm_without_checkpointing_claims_no_save(tmp_path):
    config = tiny_sr_config()
    config.checkpoint.enabled = False
    mesh = mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:1])  # one device: a faster compile
    trainer = make_trainer(config, mesh=mesh, data_factory=ArraySRData(hr_size=32, sigterm_at=3))
    stream = io.StringIO()
    handler = signal.getsignal(signal.SIGTERM)
    result = trainer.fit(tmp_path, stream=stream)
    log = stream.getvalue()
    assert result.preempted and result.stopped_early and result.checkpoint_step is None
    assert 1 <= result.step < 8
    assert f"SIGTERM: stopping at step {result.step}; no checkpoint was saved (checkpoint.enabled=False)" in log
    assert "saved a checkpoint" not in log
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / ".lock").exists()
    assert signal.getsignal(signal.SIGTERM) == handler  # the run's handler is removed afterwards


def test_sigterm_flag_counts_signals_and_defers_ctrl_c():
    """While a final save is awaited, SIGTERMs are counted (not fatal) and Ctrl-C is held back, then
    raised once the block ends; the previous handlers come back afterwards."""
    before_term, before_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with _SigtermFlag() as flag:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(50):  # let the main thread run the Python-level handlers
            time.sleep(0.001)
        assert flag.raised and flag.count == 2
        reached_end = False
        with pytest.raises(KeyboardInterrupt):
            with flag.deferring_interrupts():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(50):
                    time.sleep(0.001)
                reached_end = True  # the interrupt did not cut the block short
        assert reached_end
    assert signal.getsignal(signal.SIGTERM) == before_term
    assert signal.getsignal(signal.SIGINT) == before_int
