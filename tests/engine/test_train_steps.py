"""Step builders: data-parallel equivalence, gradient accumulation, bf16, GAN ratio, contrastive queue."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from restore_jax.losses import info_nce, l2_normalize, ns_d_loss, ns_g_loss
from restore_jax.train import mesh as mesh_lib
from restore_jax.api import make_trainer
from restore_jax.train.optim import make_optimizer
from restore_jax.train.state import graphdefs_of, make_init_fn
from restore_jax.train.steps import (
    StepOptions,
    contrastive_init_extras,
    loss_and_grads,
    make_contrastive_step,
    make_gan_step,
)
from restore_jax import config as common
from support.engine_data import ArraySRData, tiny_sr_config



# Test-only helpers are compiled without optimisation (much faster to compile on CPU).
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _batches(trainer, n):
    it = ArraySRData()(trainer.config, split="train", global_batch_size=trainer.config.train.global_batch_size, seed=0)
    return [next(it) for _ in range(n)]


def _run(trainer, local_batches):
    state = trainer.init_state()
    metrics = []
    for b in local_batches:
        state, m = trainer.step_fn(state, trainer.global_batch(b))
        metrics.append(m)
    return jax.device_get(state), jax.device_get(metrics)


@pytest.fixture(scope="module")
def sharded_config():
    c = tiny_sr_config()
    c.mesh.shape = (4, 2)  # data x fsdp on the 8 fake devices
    c.sharding.fsdp_min_size = 0  # shard every kernel whose largest dim divides 2
    return c


def test_data_parallel_step_matches_one_device(sharded_config):
    """3 steps on a (4 data x 2 fsdp) mesh of 8 devices == 3 steps on 1 device.

    Tolerance: initial parameters are bit-identical (partitionable threefry); after 3 Adam steps in
    float32, |difference| <= 1e-5 absolute (gradient all-reduces sum in a different order).
    """
    c1 = common.apply_overrides(sharded_config, ["--config.mesh.shape=(1,1)"])
    t8 = make_trainer(sharded_config, data_factory=ArraySRData())
    t1 = make_trainer(c1, mesh=mesh_lib.make_mesh(c1.mesh, devices=jax.devices()[:1]), data_factory=ArraySRData())
    assert t8.mesh.shape == {"data": 4, "fsdp": 2}
    kernel = t8.state_sharding.params["G"]["head"]["kernel"]
    assert "fsdp" in tuple(kernel.spec), kernel.spec  # FSDP rule applied to a kernel
    np.testing.assert_array_equal(
        np.asarray(t8.init_state().params["G"]["head"]["kernel"]), np.asarray(t1.init_state().params["G"]["head"]["kernel"])
    )
    batches = _batches(t8, 3)
    s8, m8 = _run(t8, batches)
    s1, m1 = _run(t1, batches)
    assert int(s8.step) == int(s1.step) == 3
    for a, b in zip(jax.tree.leaves(s8.params), jax.tree.leaves(s1.params)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    for a, b in zip(jax.tree.leaves(s8.ema_params), jax.tree.leaves(s1.ema_params)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    np.testing.assert_allclose([m["loss"] for m in m8], [m["loss"] for m in m1], rtol=1e-5)
    assert all(m["finite"] == 1.0 for m in m8)
    init = jax.device_get(t1.init_state())
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(init.params), jax.tree.leaves(s1.params)))


def test_grad_accumulation_matches_full_batch(sharded_config):
    """grad_accum_steps=2 (lax.scan over 2 microbatches of 4) gives the full-batch gradient (1e-6)."""
    cfg = tiny_sr_config()
    trainer = make_trainer(cfg, mesh=mesh_lib.make_mesh(cfg.mesh, devices=jax.devices()[:4]), data_factory=ArraySRData())
    state = trainer.init_state()
    batch = trainer.global_batch(_batches(trainer, 1)[0])
    graphdefs, loss_fn = trainer.graphdefs, trainer.recipe.losses["G"]
    key = jax.random.key(0)

    @functools.partial(jax.jit, compiler_options=FAST)
    def both(params, batch):
        full = loss_and_grads(graphdefs, loss_fn, params, "G", batch, key, StepOptions(grad_accum_steps=1))
        acc = loss_and_grads(graphdefs, loss_fn, params, "G", batch, key, StepOptions(grad_accum_steps=2))
        bf16 = loss_and_grads(
            graphdefs, loss_fn, params, "G", batch, key, StepOptions(compute_dtype="bfloat16", input_keys=("lr",))
        )
        return full, acc, bf16

    (l_full, _, g_full, _), (l_acc, _, g_acc, _), (l_bf, _, g_bf, _) = both(state.params, batch)
    np.testing.assert_allclose(l_acc, l_full, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_acc), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    # bf16 compute: float32 loss and float32 gradients for float32 params, close to the f32 values
    assert l_bf.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g_bf))
    np.testing.assert_allclose(l_bf, l_full, rtol=2e-2)


# ---------------------------------------------------------------------------------------------
# GAN


class _Gen(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 3, (3, 3), rngs=rngs)

    def __call__(self, x):
        return x + self.conv(x)


class _Disc(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), strides=(2, 2), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)  # non-Param state: carried in extras['model_state']
        self.head = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(jax.nn.leaky_relu(self.bn(self.conv(x)), 0.2).mean(axis=(1, 2)))[:, 0]


def _gan_losses():
    def d_loss(models, batch, rng):
        fake = models["G"](batch["x"])
        loss = ns_d_loss(models["D"](batch["y"]), models["D"](fake))
        return loss, {}

    def g_loss(models, batch, rng):
        loss = ns_g_loss(models["D"](models["G"](batch["x"])))
        return loss, {}

    return d_loss, g_loss


def test_gan_step_updates_both_networks_with_ratio():
    cfg = common.optim_config(lr=1e-2)
    nets = {"G": _Gen, "D": _Disc}
    opts = {n: make_optimizer(cfg, 100) for n in nets}
    init = jax.jit(make_init_fn(nets, opts, ema_networks=("G",)), compiler_options=FAST)
    graphdefs = graphdefs_of(nets)
    d_loss, g_loss = _gan_losses()
    step = jax.jit(
        make_gan_step(graphdefs, d_loss, g_loss, opts, StepOptions(ema_decay=0.5), d_steps_per_step=2, g_every=2),
        compiler_options=FAST,
    )
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.uniform(size=(4, 8, 8, 3)), jnp.float32), "y": jnp.asarray(rng.uniform(size=(4, 8, 8, 3)), jnp.float32)}
    s0 = init(jax.random.key(1))
    s1, m1 = step(s0, batch)
    s2, m2 = step(s1, batch)

    def changed(a, b):
        return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    assert float(m1["g_updated"]) == 1.0 and float(m2["g_updated"]) == 0.0
    assert changed(s0.params["D"], s1.params["D"]) and changed(s1.params["D"], s2.params["D"])
    assert changed(s0.params["G"], s1.params["G"])
    assert not changed(s1.params["G"], s2.params["G"])  # g_every=2: no G update on step 1
    # update counts: D twice per step, G once in two steps
    assert int(s2.opt_state["D"][-1].count) == 4
    assert int(s2.opt_state["G"][-1].count) == 1
    assert float(m2["loss/G"]) == 0.0 and np.isfinite(float(m1["loss/G"]))
    assert float(m1["finite"]) == float(m2["finite"]) == 1.0
    # D's batch statistics are model state: updated by every forward pass of D, kept in float32
    assert set(s0.extras["model_state"]) == {"D"}
    mean0, mean1, mean2 = (np.asarray(s.extras["model_state"]["D"]["bn"]["mean"]) for s in (s0, s1, s2))
    assert mean1.dtype == np.float32 and not np.array_equal(mean0, mean1) and not np.array_equal(mean1, mean2)
    # EMA follows G: ema = 0.5 * ema + 0.5 * params after each step
    e = jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, s0.ema_params["G"], s1.params["G"])
    e = jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, e, s2.params["G"])
    for a, b in zip(jax.tree.leaves(e), jax.tree.leaves(s2.ema_params["G"])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Contrastive


class _Enc(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.proj = nnx.Linear(8, 6, rngs=rngs)

    def __call__(self, x):
        return self.proj(jax.nn.relu(self.conv(x)).mean(axis=(1, 2)))


def test_contrastive_step_queue_and_momentum_encoder():
    nets = {"E": _Enc}
    opts = {"E": make_optimizer(common.optim_config(lr=1e-2), 100)}
    init = jax.jit(
        make_init_fn(nets, opts, init_extras=contrastive_init_extras("E", queue_size=12, embed_dim=6)),
        compiler_options=FAST,
    )
    graphdefs = graphdefs_of(nets)

    def embed(models, x, rng):
        return models["E"](x)

    m = 0.9
    step = jax.jit(
        make_contrastive_step(
            graphdefs, embed, opts, StepOptions(), network="E", view_keys=("q", "k"), temperature=0.2, momentum=m
        ),
        compiler_options=FAST,
    )
    rng = np.random.default_rng(0)
    batch = {"q": jnp.asarray(rng.uniform(size=(4, 8, 8, 3)), jnp.float32), "k": jnp.asarray(rng.uniform(size=(4, 8, 8, 3)), jnp.float32)}
    s0 = init(jax.random.key(0))
    s1, m1 = step(s0, batch)

    # Independent re-statement of the loss with NumPy (float64).
    def np_embed(params, x):
        model = nnx.merge(graphdefs["E"], params)
        return np.asarray(model(x), np.float64)

    def np_norm(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    q = np_norm(np_embed(s0.params["E"], batch["q"]))
    k = np_norm(np_embed(s0.extras["key_params"], batch["k"]))
    queue = np.asarray(s0.extras["queue"], np.float64)
    logits = np.concatenate([np.sum(q * k, -1, keepdims=True), q @ queue.T], -1) / 0.2
    ref = np.mean(np.log(np.exp(logits).sum(-1)) - logits[:, 0])
    np.testing.assert_allclose(float(m1["loss"]), ref, rtol=1e-5)

    np.testing.assert_allclose(np.asarray(s1.extras["queue"])[:4], k, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(s1.extras["queue"])[4:], np.asarray(s0.extras["queue"])[4:])
    assert int(s1.extras["queue_ptr"]) == 4
    expect = jax.tree.map(lambda kp, p: m * kp + (1 - m) * p, s0.extras["key_params"], s1.params["E"])
    for a, b in zip(jax.tree.leaves(expect), jax.tree.leaves(s1.extras["key_params"])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s0.params), jax.tree.leaves(s1.params)))


def test_info_nce_matches_numpy_and_queue_wraps():
    rng = np.random.default_rng(1)
    q, k, queue = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), rng.normal(size=(6, 5))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    kn = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = np.concatenate([np.sum(qn * kn, 1, keepdims=True), qn @ queue.T], 1) / 0.5
    ref = np.mean(-logits[:, 0] + np.log(np.exp(logits).sum(1)))
    np.testing.assert_allclose(float(info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), 0.5)), ref, rtol=1e-5)
    from restore_jax.losses import enqueue

    qu, ptr = enqueue(jnp.zeros((6, 5)), jnp.asarray(3), jnp.asarray(k))
    assert int(ptr) == 0
    np.testing.assert_allclose(np.asarray(qu)[3:], kn, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(l2_normalize(jnp.asarray(k))), kn, rtol=1e-5)
