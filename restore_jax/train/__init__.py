"""The training engine: state, optimizers, mesh + sharding rules, steps, loop, checkpoints, logging.

Public entry points (imported lazily so ``restore_jax.errors`` stays light)::

    Trainer(config).fit(workdir)            # restore_jax.train.loop
    train(config, workdir), evaluate_checkpoint(config, workdir, step=None)
    TrainState                              # restore_jax.train.state
    Recipe                                  # restore_jax.train.recipe
    load_config("configs/<method>.py:<preset>", overrides)
    register_evaluator(name)                # restore_jax.train.evaluation
    initialize()                            # restore_jax.train.distributed

See docs/engine.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Trainer": "restore_jax.train.loop",
    "train": "restore_jax.train.loop",
    "evaluate_checkpoint": "restore_jax.train.loop",
    "TrainState": "restore_jax.train.state",
    "Recipe": "restore_jax.train.recipe",
    "load_config": "restore_jax.train.config_loading",
    "register_evaluator": "restore_jax.train.evaluation",
    "initialize": "restore_jax.train.distributed",
    "ConfigError": "restore_jax.errors",
    "CheckpointError": "restore_jax.errors",
    "NonFiniteError": "restore_jax.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'restore_jax.train' has no attribute {name!r}")
