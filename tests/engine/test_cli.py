"""``restore-jax`` command line: friendly errors, and ``train`` + ``eval`` end to end on the ci preset."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from restore_jax import cli

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_help_lists_only_existing_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "{train,eval,restore,export}" in out
    # No stub subcommands: only the implemented ones are offered.
    assert "bench" not in out.split("Overrides")[0]


def test_restore_help_lists_generic_options_and_explains_controls(capsys):
    assert cli.main(["restore", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--checkpoint", "--step", "--method", "--tile", "--overlap", "--frames", "--fps"):
        assert option in out
    assert "Method controls (e.g. --u for cfmd) are options generated from the checkpoint's method: they appear after --checkpoint" in out
    # with a checkpoint that cannot be read, help still works (and says why no controls are listed)
    assert cli.main(["restore", "--checkpoint", "/nonexistent/run", "-h"]) == 0
    assert "method controls are not listed" in capsys.readouterr().out


def test_restore_without_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["restore"])
    assert e.value.code == 2
    assert "--checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "baseline_sr:huge", "--workdir", "{tmp}"], "unknown preset 'huge'"),
        (["train", "--config", "configs/nope.py:ci", "--workdir", "{tmp}"], "config 'configs/nope.py' not found"),
        (["train", "--config", "baseline_sr:ci", "--workdir", "{tmp}", "--config.optim.lrr=1"], "did you mean --config.optim.lr"),
        (["train", "--config", "baseline_sr:ci", "--workdir", "{tmp}", "--lr=1"], "overrides look like --config"),
        (["eval", "--config", "baseline_sr:ci", "--workdir", "{tmp}/missing"], "does not exist; train first"),
        (["eval", "--config", "baseline_sr:ci", "--workdir", "{tmp}"], "no checkpoints in"),
    ],
)
def test_friendly_errors(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("restore-jax: error:") and message in err, err


def test_missing_required_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--config", "baseline_sr:ci"])
    assert e.value.code == 2
    assert "--workdir" in capsys.readouterr().err


def test_train_then_eval_ci_preset(tmp_path, capsys):
    workdir = tmp_path / "run"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "restore_jax.cli", "train", "--config", "baseline_sr:ci", "--workdir", str(workdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "step 6/6 (100%)" in out and "ETA" in out
    assert "PSNR model" in out and "PSNR bicubic" in out
    assert "done: step 6/6" in out
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 6]
    assert list((workdir / "tb").glob("events.out.tfevents*"))
    assert (workdir / "samples" / "samples_0000003.png").is_file()
    assert (workdir / "samples" / "final_0000006.png").is_file()
    results = json.loads((workdir / "eval" / "6.json").read_text())["results"]
    assert results["synthetic/n"] == 16
    assert 10 < results["synthetic/psnr"] < 60 and 0 < results["synthetic/ssim"] <= 1

    # eval of an earlier checkpoint, in this process (8 fake devices: restored onto another mesh)
    assert cli.main(["eval", "--config", "baseline_sr:ci", "--workdir", str(workdir), "--checkpoint", "3"]) == 0
    printed = capsys.readouterr().out
    assert "sr_psnr_ssim at step 3" in printed
    assert json.loads((workdir / "eval" / "3.json").read_text())["step"] == 3

    # training again is a no-op resume
    assert cli.main(["train", "--config", "baseline_sr:ci", "--workdir", str(workdir)]) == 0
    assert "nothing to do: already at step 6" in capsys.readouterr().out
