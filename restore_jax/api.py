"""The top layer for Python users and the CLI: resolve a method, load a config, train, restore.

These are the only functions (with :mod:`restore_jax.cli`, which calls them) that turn a method
id into a :class:`~restore_jax.methods.api.Method`; the engine and inference take the ``Method``
itself::

    from restore_jax import api

    config = api.load_config("zsm:small", ["--config.train.num_steps=200"])
    api.train(config, "/tmp/zsm")                  # = Trainer(config, api.method_for(config)).fit(...)
    restorer = api.load_restorer("/tmp/zsm")       # = Restorer.from_checkpoint(path, method)
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

from ml_collections import ConfigDict

from restore_jax.config import apply_overrides, load_config_file
from restore_jax.methods.api import Method
from restore_jax.methods.registry import get_method, method_for_config, method_names


def method_for(config: ConfigDict) -> Method:
    """The :class:`Method` a config names (``config.method`` / ``config.method_module``)."""
    return method_for_config(config)


def load_config(spec: str, overrides: Sequence[str] | Sequence[tuple[str, str]] = ()) -> ConfigDict:
    """``'configs/zsm.py:small'`` or ``'zsm:small'`` -> the config with the method's protocol
    defaults filled in and ``--config.x=y`` overrides applied (not yet checked against devices)."""
    config = load_config_file(spec)
    config = method_for_config(config).complete_config(config)
    if overrides:
        config = apply_overrides(config, overrides)
        # an override may name another method or add protocols: complete again
        config = method_for_config(config).complete_config(config)
    return config


def check_config(config: ConfigDict, *, num_devices: int | None = None, process_count: int = 1) -> ConfigDict:
    """The engine's and the method's checks of ``config`` (``ConfigError`` with a fix-it message)."""
    return method_for_config(config).check_config(config, num_devices=num_devices, process_count=process_count)


def make_trainer(config: ConfigDict, **kwargs: Any):
    """``Trainer(config, method_for(config), **kwargs)`` (``mesh``, ``data_factory``)."""
    from restore_jax.train.loop import Trainer

    return Trainer(config, method_for_config(config), **kwargs)


def train(config: ConfigDict, workdir: str | pathlib.Path, **kwargs: Any):
    """Train (or resume) ``config`` in ``workdir``; returns the ``FitResult``."""
    return make_trainer(config).fit(workdir, **kwargs)


def evaluate(config: ConfigDict, workdir: str | pathlib.Path, *, step: int | None = None, log=print):
    """Run the config's evaluation protocols on a checkpoint: ``(step, results, tables)``."""
    from restore_jax.train.loop import evaluate_checkpoint

    return evaluate_checkpoint(config, method_for_config(config), workdir, step=step, log=log)


def load_restorer(workdir_or_path: str | pathlib.Path, *, step: int | None = None, log=print):
    """A :class:`~restore_jax.inference.restorer.Restorer` for a training workdir's checkpoint."""
    from restore_jax.inference.restorer import Restorer, read_checkpoint_config

    config = read_checkpoint_config(workdir_or_path, step)
    return Restorer.from_checkpoint(workdir_or_path, method_for_config(config), step=step, log=log)


__all__ = [
    "check_config",
    "evaluate",
    "get_method",
    "load_config",
    "load_restorer",
    "make_trainer",
    "method_for",
    "method_names",
    "train",
]
