"""Pytree paths as '/'-joined strings: the names sharding rules and lr multipliers match against."""

from __future__ import annotations

from typing import Any

import jax


def key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def path_str(path: tuple) -> str:
    """``(DictKey('G'), DictKey('conv'), DictKey('kernel'))`` -> ``'G/conv/kernel'``."""
    return "/".join(key_name(k) for k in path)


def tree_paths(tree: Any) -> list[str]:
    """The '/'-joined path of every leaf of ``tree`` in flattening order."""
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
