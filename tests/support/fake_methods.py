"""Shared pieces of the inference tests' test-only methods: a tiny engine config that names the
test module holding the method (``config.method_module``), training it with the engine, and the
restored EMA network for by-hand references."""

from __future__ import annotations

import pathlib

import jax


def tiny_method_config(method: str, builder: str, module: str):
    """Engine config for a x2 test method (``METHOD`` of ``module``) on 16-px synthetic faces: 2 steps,
    batch 8, no eval."""
    from restore_jax import config as rc

    c = rc.base_config()
    c.method = method
    c.method_module = module
    c.model = rc.ConfigDict({"scale": 2})
    c.data = rc.data_config(builder)
    c.data.source.kwargs.update(size=16, num_examples=16, num_identities=4)
    c.data.source.splits.val.num_examples = 8
    c.data.source.splits.test.num_examples = 8
    c.data.builder.kwargs.update(hr_size=16, scale=2)
    c.data.num_workers = 0
    c.train.num_steps = 2
    c.train.global_batch_size = 8
    c.train.ema_decay = 0.5
    c.optim.lr = 1e-2
    c.checkpoint.every_steps = 2
    c.checkpoint.async_save = False
    c.log.every_steps = 1
    c.log.image_every_steps = 0
    c.eval.final = False
    return c


def train_to(config, workdir: pathlib.Path) -> pathlib.Path:
    """Train ``config`` into ``workdir`` with the engine; returns the workdir."""
    from restore_jax import api

    api.train(config, workdir)
    return workdir


def restored_ema(config, workdir: pathlib.Path, step: int, network: str = "G"):
    """``(graphdef, ema params, raw params)`` of ``network`` restored with the checkpointing adapter
    onto the engine's abstract target (independent of the Restorer's loading path)."""
    from restore_jax.api import make_trainer
    from restore_jax.train.checkpointing import CheckpointManager

    trainer = make_trainer(config)
    with CheckpointManager(workdir / "checkpoints", every_steps=1, async_save=False) as ckpt:
        restored = ckpt.restore(trainer.abstract_restore_target(), step=step)
    state = jax.device_get(restored.state)
    return trainer.graphdefs[network], state.ema_params[network], state.params[network]
