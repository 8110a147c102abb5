"""Optimizers and schedules from config, checked against plain-Python re-statements."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restore_jax import config as common
from restore_jax.train.optim import make_optimizer, make_schedule

optim_config = common.optim_config


def _cos(lr, t, period, alpha):
    t = min(t, period)
    return lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * t / period)) + alpha)


def test_cosine_with_warmup():
    cfg = optim_config(lr=0.1, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    sched = make_schedule(cfg, total_steps=110)
    for s in [0, 3, 9, 10, 50, 109, 110, 200]:
        expect = 0.1 * s / 10 if s < 10 else _cos(0.1, s - 10, 100, 0.1)
        assert float(sched(s)) == pytest.approx(expect, rel=1e-5, abs=1e-9), s


def test_cosine_restarts_periods_and_weights():
    cfg = optim_config(lr=1.0, schedule="cosine_restarts", restart_periods=(10, 20), restart_weights=(1.0, 0.5))
    sched = make_schedule(cfg, total_steps=30)
    for s in [0, 5, 9, 10, 11, 20, 29, 30]:
        expect = _cos(1.0, s, 10, 0.0) if s < 10 else _cos(0.5, s - 10, 20, 0.0)
        assert float(sched(s)) == pytest.approx(expect, rel=1e-5, abs=1e-7), s
    # equal cycles when no periods are given
    cfg = optim_config(lr=1.0, schedule="cosine_restarts", num_restarts=3)
    sched = make_schedule(cfg, total_steps=30)
    assert float(sched(10)) == pytest.approx(1.0) and float(sched(20)) == pytest.approx(1.0)
    assert float(sched(15)) == pytest.approx(_cos(1.0, 5, 10, 0.0), rel=1e-5)


def test_exponential_per_epoch_decay():
    cfg = optim_config(lr=0.2, schedule="exponential", decay_rate=0.5, steps_per_epoch=100, warmup_steps=5)
    sched = make_schedule(cfg, total_steps=1000)
    for s in [0, 4, 5, 104, 105, 305]:
        expect = 0.2 * s / 5 if s < 5 else 0.2 * 0.5 ** ((s - 5) // 100)
        assert float(sched(s)) == pytest.approx(expect, rel=1e-6, abs=1e-9), s


def test_lr_multipliers_by_path_regex_and_clipping():
    cfg = optim_config(lr=0.01, lr_multipliers=(("offset", 0.1), ("frozen", 0.0)), grad_clip_norm=1e9)
    opt = make_optimizer(cfg, total_steps=10)
    params = {"dcn": {"offset": {"kernel": jnp.ones((2, 2))}, "kernel": jnp.ones((2, 2))}, "frozen": jnp.ones(3)}
    state = opt.tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, state = opt.tx.update(grads, state, params)
    # Adam's first update is lr * g / (|g| + eps) ~= lr
    np.testing.assert_allclose(updates["dcn"]["kernel"], -0.01, rtol=1e-5)
    np.testing.assert_allclose(updates["dcn"]["offset"]["kernel"], -0.001, rtol=1e-5)
    np.testing.assert_allclose(updates["frozen"], 0.0)
    assert float(opt.lr_at(state)) == pytest.approx(0.01)


def test_global_norm_clipping():
    cfg = optim_config(lr=1.0, grad_clip_norm=0.5, b1=0.0, b2=0.0, eps=0.0)
    opt = make_optimizer(cfg, total_steps=10)
    params = {"w": jnp.zeros(4)}
    # with b1 = b2 = 0 Adam is sign(g) after clipping: clipping must not change the direction
    updates, _ = opt.tx.update({"w": jnp.array([3.0, -4.0, 0.0, 0.0])}, opt.tx.init(params), params)
    np.testing.assert_allclose(updates["w"][:2], [-1.0, 1.0], rtol=1e-5)


def test_adamw_decays_only_matrices():
    cfg = optim_config(name="adamw", lr=0.1, weight_decay=0.5)
    opt = make_optimizer(cfg, total_steps=10)
    params = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = opt.tx.update(zero, opt.tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * 2.0, rtol=1e-6)
    np.testing.assert_allclose(updates["bias"], 0.0)
