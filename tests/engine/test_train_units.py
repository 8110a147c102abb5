"""Small engine pieces: sharding rules, losses, logging helpers, distributed no-op, the SR model."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from restore_jax.losses import charbonnier_loss, hinge_d_loss, hinge_g_loss, l1_loss, mse_loss, ns_d_loss, ns_g_loss
from restore_jax.methods.baseline_sr.model import BaselineSR
from restore_jax.nn.params import count_params
from restore_jax.ops import imresize_np
from restore_jax.train import distributed
from restore_jax.train import mesh as mesh_lib
from restore_jax.errors import ConfigError
from restore_jax.train.logging import format_duration, image_grid
from restore_jax.train.state import TrainState, split_module
from restore_jax.train.tables import Column, format_table


@pytest.fixture(scope="module")
def mesh():
    return jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def test_fsdp_rule_shards_the_largest_divisible_dim(mesh):
    P = jax.sharding.PartitionSpec
    rules = ((r"replicated_thing", "replicate"), (r"explicit", (None, "data")), (".*", "fsdp"))
    spec = mesh_lib.partition_spec
    assert spec("params/G/conv/kernel", (3, 3, 32, 64), rules, mesh, 0) == P(None, None, None, "fsdp")
    assert spec("params/G/conv/kernel", (3, 3, 5, 7), rules, mesh, 0) == P()  # nothing divisible by 2
    assert spec("params/G/conv/kernel", (3, 3, 32, 64), rules, mesh, 10**9) == P()  # below min size
    assert spec("params/G/replicated_thing", (64, 64), rules, mesh, 0) == P()
    assert spec("params/G/explicit", (6, 8), rules, mesh, 0) == P(None, "data")
    assert spec("step", (), rules, mesh, 0) == P()
    with pytest.raises(ValueError, match="not divisible"):
        spec("params/G/explicit", (6, 7), rules, mesh, 0)


def test_state_shardings_cover_optimizer_moments(mesh):
    import optax

    params = {"G": {"conv": {"kernel": jnp.zeros((3, 3, 8, 16)), "bias": jnp.zeros(16)}}}
    tx = optax.adam(1e-3)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state={"G": tx.init(params["G"])},
        ema_params={"G": params["G"]},
        rng=jax.random.key(0),
        extras={},
    )
    cfg = type("S", (), {"rules": ((".*", "fsdp"),), "fsdp_min_size": 0})()
    sh = mesh_lib.state_shardings(jax.eval_shape(lambda: state), mesh, cfg)
    P = jax.sharding.PartitionSpec
    assert sh.params["G"]["conv"]["kernel"].spec == P(None, None, None, "fsdp")
    assert sh.opt_state["G"][0].mu["conv"]["kernel"].spec == P(None, None, None, "fsdp")
    assert sh.ema_params["G"]["conv"]["kernel"].spec == P(None, None, None, "fsdp")
    assert sh.rng.spec == P() and sh.step.spec == P()


def test_make_mesh_from_config():
    cfg = type("M", (), {"shape": (-1, 2), "axes": ("data", "fsdp")})()
    m = mesh_lib.make_mesh(cfg)
    assert dict(m.shape) == {"data": 4, "fsdp": 2}
    m = mesh_lib.make_mesh(type("M", (), {"shape": (-1,), "axes": ("data",)})(), devices=jax.devices()[:2])
    assert dict(m.shape) == {"data": 2, "fsdp": 1}
    with pytest.raises(ConfigError, match="does not fit"):
        mesh_lib.make_mesh(type("M", (), {"shape": (3, -1), "axes": ("data", "fsdp")})())


def test_global_batch_is_sharded_over_batch_axes(mesh):
    local = {"hr": np.arange(8 * 2, dtype=np.float32).reshape(8, 2), "name": np.array(["a"] * 8), "i": np.arange(8, dtype=np.int64)}
    out = mesh_lib.make_global_batch(local, mesh)
    assert set(out) == {"hr", "i"}  # strings dropped
    assert out["i"].dtype == jnp.int32
    assert out["hr"].sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"))
    np.testing.assert_array_equal(np.asarray(out["hr"]), local["hr"])


def test_pixel_and_adversarial_losses_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 4, 4, 3)), rng.normal(size=(2, 4, 4, 3))
    ja, jb = jnp.asarray(a, jnp.bfloat16), jnp.asarray(b, jnp.float32)
    a16 = np.asarray(ja.astype(jnp.float32), np.float64)
    assert float(l1_loss(ja, jb)) == pytest.approx(np.mean(np.abs(a16 - b)), rel=1e-5)
    assert float(mse_loss(ja, jb)) == pytest.approx(np.mean((a16 - b) ** 2), rel=1e-5)
    assert float(charbonnier_loss(ja, jb, eps=0.1)) == pytest.approx(np.mean(np.sqrt((a16 - b) ** 2 + 0.01)), rel=1e-5)
    assert l1_loss(ja, jb).dtype == jnp.float32
    r, f = rng.normal(size=8), rng.normal(size=8)
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
    assert float(ns_d_loss(jnp.asarray(r), jnp.asarray(f))) == pytest.approx(np.mean(sp(-r)) + np.mean(sp(f)), rel=1e-5)
    assert float(ns_g_loss(jnp.asarray(f))) == pytest.approx(np.mean(sp(-f)), rel=1e-5)
    hd = np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f))
    assert float(hinge_d_loss(jnp.asarray(r), jnp.asarray(f))) == pytest.approx(hd, rel=1e-5)
    assert float(hinge_g_loss(jnp.asarray(f))) == pytest.approx(-np.mean(f), rel=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        l1_loss(jnp.zeros((2, 2)), jnp.zeros((2, 3)))


def test_charbonnier_sum_and_mean_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 7, 8, 12, 3), np.float32), rng.random((2, 7, 8, 12, 3), np.float32)
    b[0, :3] = a[0, :3]  # exact zeros: the eps term alone
    d = a.astype(np.float64) - b.astype(np.float64)
    ref = np.sqrt(d * d + 1e-6)  # eps = 1e-3 -> 1e-6 inside the root (the PyTorch references)
    np.testing.assert_allclose(float(charbonnier_loss(a, b, 1e-3, reduction="sum")), ref.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(charbonnier_loss(a, b, 1e-3, reduction="mean")), ref.mean(), rtol=1e-5)
    assert float(charbonnier_loss(a, b, 1e-3)) == float(charbonnier_loss(a, b, 1e-3, reduction="mean"))
    with pytest.raises(ValueError, match="reduction"):
        charbonnier_loss(a, b, reduction="max")


def test_count_params_counts_param_scalars():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(3, 4, rngs=rngs)  # 3 * 4 + 4
            self.norm = nnx.BatchNorm(5, rngs=rngs)  # scale + bias: 2 * 5 Params; mean / var are not Params
            self.convs = nnx.List([nnx.Conv(2, 6, (3, 3), rngs=rngs)])  # 3 * 3 * 2 * 6 + 6

    expected = (3 * 4 + 4) + 2 * 5 + (3 * 3 * 2 * 6 + 6)
    assert count_params(Net(nnx.Rngs(0))) == expected
    assert count_params(nnx.eval_shape(lambda: Net(nnx.Rngs(0)))) == expected  # ShapeDtypeStruct leaves
    _, params, model_state = split_module(Net(nnx.Rngs(0)))
    assert count_params(params) == expected  # a pure dict (TrainState.params[name]) counts every leaf
    assert count_params(model_state) == 2 * 5  # BatchNorm mean and var
    tree = {"a": np.zeros((2, 3)), "b": [np.float32(1.0), jnp.zeros((4,))]}
    assert count_params(tree) == sum(int(np.prod(np.shape(x))) for x in (tree["a"], *tree["b"])) == 11
    assert count_params({}) == 0


def test_format_table_layout():
    columns = [Column("name", 6, align="<"), Column("n", 3), Column("psnr", 7, ".2f")]
    table = format_table("Title", columns, [["ab", 5, 31.4159], ["longer-name", 12, "-"]])
    expected = "\n".join(
        [
            "Title",
            "name     n    psnr",
            "------------------",
            "ab       5   31.42",
            "longer-name  12       -",
        ]
    )
    assert table == expected
    assert format_table("T", columns, []) == "T\nname     n    psnr\n------------------"
    with pytest.raises(ValueError, match="3 columns"):
        format_table("T", columns, [["a", 1]])


def test_untrained_baseline_sr_outputs_matlab_bicubic():
    """Zero-initialised tail: the network starts exactly at its global bicubic skip."""
    graphdef, params, model_state = split_module(nnx.eval_shape(lambda: BaselineSR(scale=4, channels=8, num_blocks=1, rngs=nnx.Rngs(0))))
    fast = {"xla_backend_optimization_level": 0}

    @functools.partial(jax.jit, compiler_options=fast)
    def run(x):
        model = BaselineSR(scale=4, channels=8, num_blocks=1, rngs=nnx.Rngs(0))
        return model(x)

    lr = np.random.default_rng(0).uniform(size=(2, 6, 5, 3)).astype(np.float32)
    out = np.asarray(run(jnp.asarray(lr)))
    assert out.shape == (2, 24, 20, 3)
    np.testing.assert_allclose(out, imresize_np(lr.astype(np.float64), 4.0), atol=1e-5)
    assert isinstance(params, dict) and set(params) >= {"head", "blocks", "upsampler", "tail"}
    assert model_state == {}


def test_logging_helpers():
    assert format_duration(3725) == "1h02m05s" and format_duration(65) == "1m05s" and format_duration(4.2) == "4s"
    assert format_duration(float("nan")) == "?"
    grid = image_grid([np.zeros((3, 2, 2, 3)), np.ones((3, 4, 4, 3)) * 2])
    assert grid.shape == (3 * 4 + 2 * 2, 2 * 4 + 2, 3)
    assert grid.max() == 1.0  # clipped


def test_distributed_initialize_is_a_noop_without_environment():
    assert distributed.initialize(env={}) is False
    with pytest.raises(ConfigError, match="RESTORE_JAX_NUM_PROCESSES"):
        distributed.initialize(env={"RESTORE_JAX_COORDINATOR": "localhost:1"})
    with pytest.raises(ConfigError, match="RESTORE_JAX_DISTRIBUTED"):
        distributed.initialize(env={"RESTORE_JAX_DISTRIBUTED": "sometimes"})
