"""Mixed precision policy: parameters and optimizer state in float32, compute in ``compute_dtype``.

The step casts a float32 copy of the parameters (and the batch's input keys) to the compute dtype
before merging the NNX modules; gradients flow back through the cast to the float32 master
parameters. Losses cast to float32 before reducing (see :mod:`restore_jax.losses`). bfloat16 needs
no loss scaling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def dtype_from_name(name: str) -> jnp.dtype:
    """``'float32' | 'bfloat16'`` -> dtype; other names are errors."""
    try:
        return jnp.dtype(_DTYPES[name])
    except KeyError:
        raise ValueError(f"unknown compute dtype {name!r}; choose one of {sorted(_DTYPES)}") from None


def cast_floating(tree: Any, dtype: jnp.dtype) -> Any:
    """Cast every floating-point leaf of ``tree`` to ``dtype`` (integers and keys untouched)."""

    def cast(x):
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype:
            return x.astype(dtype)
        return x

    return jax.tree.map(cast, tree)


def cast_inputs(batch: Mapping[str, Any], keys: Iterable[str], dtype: jnp.dtype) -> dict[str, Any]:
    """Copy of ``batch`` with the floating arrays under ``keys`` cast to ``dtype`` (targets stay f32)."""
    out = dict(batch)
    for k in keys:
        if k in out:
            out[k] = cast_floating(out[k], dtype)
    return out
