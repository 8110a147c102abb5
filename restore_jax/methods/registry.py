"""Method registry: method id -> the module holding its ``METHOD`` (imported only when asked for).

Three ways a method is found, in this order:

1. ``config.method_module = "pkg.mod"`` (or ``get_method(id, module="pkg.mod")``): that module's
   ``METHOD``, for a method in a user's own package that is not installed as a plug-in;
2. the built-in table below;
3. an installed plug-in: a distribution that declares the entry point group ``restore_jax.methods``,
   ``my_id = "my_pkg.my_method"`` (a module with ``METHOD``) or ``"my_pkg.my_method:METHOD"``.

Adding a built-in method: its package ``restore_jax/methods/<id>/`` with ``METHOD``, its config
``configs/<id>.py`` and one line in ``_BUILT_IN``. This module imports no JAX (methods are imported
lazily), so a config can be checked before a backend starts.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from restore_jax.errors import ConfigError
from restore_jax.methods.api import Method

ENTRY_POINT_GROUP = "restore_jax.methods"

_BUILT_IN: dict[str, str] = {
    "baseline_sr": "restore_jax.methods.baseline_sr",
    "cfmd": "restore_jax.methods.cfmd",
    "zsm": "restore_jax.methods.zsm",
}


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def method_names() -> list[str]:
    """Built-in and installed plug-in method ids, sorted."""
    return sorted(set(_BUILT_IN) | set(_entry_points()))


def _method_of(obj: Any, where: str) -> Method:
    method = getattr(obj, "METHOD", obj)
    if not isinstance(method, Method):
        raise ConfigError(f"{where} does not provide a restore_jax.methods.api.Method (a module-level METHOD)")
    return method


def load_method_module(module_path: str) -> Method:
    """``METHOD`` of module ``pkg.mod`` (or ``pkg.mod:ATTR``)."""
    module_name, _, attr = module_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"method module {module_name!r} cannot be imported ({e}); install its package or put it on PYTHONPATH"
        ) from e
    return _method_of(getattr(module, attr) if attr else module, f"module {module_path!r}")


def get_method(method_id: str, *, module: str = "") -> Method:
    """The :class:`Method` for ``method_id``; :class:`ConfigError` naming the known ids when unknown."""
    if module:
        method = load_method_module(module)
    elif method_id in _BUILT_IN:
        method = load_method_module(_BUILT_IN[method_id])
    else:
        eps = _entry_points()
        if method_id not in eps:
            raise ConfigError(
                f"unknown method {method_id!r}; known methods: {', '.join(method_names())}. A method in your own "
                f"package: set --config.method_module=pkg.mod or declare an entry point in group {ENTRY_POINT_GROUP!r}"
            )
        try:
            loaded = eps[method_id].load()
        except ImportError as e:
            raise ConfigError(f"method plug-in {method_id!r} ({eps[method_id].value}) cannot be imported: {e}") from e
        method = _method_of(loaded, f"entry point {method_id!r} ({eps[method_id].value})")
    if method.id != method_id:
        raise ConfigError(f"method {method_id!r} resolved to a Method whose id is {method.id!r}; they must match")
    return method


def method_for_config(config) -> Method:
    """The method a config names (``config.method``, with ``config.method_module`` when set)."""
    if not config.get("method"):
        raise ConfigError("config.method is empty; a method config must set it (e.g. 'baseline_sr')")
    return get_method(str(config.method), module=str(config.get("method_module", "") or ""))


__all__ = ["ENTRY_POINT_GROUP", "get_method", "load_method_module", "method_for_config", "method_names"]
