"""Optimizers and learning-rate schedules from config (one optimizer per network).

The chain is, in order: optional global-norm clipping -> Adam (or AdamW: Adam + decoupled weight
decay on arrays with ndim > 1) -> per-path learning-rate multipliers (regex on the parameter path,
e.g. ``(('offset', 0.1),)`` for deformable offset convs) -> ``-schedule(count)``.

Schedules (all with an optional linear warm-up from 0 over ``warmup_steps``; steps count this
network's updates):

- ``constant``;
- ``cosine``: cosine decay to ``min_lr_ratio * lr`` over the remaining steps;
- ``cosine_restarts``: SGDR — consecutive cosine cycles of ``restart_periods`` steps (or
  ``num_restarts`` equal cycles), each peaking at ``lr * restart_weights[i]``;
- ``exponential``: per-epoch staircase decay ``lr * decay_rate ** floor(step / steps_per_epoch)``.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from restore_jax.train.paths import path_str


def make_schedule(cfg, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule of optimizer config ``cfg`` for ``total_steps`` updates."""
    lr, warmup = float(cfg.lr), int(cfg.warmup_steps)
    if warmup < 0 or (warmup >= max(total_steps, 1) and cfg.schedule != "constant"):
        raise ValueError(f"warmup_steps={warmup} must be in [0, total steps={total_steps})")
    rest = max(total_steps - warmup, 1)
    kind = cfg.schedule
    if kind == "constant":
        main = optax.constant_schedule(lr)
    elif kind == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps=rest, alpha=float(cfg.min_lr_ratio))
    elif kind == "cosine_restarts":
        periods = [int(p) for p in cfg.restart_periods]
        if not periods:
            n = max(int(cfg.num_restarts), 1)
            periods = [rest // n + (1 if i < rest % n else 0) for i in range(n)]
        weights = [float(w) for w in cfg.restart_weights] or [1.0] * len(periods)
        if len(weights) != len(periods):
            raise ValueError("restart_weights and restart_periods must have the same length")
        cycles = [
            optax.cosine_decay_schedule(lr * w, decay_steps=max(p, 1), alpha=float(cfg.min_lr_ratio))
            for p, w in zip(periods, weights)
        ]
        boundaries = [sum(periods[: i + 1]) for i in range(len(periods) - 1)]
        # After the last period the last cycle stays at its floor (optax clamps the count).
        main = optax.join_schedules(cycles, boundaries) if boundaries else cycles[0]
    elif kind == "exponential":
        main = optax.exponential_decay(
            lr, transition_steps=int(cfg.steps_per_epoch), decay_rate=float(cfg.decay_rate), staircase=True
        )
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    if warmup > 0:
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
    return main


def _multiplier(path: str, rules) -> float:
    for pattern, mult in rules:
        if re.search(pattern, path):
            return float(mult)
    return 1.0


def scale_by_path_regex(rules) -> optax.GradientTransformation:
    """Multiply each update by the multiplier of the first ``(regex, multiplier)`` matching its path."""
    rules = tuple((str(p), float(m)) for p, m in rules)

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params

        def scale(path, u):
            m = _multiplier(path_str(path), rules)
            return u if m == 1.0 else u * jnp.asarray(m, u.dtype)

        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def _decay_mask(params):
    return jax.tree.map(lambda p: p.ndim > 1, params)


class Optimizer(NamedTuple):
    """An optax transformation plus its schedule (``lr_at`` reads the current rate from the state)."""

    tx: optax.GradientTransformation
    schedule: optax.Schedule

    def lr_at(self, opt_state: Any) -> jax.Array:
        """Learning rate the next update will use (the chain's last state counts this network's updates)."""
        return jnp.asarray(self.schedule(opt_state[-1].count), jnp.float32)


def make_optimizer(cfg, total_steps: int) -> Optimizer:
    """Build the optimizer of config section ``cfg`` (see the module docstring)."""
    schedule = make_schedule(cfg, total_steps)
    chain = []
    if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
        chain.append(optax.clip_by_global_norm(float(cfg.grad_clip_norm)))
    if cfg.name not in ("adam", "adamw"):
        raise ValueError(f"unknown optimizer {cfg.name!r}; choose 'adam' or 'adamw'")
    chain.append(optax.scale_by_adam(b1=float(cfg.b1), b2=float(cfg.b2), eps=float(cfg.eps)))
    if cfg.name == "adamw" and cfg.weight_decay > 0:
        chain.append(optax.add_decayed_weights(float(cfg.weight_decay), mask=_decay_mask))
    if cfg.lr_multipliers:
        chain.append(scale_by_path_regex(cfg.lr_multipliers))
    chain.append(optax.scale_by_learning_rate(schedule))
    return Optimizer(optax.chain(*chain), schedule)


def optim_config_for(config, network: str, primary: str):
    """Optimizer section of ``network``: ``config.optim_<network>`` if present, else ``config.optim``."""
    key = f"optim_{network}"
    if key in config:
        return config[key]
    return config.optim


def make_optimizers(config, networks, primary: str) -> dict[str, Optimizer]:
    """One optimizer per trainable network, from ``config.optim`` / ``config.optim_<name>``."""
    total = int(config.train.num_steps)
    return {name: make_optimizer(optim_config_for(config, name, primary), total) for name in networks}
