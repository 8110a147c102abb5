"""Parameter counting for NNX modules and parameter trees (one helper for models, engine and benches)."""

from __future__ import annotations

import math
from typing import Any

import jax
from flax import nnx


def count_params(module_or_tree: Any) -> int:
    """Number of trainable scalars.

    * an ``nnx.Module`` (concrete or from ``nnx.eval_shape``): its ``nnx.Param`` leaves only, so
      non-parameter state (spectral-norm ``u`` vectors, BatchNorm statistics, RNG counters) is
      not counted;
    * anything else (a pure dict of parameters such as ``TrainState.params``, an ``nnx.State``, a
      list of arrays): every leaf of the pytree.

    Leaves may be arrays or ``jax.ShapeDtypeStruct``; each counts ``prod(shape)`` (1 for a scalar).
    """
    tree = nnx.state(module_or_tree, nnx.Param) if isinstance(module_or_tree, nnx.Module) else module_or_tree
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))
