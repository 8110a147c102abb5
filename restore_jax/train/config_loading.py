"""Load ``configs/<method>.py:<arg>`` files and apply ``--config.x=y`` overrides.

The ``configs`` package lives next to ``restore_jax`` in the repository (it is not installed), so
the loader puts the repository root on ``sys.path`` when ``import configs`` would fail.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
from collections.abc import Sequence

from restore_jax.train.errors import ConfigError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def ensure_configs_importable(extra_root: pathlib.Path | None = None) -> None:
    """Make ``import configs`` work (repository root, or ``extra_root``, on ``sys.path``)."""
    try:
        importlib.import_module("configs.common")
        return
    except ImportError:
        pass
    for root in (extra_root, REPO_ROOT):
        if root is not None and (root / "configs" / "common.py").is_file() and str(root) not in sys.path:
            sys.path.insert(0, str(root))
    importlib.import_module("configs.common")


def available_configs() -> list[str]:
    """``configs/<name>.py`` files of the repository (method configs)."""
    folder = REPO_ROOT / "configs"
    return sorted(p.stem for p in folder.glob("*.py") if p.stem not in ("common", "__init__"))


def resolve_config_path(path_text: str) -> pathlib.Path:
    """The config file for ``configs/x.py``, ``x.py`` or a bare method id ``x``; ConfigError if none."""
    candidates = [pathlib.Path(path_text).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(REPO_ROOT / path_text)
        if not path_text.endswith(".py"):
            candidates.append(REPO_ROOT / "configs" / f"{path_text}.py")
        else:
            candidates.append(REPO_ROOT / "configs" / pathlib.Path(path_text).name)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise ConfigError(
        f"config file {path_text!r} not found; available method configs: "
        f"{', '.join('configs/' + n + '.py' for n in available_configs())}"
    )


def load_config(spec: str, overrides: Sequence[str] | Sequence[tuple[str, str]] = ()):
    """``'configs/baseline_sr.py:demo'`` (+ overrides) -> ``ConfigDict`` (not yet device-validated)."""
    path_text, _, arg = spec.partition(":")
    path = resolve_config_path(path_text)
    ensure_configs_importable(path.parent.parent)
    from configs import common

    module_name = f"_restore_jax_config_{path.stem}"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec_obj)
    spec_obj.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(arg) function")
    config = module.get_config(arg or None)
    if overrides:
        config = common.apply_overrides(config, overrides)
    return config
