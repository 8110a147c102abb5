"""Find and run a config file: ``configs/<id>.py:<arg>`` by path, or ``<id>:<arg>`` by method id.

An id resolves to the config files shipped inside the installed package (``restore_jax.configs``,
built from the repository's top-level ``configs/`` folder), so ``--config zsm:paper`` works from
any working directory, with or without a checkout. A path (``configs/zsm.py``, ``./my_cfg.py``)
is taken relative to the working directory. Nothing here edits ``sys.path``: a config file imports
only ``restore_jax.config`` (and, for a user's method, the user's own installed package).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import pathlib

from ml_collections import ConfigDict

from restore_jax.errors import ConfigError

_SHIPPED = "restore_jax.configs"


def _shipped_dir() -> pathlib.Path | None:
    try:
        return pathlib.Path(str(importlib.resources.files(_SHIPPED)))
    except ModuleNotFoundError:  # pragma: no cover - a broken installation
        return None


def available_configs() -> list[str]:
    """Ids of the method configs shipped with the package (``configs/<id>.py``)."""
    folder = _shipped_dir()
    if folder is None:
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def resolve_config_path(path_text: str) -> pathlib.Path:
    """The config file for a path (``configs/x.py``, ``x.py``) or a shipped id (``x``)."""
    given = pathlib.Path(path_text).expanduser()
    candidates = [given]
    shipped = _shipped_dir()
    if shipped is not None and not given.is_absolute():
        name = given.name if path_text.endswith(".py") else f"{path_text}.py"
        if "/" not in path_text or path_text.startswith("configs/"):
            candidates.append(shipped / name)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    shipped_list = ", ".join(available_configs()) or "none found"
    raise ConfigError(
        f"config {path_text!r} not found: give a config file path (e.g. configs/zsm.py) or a method id "
        f"shipped with restore_jax ({shipped_list})"
    )


def load_config_file(spec: str) -> ConfigDict:
    """Run ``get_config(arg)`` of ``'<path or id>[:<arg>]'``; no overrides, no method defaults."""
    path_text, _, arg = spec.partition(":")
    path = resolve_config_path(path_text)
    module_name = f"_restore_jax_config_{path.stem}"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec_obj)
    try:
        spec_obj.loader.exec_module(module)
    except ConfigError:
        raise
    except ImportError as e:
        raise ConfigError(f"config file {path} failed to import: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(arg) function")
    config = module.get_config(arg or None)
    if not isinstance(config, ConfigDict):
        raise ConfigError(f"{path}: get_config must return an ml_collections.ConfigDict, got {type(config).__name__}")
    return config
