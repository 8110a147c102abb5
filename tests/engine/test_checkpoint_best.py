"""Keep-last-N plus best-by-metric retention of the checkpointing adapter."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from restore_jax.train.checkpointing import CheckpointManager


def _save_series(directory, values, *, mode: str, keep_last: int, keep_best: int) -> list[int]:
    state = {"w": jnp.zeros((3,), jnp.float32)}
    with CheckpointManager(
        directory, every_steps=1, keep_last=keep_last, keep_best=keep_best, best_metric="val/psnr",
        best_mode=mode, async_save=False,
    ) as mgr:
        for step, value in enumerate(values, start=1):
            state = {"w": state["w"] + 1.0}
            assert mgr.save(step, state, metrics={"val/psnr": value, "other": -value})
        mgr.wait()
        return mgr.all_steps()


@pytest.mark.parametrize(
    "mode, values, keep_last, keep_best",
    [
        ("max", [10.0, 30.0, 20.0, 15.0, 12.0], 1, 1),
        ("min", [10.0, 30.0, 5.0, 15.0, 12.0], 1, 1),
        ("max", [10.0, 30.0, 20.0, 25.0, 12.0, 11.0], 2, 2),
    ],
)
def test_keeps_latest_and_best(tmp_path, mode, values, keep_last, keep_best):
    kept = _save_series(tmp_path / "ckpt", values, mode=mode, keep_last=keep_last, keep_best=keep_best)
    steps = list(range(1, len(values) + 1))
    latest = set(steps[-keep_last:])
    ranked = sorted(steps, key=lambda s: values[s - 1], reverse=(mode == "max"))
    best = set(ranked[:keep_best])
    assert set(kept) == latest | best


def test_without_best_metric_only_latest_are_kept(tmp_path):
    state = {"w": jnp.zeros((2,), jnp.float32)}
    with CheckpointManager(tmp_path / "c", every_steps=1, keep_last=2, async_save=False) as mgr:
        for step in range(1, 5):
            mgr.save(step, state, metrics={"val/psnr": float(step)})
        mgr.wait()
        assert mgr.all_steps() == [3, 4]
