"""The training engine: state, optimizers, mesh + sharding rules, steps, loop, checkpoints, logging.

Public entry points (imported lazily so ``restore_jax.errors`` stays light)::

    Trainer(config, method).fit(workdir)    # restore_jax.train.loop (method: a methods.api.Method)
    train(config, method, workdir), evaluate_checkpoint(config, method, workdir, step=None)
    TrainState                              # restore_jax.train.state
    Recipe                                  # restore_jax.train.recipe
    Evaluator, BUILTIN_EVALUATORS           # restore_jax.train.evaluation
    initialize()                            # restore_jax.train.distributed

``restore_jax.api`` resolves ``config.method`` to its ``Method`` (``api.make_trainer(config)``).

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
    "Evaluator": "restore_jax.train.evaluation",
    "BUILTIN_EVALUATORS": "restore_jax.train.evaluation",
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
