"""Step builders: pure ``step(state, batch) -> (state, metrics)`` functions, one per step kind.

All builders share these rules:

- the step's key is ``jax.random.fold_in(state.rng, state.step)``, split by purpose with more
  ``fold_in``; the result is a pure function of ``(seed, step)``, so a resumed run draws the same keys;
- parameters are float32; the loss sees modules merged from a copy cast to ``compute_dtype`` and the
  batch's ``input_keys`` cast likewise; losses reduce in float32;
- gradient accumulation (``grad_accum_steps = n``) runs ``lax.scan`` over ``n`` microbatches: example
  ``j`` of the batch goes to microbatch ``j % n``, which keeps every device's rows on that device;
  the accumulated gradient is the mean over microbatches (= the full-batch gradient);
- a non-finite loss or gradient norm never reaches the state: the update is replaced by the old
  values (``jnp.where``) and ``metrics['finite']`` is 0; the host loop then stops or skips
  according to ``train.nan_policy``;
- ``metrics`` is a flat dict of float32 scalars (losses, ``grad_norm/<net>``, ``param_norm/<net>``,
  ``lr/<net>``, ``finite``).

The builders return plain Python functions; the loop compiles them once with
``jax.jit(step, in_shardings=(state, batch), out_shardings=(state, replicated), donate_argnums=0)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from restore_jax.losses.contrastive import enqueue, info_nce, l2_normalize
from restore_jax.train.optim import Optimizer
from restore_jax.train.precision import cast_floating, cast_inputs, dtype_from_name
from restore_jax.train.state import TrainState

Step = Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """Options shared by every step kind (from ``config.train``)."""

    compute_dtype: str = "float32"
    grad_accum_steps: int = 1
    ema_decay: float = 0.0
    input_keys: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config, input_keys: tuple[str, ...] = ()) -> "StepOptions":
        t = config.train
        return cls(
            compute_dtype=t.compute_dtype,
            grad_accum_steps=int(t.grad_accum_steps),
            ema_decay=float(t.ema_decay),
            input_keys=tuple(input_keys),
        )


# --------------------------------------------------------------------------------------------
# Shared pieces.


def select_tree(ok: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``ok`` else ``old``, leaf by leaf."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def split_microbatches(batch: Mapping[str, jax.Array], n: int) -> dict[str, jax.Array]:
    """``[B, ...] -> [n, B / n, ...]`` with example ``j`` in microbatch ``j % n`` (device-local)."""

    def split(x):
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} is not divisible into {n} microbatches")
        return jnp.swapaxes(x.reshape((x.shape[0] // n, n) + x.shape[1:]), 0, 1)

    return {k: split(v) for k, v in batch.items()}


MODEL_STATE = "model_state"  # key of the networks' non-Param variables in TrainState.extras


def merge_models(
    graphdefs: Mapping[str, nnx.GraphDef],
    params: Mapping[str, Any],
    dtype,
    model_state: Mapping[str, Any] | None = None,
    *,
    train: bool = True,
) -> dict[str, nnx.Module]:
    """Modules re-created from float32 params cast to the compute dtype (plus their other state),
    switched to training (``.train()``) or evaluation (``.eval()``) mode."""
    model_state = model_state or {}
    models = {}
    for name in params:
        module = nnx.merge(graphdefs[name], cast_floating(params[name], dtype), model_state.get(name, {}))
        module.train() if train else module.eval()
        models[name] = module
    return models


def updated_model_state(models: Mapping[str, nnx.Module], model_state: Mapping[str, Any]) -> dict[str, Any]:
    """The non-Param variables of ``models`` after a forward pass, in their stored dtypes."""
    out = {}
    for name, old in model_state.items():
        new = nnx.to_pure_dict(nnx.state(models[name], nnx.Not(nnx.Param)))
        out[name] = jax.tree.map(lambda n, o: jnp.asarray(n).astype(o.dtype), new, old)
    return out


def _f32_metrics(aux: Mapping[str, Any]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in aux.items()}


def loss_and_grads(
    graphdefs: Mapping[str, nnx.GraphDef],
    loss_fn: Callable,
    params: Mapping[str, Any],
    network: str,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    opts: StepOptions,
    model_state: Mapping[str, Any] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array], Any, dict[str, Any]]:
    """``(loss, aux, grads, model_state)`` of ``loss_fn`` w.r.t. ``params[network]``.

    The other networks are constants; ``model_state`` (non-Param variables of any network) goes in
    and comes out updated by the forward pass(es), threaded through the microbatches.
    """
    dtype = dtype_from_name(opts.compute_dtype)
    frozen = {k: jax.lax.stop_gradient(v) for k, v in params.items() if k != network}
    model_state = dict(model_state or {})

    def objective(p, ms, mb, k):
        models = merge_models(graphdefs, {**frozen, network: p}, dtype, ms)
        loss, aux = loss_fn(models, cast_inputs(mb, opts.input_keys, dtype), k)
        return jnp.asarray(loss, jnp.float32), (_f32_metrics(aux), updated_model_state(models, ms))

    value_and_grad = jax.value_and_grad(objective, has_aux=True)
    n = opts.grad_accum_steps
    if n == 1:
        (loss, (aux, new_ms)), grads = value_and_grad(params[network], model_state, batch, key)
        return loss, aux, grads, new_ms

    def body(carry, xs):
        i, mb = xs
        gsum, lsum, ms = carry
        (loss, (aux, ms)), grads = value_and_grad(params[network], ms, mb, jax.random.fold_in(key, i))
        return (jax.tree.map(jnp.add, gsum, grads), lsum + loss, ms), aux

    zeros = jax.tree.map(jnp.zeros_like, params[network])
    micro = split_microbatches(batch, n)
    init = (zeros, jnp.zeros((), jnp.float32), model_state)
    (gsum, lsum, new_ms), auxs = jax.lax.scan(body, init, (jnp.arange(n), micro))
    grads = jax.tree.map(lambda g: g / n, gsum)
    return lsum / n, jax.tree.map(lambda a: jnp.mean(a, axis=0), auxs), grads, new_ms


def _with_model_state(extras: Mapping[str, Any], ok: jax.Array, new_ms: Mapping[str, Any]) -> dict[str, Any]:
    """``extras`` with the updated model state (kept only for finite steps)."""
    if MODEL_STATE not in extras:
        return dict(extras)
    return {**extras, MODEL_STATE: select_tree(ok, new_ms, extras[MODEL_STATE])}


def apply_update(opt: Optimizer, params: Any, opt_state: Any, grads: Any, ok: jax.Array):
    """One optimizer update, kept only when ``ok``; returns ``(params, opt_state, lr_used)``."""
    lr = opt.lr_at(opt_state)
    updates, new_state = opt.tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    return select_tree(ok, new_params, params), select_tree(ok, new_state, opt_state), lr


def is_finite(loss: jax.Array, grad_norm: jax.Array) -> jax.Array:
    return jnp.isfinite(loss) & jnp.isfinite(grad_norm)


def ema_update(ema_params: Mapping[str, Any], params: Mapping[str, Any], decay: float) -> dict[str, Any]:
    """``ema <- decay * ema + (1 - decay) * params`` for every network that has an EMA copy."""
    return {
        name: jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params[name])
        for name, ema in ema_params.items()
    }


def _network_metrics(name: str, grads: Any, params: Any, lr: jax.Array) -> dict[str, jax.Array]:
    return {
        f"grad_norm/{name}": optax.tree.norm(grads).astype(jnp.float32),
        f"param_norm/{name}": optax.tree.norm(params).astype(jnp.float32),
        f"lr/{name}": lr,
    }


# --------------------------------------------------------------------------------------------
# Supervised.


def make_supervised_step(
    graphdefs: Mapping[str, nnx.GraphDef],
    loss_fn: Callable,
    optimizers: Mapping[str, Optimizer],
    opts: StepOptions,
    *,
    network: str = "G",
) -> Step:
    """One loss, one trained network: ``loss_fn(models, batch, rng) -> (loss, aux)``."""
    opt = optimizers[network]

    def step(state: TrainState, batch: Mapping[str, jax.Array]):
        key = jax.random.fold_in(state.rng, state.step)
        ms = state.extras.get(MODEL_STATE, {})
        loss, aux, grads, new_ms = loss_and_grads(graphdefs, loss_fn, state.params, network, batch, key, opts, ms)
        gnorm = optax.tree.norm(grads)
        ok = is_finite(loss, gnorm)
        p, o, lr = apply_update(opt, state.params[network], state.opt_state[network], grads, ok)
        params = {**state.params, network: p}
        metrics = {"loss": loss, **aux, **_network_metrics(network, grads, p, lr), "finite": ok.astype(jnp.float32)}
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state={**state.opt_state, network: o},
            ema_params=ema_update(state.ema_params, params, opts.ema_decay),
            extras=_with_model_state(state.extras, ok, new_ms),
        )
        return new_state, metrics

    return step


# --------------------------------------------------------------------------------------------
# GAN.


def make_gan_step(
    graphdefs: Mapping[str, nnx.GraphDef],
    d_loss_fn: Callable,
    g_loss_fn: Callable,
    optimizers: Mapping[str, Optimizer],
    opts: StepOptions,
    *,
    d_steps_per_step: int = 1,
    g_every: int = 1,
) -> Step:
    """Discriminator ``'D'`` and generator ``'G'`` with separate optimizers in one step.

    Every step runs ``d_steps_per_step`` D updates (G fixed; D-update ``i`` uses key
    ``fold_in(step_key, i)``), then — on steps with ``step % g_every == 0`` (``lax.cond``) — one G
    update against the updated D. Metrics ``g_updated`` (0/1) and the G losses (0 when skipped) make
    the ratio visible.
    """
    if d_steps_per_step < 1 or g_every < 1:
        raise ValueError("d_steps_per_step and g_every must be >= 1")
    opt_d, opt_g = optimizers["D"], optimizers["G"]

    def step(state: TrainState, batch: Mapping[str, jax.Array]):
        key = jax.random.fold_in(state.rng, state.step)
        params, opt_state = dict(state.params), dict(state.opt_state)
        ms = state.extras.get(MODEL_STATE, {})
        ok_all = jnp.array(True)
        metrics: dict[str, jax.Array] = {}
        for i in range(d_steps_per_step):
            loss_d, aux_d, grads_d, new_ms = loss_and_grads(
                graphdefs, d_loss_fn, params, "D", batch, jax.random.fold_in(key, i), opts, ms
            )
            ok = is_finite(loss_d, optax.tree.norm(grads_d))
            params["D"], opt_state["D"], lr_d = apply_update(opt_d, params["D"], opt_state["D"], grads_d, ok)
            ms = select_tree(ok, new_ms, ms)
            ok_all = ok_all & ok
        metrics.update({"loss/D": loss_d, **aux_d, **_network_metrics("D", grads_d, params["D"], lr_d)})

        g_key = jax.random.fold_in(key, d_steps_per_step)
        frozen = dict(params)

        def g_update(p_g, o_g, ms):
            loss_g, aux_g, grads_g, new_ms = loss_and_grads(
                graphdefs, g_loss_fn, {**frozen, "G": p_g}, "G", batch, g_key, opts, ms
            )
            ok = is_finite(loss_g, optax.tree.norm(grads_g))
            p_g, o_g, lr_g = apply_update(opt_g, p_g, o_g, grads_g, ok)
            m = {"loss/G": loss_g, **aux_g, **_network_metrics("G", grads_g, p_g, lr_g)}
            return p_g, o_g, select_tree(ok, new_ms, ms), m, ok

        def g_skip(p_g, o_g, ms):
            shapes = jax.eval_shape(g_update, p_g, o_g, ms)[3]
            m = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            m["param_norm/G"] = optax.tree.norm(p_g).astype(jnp.float32)
            return p_g, o_g, ms, m, jnp.array(True)

        if g_every == 1:  # no lax.cond: XLA:CPU ran a conditional G update ~2.5x slower (CFMD generator)
            do_g = jnp.array(True)
            params["G"], opt_state["G"], ms, m_g, ok_g = g_update(params["G"], opt_state["G"], ms)
        else:
            do_g = (state.step % g_every) == 0
            params["G"], opt_state["G"], ms, m_g, ok_g = jax.lax.cond(
                do_g, g_update, g_skip, params["G"], opt_state["G"], ms
            )
        ok_all = ok_all & ok_g
        metrics.update(m_g)
        metrics["g_updated"] = do_g.astype(jnp.float32)
        metrics["finite"] = ok_all.astype(jnp.float32)
        extras = {**state.extras, MODEL_STATE: ms} if MODEL_STATE in state.extras else state.extras
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            ema_params=ema_update(state.ema_params, params, opts.ema_decay),
            extras=extras,
        )
        return new_state, metrics

    return step


# --------------------------------------------------------------------------------------------
# Contrastive (MoCo-style: momentum key encoder + queue in extras).


def contrastive_init_extras(network: str, queue_size: int, embed_dim: int) -> Callable:
    """``init_extras(params, key)`` for :func:`make_contrastive_step`: key encoder copy + random queue."""

    def init(params: Mapping[str, Any], key: jax.Array) -> dict[str, Any]:
        queue = l2_normalize(jax.random.normal(key, (queue_size, embed_dim), jnp.float32))
        return {
            "key_params": jax.tree.map(jnp.copy, params[network]),
            "queue": queue,
            "queue_ptr": jnp.zeros((), jnp.int32),
        }

    return init


def make_contrastive_step(
    graphdefs: Mapping[str, nnx.GraphDef],
    embed_fn: Callable,
    optimizers: Mapping[str, Optimizer],
    opts: StepOptions,
    *,
    network: str,
    view_keys: tuple[str, str],
    temperature: float,
    momentum: float,
) -> Step:
    """InfoNCE between query view ``view_keys[0]`` (trained encoder) and key view ``view_keys[1]``.

    The key encoder (``extras['key_params']``) is a momentum copy of the trained encoder; negatives
    come from ``extras['queue']``, which then receives this batch's keys (ring buffer,
    ``extras['queue_ptr']``). ``embed_fn(models, x, rng) -> [B, D]``.
    """
    if opts.grad_accum_steps != 1:
        raise ValueError("the contrastive step needs grad_accum_steps == 1 (the queue takes whole batches)")
    opt = optimizers[network]
    q_key, k_key = view_keys
    opts = dataclasses.replace(opts, input_keys=tuple(sorted(set(opts.input_keys) | set(view_keys))))

    def step(state: TrainState, batch: Mapping[str, jax.Array]):
        key = jax.random.fold_in(state.rng, state.step)
        dtype = dtype_from_name(opts.compute_dtype)
        extras = state.extras
        ms = extras.get(MODEL_STATE, {})
        key_models = merge_models(graphdefs, {network: extras["key_params"]}, dtype, ms)
        keys = embed_fn(key_models, cast_inputs(batch, (k_key,), dtype)[k_key], jax.random.fold_in(key, 1))
        keys = jax.lax.stop_gradient(l2_normalize(keys))
        queue = extras["queue"]

        def loss_fn(models, b, rng):
            q = embed_fn(models, b[q_key], rng)
            loss = info_nce(q, keys, queue, temperature)
            return loss, {"loss/info_nce": loss}

        loss, aux, grads, new_ms = loss_and_grads(
            graphdefs, loss_fn, state.params, network, batch, jax.random.fold_in(key, 0), opts, ms
        )
        gnorm = optax.tree.norm(grads)
        ok = is_finite(loss, gnorm)
        p, o, lr = apply_update(opt, state.params[network], state.opt_state[network], grads, ok)
        key_params = jax.tree.map(lambda kp, qp: momentum * kp + (1.0 - momentum) * qp, extras["key_params"], p)
        new_queue, new_ptr = enqueue(queue, extras["queue_ptr"], keys)
        new_extras = {
            **_with_model_state(extras, ok, new_ms),
            "key_params": key_params,
            "queue": jnp.where(ok, new_queue, queue),
            "queue_ptr": jnp.where(ok, new_ptr, extras["queue_ptr"]),
        }
        params = {**state.params, network: p}
        metrics = {"loss": loss, **aux, **_network_metrics(network, grads, p, lr), "finite": ok.astype(jnp.float32)}
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state={**state.opt_state, network: o},
            ema_params=ema_update(state.ema_params, params, opts.ema_decay),
            extras=new_extras,
        )
        return new_state, metrics

    return step


# --------------------------------------------------------------------------------------------
# Inference (image grids, evaluation).


def make_predict_fn(
    graphdefs: Mapping[str, nnx.GraphDef],
    predict: Callable,
    *,
    compute_dtype: str = "float32",
    input_keys: tuple[str, ...] = (),
) -> Callable[[Mapping[str, Any], Mapping[str, jax.Array]], jax.Array]:
    """``predict_fn(variables, batch) -> float32 output`` for the recipe's ``predict``; jit it.

    ``variables = {'params': {net: params}, 'model_state': {net: state}}``; modules run in
    evaluation mode (``.eval()``: running statistics, no state updates).
    """
    dtype = dtype_from_name(compute_dtype)

    def fn(variables, batch):
        models = merge_models(graphdefs, variables["params"], dtype, variables.get(MODEL_STATE), train=False)
        return jnp.asarray(predict(models, cast_inputs(batch, input_keys, dtype)), jnp.float32)

    return fn


def build_step(recipe, graphdefs, optimizers, config) -> Step:
    """The step of ``recipe.step_kind`` with options from ``config``."""
    opts = StepOptions.from_config(config, recipe.input_keys)
    kind = recipe.step_kind
    if kind == "supervised":
        return make_supervised_step(graphdefs, recipe.losses[recipe.primary], optimizers, opts, network=recipe.primary)
    if kind == "gan":
        return make_gan_step(
            graphdefs,
            recipe.losses["D"],
            recipe.losses["G"],
            optimizers,
            opts,
            d_steps_per_step=int(config.gan.d_steps_per_step),
            g_every=int(config.gan.g_every),
        )
    if kind == "contrastive":
        c = config.contrastive
        return make_contrastive_step(
            graphdefs,
            recipe.losses[recipe.primary],
            optimizers,
            opts,
            network=recipe.primary,
            view_keys=tuple(recipe.view_keys),
            temperature=float(c.temperature),
            momentum=float(c.momentum),
        )
    raise ValueError(f"unknown step kind {kind!r}")
