"""``TrainState``: the one state type of the engine (documented in ``docs/engine.md``).

Networks are authored as Flax NNX modules and split once: the ``GraphDef`` (static structure) stays
outside the state, the parameters travel inside it as plain nested dicts of arrays ("pure dicts",
keys are attribute names / list indices), other module variables (batch statistics, spectral-norm
vectors) in ``extras['model_state']``, and the step re-creates the modules with ``nnx.merge``.
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
      extras: state that is neither parameters nor optimizer state: ``model_state`` (non-``Param``
        variables of the networks, e.g. BatchNorm statistics), the contrastive queue and momentum
        key encoder... Empty dict when unused.
    """

    step: jax.Array
    params: dict[str, Any]
    opt_state: dict[str, Any]
    ema_params: dict[str, Any]
    rng: jax.Array
    extras: dict[str, Any]


def split_module(module: nnx.Module) -> tuple[nnx.GraphDef, dict[str, Any], dict[str, Any]]:
    """``(graphdef, params, model_state)`` of an NNX module, both states as pure dicts.

    ``params``: the ``nnx.Param`` variables (trained). ``model_state``: every other variable
    (BatchNorm statistics, spectral-norm power-iteration vectors, RNG streams...), carried from step
    to step in ``TrainState.extras['model_state']`` and updated by the forward passes of the step.
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def graphdefs_of(networks: Mapping[str, Callable[[nnx.Rngs], nnx.Module]]) -> dict[str, nnx.GraphDef]:
    """GraphDefs of the networks, from abstract (shape-only) instances: nothing is allocated."""
    out = {}
    for name, ctor in networks.items():
        abstract = nnx.eval_shape(lambda c=ctor: c(nnx.Rngs(0)))
        out[name], _, _ = split_module(abstract)
    return out


def merge(graphdef: nnx.GraphDef, params: Any, model_state: Any | None = None) -> nnx.Module:
    """Re-create a module from its GraphDef, a pure dict of parameters and its other state (inside jit)."""
    return nnx.merge(graphdef, params, model_state if model_state is not None else {})


def init_params(
    networks: Mapping[str, Callable[[nnx.Rngs], nnx.Module]], key: jax.Array
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fresh ``(params, model_state)`` of every network; network ``i`` (sorted by name) uses
    ``fold_in(key, i)``. ``model_state`` only lists networks that have non-parameter state."""
    params, model_state = {}, {}
    for i, name in enumerate(sorted(networks)):
        module = networks[name](nnx.Rngs(params=jax.random.fold_in(key, i)))
        _, params[name], rest = split_module(module)
        if jax.tree_util.tree_leaves(rest):
            model_state[name] = rest
    return params, model_state


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
    ``init_extras(params, key)``. Networks with non-parameter state get it in
    ``extras['model_state'][name]``.
    """

    def init(root_key: jax.Array) -> TrainState:
        params, model_state = init_params(networks, jax.random.fold_in(root_key, 0))
        opt_state = {name: opt.tx.init(params[name]) for name, opt in optimizers.items()}
        ema = {name: jax.tree.map(jnp.copy, params[name]) for name in ema_networks}
        extras = init_extras(params, jax.random.fold_in(root_key, 2)) if init_extras else {}
        if model_state:
            extras = {**extras, "model_state": model_state}
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=opt_state,
            ema_params=ema,
            rng=jax.random.fold_in(root_key, 1),
            extras=extras,
        )

    return init
