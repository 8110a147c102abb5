"""``TrainState``: the one state type of the engine (documented in ``docs/engine.md``).

Networks are authored as Flax NNX modules and split once: the ``GraphDef`` (static structure) stays
outside the state, the parameters travel inside it as plain nested dicts of arrays ("pure dicts",
keys are attribute names / list indices), and the step re-creates the modules with ``nnx.merge``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
from flax import nnx


@flax.struct.dataclass
class TrainState:
    """Everything a training run carries from step to step (a pytree; checkpointed as one item).

    Attributes:
      step: int32 scalar, number of completed train steps.
      params: ``{network: pure dict of float32 arrays}`` (e.g. ``{'G': ..., 'D': ...}``).
      opt_state: ``{network: optax state}`` for every trained network.
      ema_params: ``{network: pure dict}`` exponential moving averages (empty when EMA is off).
      rng: typed PRNG key, the run's root; step ``s`` uses ``jax.random.fold_in(rng, s)``.
      extras: method state that is neither parameters nor optimizer state (e.g. the contrastive
        queue and momentum key encoder). Empty dict when unused.
    """

    step: jax.Array
    params: dict[str, Any]
    opt_state: dict[str, Any]
    ema_params: dict[str, Any]
    rng: jax.Array
    extras: dict[str, Any]


def split_module(module: nnx.Module) -> tuple[nnx.GraphDef, dict[str, Any]]:
    """``(graphdef, params)`` of an NNX module; params as a pure dict. Only ``nnx.Param`` state is allowed."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    leftovers = jax.tree_util.tree_leaves(rest)
    if leftovers:
        raise ValueError(
            f"{type(module).__name__} holds non-parameter state ({len(leftovers)} arrays, e.g. batch "
            "statistics or RNG streams); the engine's steps train nnx.Param only: keep such state out "
            "of the module or in TrainState.extras"
        )
    return graphdef, nnx.to_pure_dict(params)


def graphdefs_of(networks: Mapping[str, Callable[[nnx.Rngs], nnx.Module]]) -> dict[str, nnx.GraphDef]:
    """GraphDefs of the networks, from abstract (shape-only) instances: nothing is allocated."""
    out = {}
    for name, ctor in networks.items():
        abstract = nnx.eval_shape(lambda c=ctor: c(nnx.Rngs(0)))
        out[name], _ = split_module(abstract)
    return out


def merge(graphdef: nnx.GraphDef, params: Any) -> nnx.Module:
    """Re-create a module from its GraphDef and a pure dict of parameters (inside jit)."""
    return nnx.merge(graphdef, params)


def init_params(networks: Mapping[str, Callable[[nnx.Rngs], nnx.Module]], key: jax.Array) -> dict[str, Any]:
    """Fresh parameters of every network; network ``i`` (sorted by name) uses ``fold_in(key, i)``."""
    params = {}
    for i, name in enumerate(sorted(networks)):
        module = networks[name](nnx.Rngs(params=jax.random.fold_in(key, i)))
        _, params[name] = split_module(module)
    return params


def make_init_fn(
    networks: Mapping[str, Callable[[nnx.Rngs], nnx.Module]],
    optimizers: Mapping[str, Any],
    *,
    ema_networks: tuple[str, ...] = (),
    init_extras: Callable[[dict[str, Any], jax.Array], dict[str, Any]] | None = None,
) -> Callable[[jax.Array], TrainState]:
    """``init(root_key) -> TrainState``: a pure function (jit it with ``out_shardings``).

    ``root_key`` is split by purpose: ``fold_in(root, 0)`` initialises parameters,
    ``fold_in(root, 1)`` becomes ``TrainState.rng`` (the per-step keys), ``fold_in(root, 2)`` seeds
    ``init_extras(params, key)``.
    """

    def init(root_key: jax.Array) -> TrainState:
        params = init_params(networks, jax.random.fold_in(root_key, 0))
        opt_state = {name: opt.tx.init(params[name]) for name, opt in optimizers.items()}
        ema = {name: jax.tree.map(jnp.copy, params[name]) for name in ema_networks}
        extras = init_extras(params, jax.random.fold_in(root_key, 2)) if init_extras else {}
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=opt_state,
            ema_params=ema,
            rng=jax.random.fold_in(root_key, 1),
            extras=extras,
        )

    return init


def count_params(params: Any) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
