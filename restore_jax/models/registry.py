"""Method registry: method id -> module providing ``make_recipe(config)`` (imported lazily).

A method module defines:

- ``make_recipe(config) -> restore_jax.train.recipe.Recipe`` — networks, losses, step kind;
- optionally ``validate(config, *, num_devices, process_count)`` — method-specific config checks
  (called by ``configs.common.validate``).

Adding a method: write ``restore_jax/models/<id>.py`` and ``configs/<id>.py`` and add one line here.
This module imports no JAX so configs can be validated before a backend starts.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_METHODS: dict[str, str] = {
    "baseline_sr": "restore_jax.models.baseline_sr",
    "cfmd": "restore_jax.models.cfmd_recipe",
    "zsm": "restore_jax.models.zsm_recipe",
}


def method_names() -> list[str]:
    """Registered method ids, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> ModuleType:
    """The module of method ``name``; ``KeyError`` with the list of known ids when unknown."""
    try:
        module_name = _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered methods: {', '.join(method_names())}") from None
    return importlib.import_module(module_name)


def make_recipe(config):
    """The method's :class:`~restore_jax.train.recipe.Recipe` for ``config`` (``config.method`` names it)."""
    return get_method(config.method).make_recipe(config)
