"""Shared pieces of the inference tests' test-only methods: a tiny engine config, registration
and training of a module as a method, and the restored EMA network for by-hand references."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

import jax


def tiny_method_config(method: str, builder: str):
    """Engine config for a x2 test method on 16-px synthetic faces: 2 steps, batch 8, no eval."""
    import input_pipelines.config as data_config
    from restore_jax.train import config_loading

    config_loading.ensure_configs_importable()
    from configs import common

    c = common.base_config()
    c.method = method
    c.model = common.ml_collections.ConfigDict({"scale": 2})
    c.data = data_config.default_data_config(builder)
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


@contextlib.contextmanager
def registered_method(method: str, module_name: str) -> Iterator[None]:
    """Register ``module_name`` as method ``method`` in the registry for the duration."""
    from restore_jax.models import registry

    registry._METHODS[method] = module_name
    try:
        yield
    finally:
        registry._METHODS.pop(method, None)


def train_to(config, workdir: pathlib.Path) -> pathlib.Path:
    """Train ``config`` into ``workdir`` with the engine; returns the workdir."""
    from restore_jax.train.loop import train

    train(config, workdir)
    return workdir


def restored_ema(config, workdir: pathlib.Path, step: int, network: str = "G"):
    """``(graphdef, ema params, raw params)`` of ``network`` restored with the checkpointing adapter
    onto the engine's abstract target (independent of the Restorer's loading path)."""
    from restore_jax.train.checkpointing import CheckpointManager
    from restore_jax.train.loop import Trainer

    trainer = Trainer(config)
    with CheckpointManager(workdir / "checkpoints", every_steps=1, async_save=False) as ckpt:
        restored = ckpt.restore(trainer.abstract_restore_target(), step=step)
    state = jax.device_get(restored.state)
    return trainer.graphdefs[network], state.ema_params[network], state.params[network]
