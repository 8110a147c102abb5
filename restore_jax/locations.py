"""Where the optional shared data and weights are, for a checkout and for an installed wheel.

One place answers "where is ``shared/``" and "what is a relative data path relative to", so the
library works the same from a repository checkout and from an installed package:

- ``RESTORE_JAX_SHARED`` (environment) names the ``shared/`` folder explicitly;
- otherwise, when the package runs from a checkout, ``<checkout>/../shared``;
- otherwise ``./shared`` or ``../shared`` of the working directory, whichever exists.

Relative paths in configs (e.g. ``data/Vid4/calendar``) resolve against the working directory, and
against the checkout root when they do not exist there (the repository's documented examples).
"""

from __future__ import annotations

import os
import pathlib

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent


def checkout_root() -> pathlib.Path | None:
    """The repository root when ``restore_jax`` is imported from a checkout (not from a wheel)."""
    root = _PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "restore_jax").is_dir() else None


def shared_dir() -> pathlib.Path:
    """The ``shared/`` folder (may not exist: callers check and say what to provide)."""
    env = os.environ.get("RESTORE_JAX_SHARED")
    if env:
        return pathlib.Path(env).expanduser()
    root = checkout_root()
    if root is not None and (root.parent / "shared").is_dir():
        return root.parent / "shared"
    cwd = pathlib.Path.cwd()
    for candidate in (cwd / "shared", cwd.parent / "shared"):
        if candidate.is_dir():
            return candidate
    return (root.parent if root is not None else cwd) / "shared"


def shared_data(*parts: str) -> pathlib.Path:
    """``<shared>/data/<parts...>``."""
    return shared_dir().joinpath("data", *parts)


def resolve_user_path(path: str | os.PathLike) -> pathlib.Path:
    """An absolute path as is; a relative one against the working directory, falling back to the
    checkout root when it exists only there."""
    p = pathlib.Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    root = checkout_root()
    if root is not None and (root / p).exists():
        return root / p
    return p
