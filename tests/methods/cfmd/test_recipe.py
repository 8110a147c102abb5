"""CFMD-GAN recipe: loss terms vs NumPy, sharded GAN steps vs one device, ci end to end, evaluators,
the 300VW ``.pts`` reader / source, the face-video and mixture sources, config and inference hooks.

One tiny ``ci`` trainer on a (4 data x 2 fsdp) mesh of the 8 fake CPU devices is shared by the
module; its step is compiled without optimisation (much faster to compile on CPU) and reused by
the end-to-end fit.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restore_jax.methods.cfmd import recipe as R
from restore_jax.train import mesh as mesh_lib
from restore_jax import config as common
from restore_jax.api import check_config, load_config
from restore_jax.errors import ConfigError
from restore_jax.api import make_trainer
from restore_jax.train.steps import build_step


import restore_jax.methods.cfmd.data as CD  # noqa: E402
from input_pipelines import vw300  # noqa: E402

FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


# ---------------------------------------------------------------------------------------------
# NumPy references


def np_resize_bilinear(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """PyTorch ``F.interpolate(bilinear, align_corners=False)`` (no antialias) re-stated per axis."""

    def axis(a, out, ax):
        n = a.shape[ax]
        src = np.clip((np.arange(out) + 0.5) * (n / out) - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        wt = (src - i0).reshape([-1 if k == ax else 1 for k in range(a.ndim)])
        return np.take(a, i0, axis=ax) * (1 - wt) + np.take(a, i1, axis=ax) * wt

    return axis(axis(np.asarray(x, np.float64), h, 1), w, 2)


def np_charbonnier_ms(outs, target, eps=1e-3) -> float:
    total = 0.0
    for o in outs:
        o = np.asarray(o, np.float64)
        t = np_resize_bilinear(target, o.shape[1], o.shape[2]) if o.shape[1:3] != target.shape[1:3] else target
        total += np.mean(np.sqrt((o - t) ** 2 + eps**2))
    return total


def np_bce(logits, label: float) -> float:
    """Mean binary cross-entropy of sigmoid(logits) against a constant label (stable, float64)."""
    x = np.asarray(logits, np.float64)
    return float(np.mean(label * np.logaddexp(0, -x) + (1 - label) * np.logaddexp(0, x)))


def np_ureg(u_map, u) -> float:
    return float(np.mean((np.asarray(u_map, np.float64) - np.asarray(u, np.float64)[:, None, None]) ** 2))


# ---------------------------------------------------------------------------------------------
# Shared trainer


def _ci_config(**overrides):
    c = load_config("cfmd:ci")
    c.mesh.shape = (4, 2)
    c.sharding.fsdp_min_size = 0  # shard every array with a dimension divisible by 2
    c.log.console = False
    c.log.image_every_steps = 0
    for k, v in overrides.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def _fast(trainer: Trainer):
    """The trainer's step compiled without optimisation (same shardings; compiles ~3x faster on CPU)."""
    step = build_step(trainer.recipe, trainer.graphdefs, trainer.optimizers, trainer.config)
    trainer.step_fn = jax.jit(
        step,
        in_shardings=(trainer.state_sharding, trainer.batch_sharding),
        out_shardings=(trainer.state_sharding, trainer.replicated),
        donate_argnums=0,
        compiler_options=FAST,
    )
    return trainer


@pytest.fixture(scope="module")
def t8():
    return _fast(make_trainer(_ci_config()))


@pytest.fixture(scope="module")
def t1():
    c = common.apply_overrides(_ci_config(), ["--config.mesh.shape=(1,1)"])
    return _fast(make_trainer(c, mesh=mesh_lib.make_mesh(c.mesh, devices=jax.devices()[:1])))


@pytest.fixture(scope="module")
def batches(t8):
    it = t8.make_data_iter()
    try:
        return [next(it) for _ in range(2)]
    finally:
        it.close()


# ---------------------------------------------------------------------------------------------
# Loss terms


def test_multiscale_charbonnier_matches_numpy():
    rng = np.random.default_rng(0)
    target = rng.uniform(size=(2, 16, 20, 3)).astype(np.float32)
    outs = [rng.uniform(size=(2, 4, 5, 3)), rng.uniform(size=(2, 8, 10, 3)), rng.uniform(size=(2, 16, 20, 3))]
    outs = [o.astype(np.float32) for o in outs]
    got = float(R.multiscale_charbonnier([jnp.asarray(o) for o in outs], jnp.asarray(target), 1e-3))
    np.testing.assert_allclose(got, np_charbonnier_ms(outs, target), rtol=1e-5)
    # the x1/2 label is the mean of 2x2 blocks (bilinear, half-pixel centres)
    half = np.asarray(R.resize_bilinear(jnp.asarray(target), 8, 10))
    np.testing.assert_allclose(half, target.reshape(2, 8, 2, 10, 2, 3).mean(axis=(2, 4)), atol=1e-6)
    # eps matters where the difference is zero
    zero = float(R.multiscale_charbonnier([jnp.asarray(target)], jnp.asarray(target), 0.1))
    np.testing.assert_allclose(zero, 0.1, rtol=1e-5)


def test_adversarial_and_u_regression_match_numpy():
    rng = np.random.default_rng(1)
    rg, fg = rng.normal(size=4) * 3, rng.normal(size=4) * 3
    rp, fp = rng.normal(size=(4, 8, 8)) * 3, rng.normal(size=(4, 8, 8)) * 3
    d, g = R.adversarial_terms("ns", (jnp.asarray(rg), jnp.asarray(rp)), (jnp.asarray(fg), jnp.asarray(fp)))
    np.testing.assert_allclose(float(d), np_bce(rg, 1) + np_bce(fg, 0) + np_bce(rp, 1) + np_bce(fp, 0), rtol=1e-5)
    np.testing.assert_allclose(float(g), np_bce(fg, 1) + np_bce(fp, 1), rtol=1e-5)
    d0, g0 = R.adversarial_terms("ns", None, (jnp.asarray(fg), jnp.asarray(fp)))
    assert float(d0) == 0.0 and float(g0) == pytest.approx(float(g), rel=1e-6)
    q, u = rng.normal(size=(4, 8, 8)), rng.uniform(size=4)
    np.testing.assert_allclose(float(R.u_regression(jnp.asarray(q), jnp.asarray(u))), np_ureg(q, u), rtol=1e-5)


class FakeG:
    """Stand-in generator: three outputs that depend on ``b`` and ``u`` (no network to compile)."""

    def __call__(self, b, u):
        u = jnp.asarray(u, jnp.float32).reshape(-1, 1, 1, 1)
        full = 0.8 * b + 0.15 * u + 0.02
        return [full[:, ::4, ::4] - 0.01, full[:, ::2, ::2] + 0.01, full]


def np_fake_g(b, u):
    full = 0.8 * b + 0.15 * u.reshape(-1, 1, 1, 1) + 0.02
    return [full[:, ::4, ::4] - 0.01, full[:, ::2, ::2] + 0.01, full]


class FakeD:
    """Stand-in discriminator: deterministic heads of ``(b, x)``."""

    def __call__(self, b, x):
        from restore_jax.methods.cfmd.model import CFMDDiscriminatorOutput

        return CFMDDiscriminatorOutput(
            jnp.sum(x - b, axis=(1, 2, 3)) * 0.3, (x[..., 0] - b[..., 1]) * 2.0, x[..., 2] * 0.7 + 0.1
        )


def np_fake_d(b, x):
    return np.sum(x - b, axis=(1, 2, 3)) * 0.3, (x[..., 0] - b[..., 1]) * 2.0, x[..., 2] * 0.7 + 0.1


def test_gan_losses_match_numpy_composition():
    """L_D and L_G of the recipe equal their NumPy re-statement (weights, heads, real/fake, u targets)."""
    config = _ci_config()
    config.loss.perceptual_weight = 0.01
    recipe = R.make_recipe(config)
    rng = np.random.default_rng(2)
    b = rng.uniform(size=(4, 32, 32, 3)).astype(np.float32)
    s = np.clip(b + rng.normal(0, 0.1, b.shape), 0, 1).astype(np.float32)
    u = np.array([0.0, 0.2, 0.5, 12 / 13], np.float32)
    batch = {"blurred": jnp.asarray(b), "target": jnp.asarray(s), "u_target": jnp.asarray(u)}
    models = {"G": FakeG(), "D": FakeD()}
    ld, md = recipe.losses["D"](models, batch, jax.random.key(0))
    lg, mg = recipe.losses["G"](models, batch, jax.random.key(0))

    b64, s64, u64 = (x.astype(np.float64) for x in (b, s, u))
    outs = np_fake_g(b64, u64)
    gr, pr, qr = np_fake_d(b64, s64)
    gf, pf, qf = np_fake_d(b64, outs[-1])
    ref_d = np_bce(gr, 1) + np_bce(gf, 0) + np_bce(pr, 1) + np_bce(pf, 0) + 0.05 * (np_ureg(qr, u64) + np_ureg(qf, u64))
    np.testing.assert_allclose(float(ld), ref_d, rtol=1e-5)
    np.testing.assert_allclose(float(md["loss/u_regression_real"]), np_ureg(qr, u64), rtol=1e-5)

    from restore_jax.metrics.lpips import lpips_distance

    pix = np_charbonnier_ms(outs, s64)
    per = float(np.mean(lpips_distance(jnp.asarray(outs[-1], jnp.float32), s, "alex", "[0,1]")))
    adv = np_bce(gf, 1) + np_bce(pf, 1)
    ref_g = pix + 0.01 * per + 0.1 * adv + 0.05 * np_ureg(qf, u64)
    np.testing.assert_allclose(float(mg["loss/pixel"]), pix, rtol=1e-5)
    np.testing.assert_allclose(float(mg["loss/perceptual"]), per, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(float(lg), ref_g, rtol=1e-5)
    # hinge variant: same composition with hinge terms
    config.gan.loss = "hinge"
    ld_h, _ = R.make_recipe(config).losses["D"](models, batch, jax.random.key(0))
    hinge = lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f))  # noqa: E731
    ref_h = hinge(gr, gf) + hinge(pr, pf) + 0.05 * (np_ureg(qr, u64) + np_ureg(qf, u64))
    np.testing.assert_allclose(float(ld_h), ref_h, rtol=1e-5)


def test_plain_baseline_loss_uses_middle_reordered_frame():
    config = load_config("cfmd:ci,plain=True")
    assert config.train.step_kind == "supervised" and not config.model.controllable
    recipe = R.make_recipe(config)
    assert set(recipe.networks) == {"G"} and recipe.step_kind == "supervised"
    rng = np.random.default_rng(3)
    sharp = rng.uniform(size=(2, 13, 32, 32, 3)).astype(np.float32)
    nf = np.array([5, 13], np.int32)
    b = sharp.mean(axis=1)
    batch = {"blurred": jnp.asarray(b), "sharp": jnp.asarray(sharp), "num_frames": jnp.asarray(nf), "target": jnp.asarray(b)}
    loss, _ = recipe.losses["G"]({"G": FakeG()}, batch, jax.random.key(0))
    target = np.stack([sharp[0, 2], sharp[1, 6]]).astype(np.float64)
    outs = np_fake_g(b.astype(np.float64), np.full(2, 0.5))  # u fixed at 0.5
    np.testing.assert_allclose(float(loss), np_charbonnier_ms(outs, target), rtol=1e-5)
    pred = recipe.predict({"G": FakeG()}, {"blurred": jnp.asarray(b), "u": jnp.zeros(2)})
    np.testing.assert_allclose(np.asarray(pred), outs[-1], rtol=1e-5)  # the plain model ignores u


# ---------------------------------------------------------------------------------------------
# Sharded steps, prediction, end to end


def test_sharded_forward_and_gan_steps_match_one_device(t8, t1, batches):
    """Forward passes and 2 GAN steps (a D update then a G update each) on 8 devices == 1 device.

    The 1-device run starts from the 8-device initial state (copied). The first step's losses are
    forward passes of both networks at the initial parameters (D and G losses, the pixel term of
    G's outputs), so equal step-1 metrics check the sharded forward pass too.
    """
    assert t8.mesh.shape == {"data": 4, "fsdp": 2}
    specs = [s.spec for s in jax.tree.leaves(t8.state_sharding.params)]
    assert any("fsdp" in tuple(sp) for sp in specs)  # FSDP actually shards something
    s8 = t8.init_state()
    s1 = jax.device_put(jax.device_get(s8), t1.state_sharding)
    g8 = t8.global_batch(batches[0])
    y8 = np.asarray(t8.predict_fn(t8.eval_params(s8), g8))
    g0 = {**g8, "u_target": jnp.zeros_like(g8["u_target"])}
    assert not np.allclose(np.asarray(t8.predict_fn(t8.eval_params(s8), g0)), y8, atol=1e-4)  # u matters
    m8s, m1s = [], []
    for b in batches:
        s8, m8 = t8.step_fn(s8, t8.global_batch(b))
        s1, m1 = t1.step_fn(s1, t1.global_batch(b))
        m8s.append(jax.device_get(m8))
        m1s.append(jax.device_get(m1))
    s8, s1 = jax.device_get(s8), jax.device_get(s1)
    for net in ("D", "G"):
        for a, c in zip(jax.tree.leaves(s8.params[net]), jax.tree.leaves(s1.params[net])):
            np.testing.assert_allclose(a, c, atol=2e-5, rtol=0)
    for a, c in zip(jax.tree.leaves(s8.extras["model_state"]), jax.tree.leaves(s1.extras["model_state"])):
        np.testing.assert_allclose(a, c, atol=2e-5, rtol=0)  # spectral-norm vectors of D
    for m8, m1 in zip(m8s, m1s):
        assert m8["finite"] == m1["finite"] == 1.0 and m8["g_updated"] == 1.0
        for k in ("loss/D", "loss/G", "loss/pixel", "loss/u_regression_real", "loss/adversarial_G"):
            np.testing.assert_allclose(m8[k], m1[k], rtol=1e-4, err_msg=k)
    assert int(s8.opt_state["D"][-1].count) == int(s8.opt_state["G"][-1].count) == 2  # 1:1 alternation
    assert int(s8.step) == 2


def test_ci_trains_end_to_end_and_runs_both_evaluators(t8, tmp_path):
    result = t8.fit(tmp_path)
    assert result.step == 4 and not result.stopped_early
    assert (tmp_path / "checkpoints" / "4").is_dir()
    payload = json.loads((tmp_path / "eval" / "4.json").read_text())
    r = payload["results"]
    for key in ("s2s/synthetic_faces/psnr", "s2s/synthetic_faces/psnr_blurred", "s2s/synthetic_faces/lpips",
                "s2v/synthetic_faces/N5/ssim", "s2v/synthetic_faces/N7/psnr_blurred", "s2v/synthetic_faces/ALL/psnr"):
        assert np.isfinite(r[key]), key
    assert r["s2s/synthetic_faces/n"] == 16  # 8 windows x 2 frame counts, one centre frame each
    assert r["s2v/synthetic_faces/N5/n"] == 40 and r["s2v/synthetic_faces/ALL/n"] == 96
    assert any("cfmd_s2v" in t for t in payload["tables"])


def _oracle_ctx(t8, tmp_path):
    from restore_jax.train.evaluation import EvalContext

    predict = jax.jit(lambda params, batch: R.gather_frame(batch["sharp"], batch["frame_index"]))
    return EvalContext(config=t8.config, mesh=t8.mesh, params={}, predict_fn=predict, step=0, workdir=tmp_path)


def test_evaluator_bookkeeping_oracle_and_blurred_baseline(t8, tmp_path):
    """A model that returns the GT frame scores perfectly; the blurred baseline equals NumPy/skimage."""
    from skimage.metrics import structural_similarity

    from input_pipelines.pipeline import build_eval
    from restore_jax.methods.cfmd import eval as E

    ctx = _oracle_ctx(t8, tmp_path)
    s2s, s2v = E.cfmd_s2s(ctx), E.cfmd_s2v(ctx)
    assert s2s["s2s/synthetic_faces/psnr"] == np.inf and s2v["s2v/synthetic_faces/ALL/psnr"] == np.inf
    assert s2s["s2s/synthetic_faces/ssim"] == pytest.approx(1.0, abs=1e-6)
    assert s2v["s2v/synthetic_faces/N7/lpips"] == pytest.approx(0.0, abs=1e-6)
    settings = t8.config.eval.cfmd_s2v
    q = lambda x: np.round(np.clip(x, 0, 1) * 255) / 255  # noqa: E731
    sums = {"s2s": [], 5: [], 7: []}
    ssims = {5: []}
    for n in (5, 7):
        (name, src), = E.eval_sets(t8.config, settings)
        for batch in build_eval(E._eval_data_config(t8.config, src, settings, n), "val", 8, catalog=t8.method.catalog()):
            for j in range(len(batch["blurred"])):
                if batch["mask"][j] < 0.5:
                    continue
                b = q(batch["blurred"][j].astype(np.float64))
                frames = [q(batch["sharp"][j, i].astype(np.float64)) for i in range(n)]
                ps = [10 * np.log10(1.0 / np.mean((b - f) ** 2)) for f in frames]
                sums[n].extend(ps)
                sums["s2s"].append(ps[n // 2])
                if n == 5:
                    ssims[5].extend(
                        structural_similarity(b, f, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              data_range=1.0, channel_axis=-1) for f in frames
                    )
    np.testing.assert_allclose(s2s["s2s/synthetic_faces/psnr_blurred"], np.mean(sums["s2s"]), rtol=1e-5)
    np.testing.assert_allclose(s2v["s2v/synthetic_faces/N5/psnr_blurred"], np.mean(sums[5]), rtol=1e-5)
    np.testing.assert_allclose(s2v["s2v/synthetic_faces/N7/psnr_blurred"], np.mean(sums[7]), rtol=1e-5)
    np.testing.assert_allclose(s2v["s2v/synthetic_faces/ALL/psnr_blurred"], np.mean(sums[5] + sums[7]), rtol=1e-5)
    np.testing.assert_allclose(s2v["s2v/synthetic_faces/N5/ssim_blurred"], np.mean(ssims[5]), atol=2e-4)
    assert s2v["s2v/synthetic_faces/N5/n"] == len(sums[5]) == 8 * 5


# ---------------------------------------------------------------------------------------------
# Config, validation, inference hooks


def test_config_presets_ablations_and_validation():
    c = load_config("cfmd:ci")
    check_config(c, num_devices=8)
    assert load_config("cfmd:ci,ablation=no_cadc").model.use_deformable is False
    assert load_config("cfmd:ci,ablation=no_caca").model.use_channel_attention is False
    assert load_config("cfmd:ci,ablation=no_fmr").data.builder.kwargs.reorder == "none"
    p = load_config("cfmd:paper,face_video=False")
    assert tuple(p.model.widths) == (32, 64, 128) and p.model.blocks_per_stage == 8
    assert p.optim.lr == 1e-4 and p.optim.decay_rate == 0.99 and p.optim_D.schedule == "exponential"
    assert p.train.global_batch_size == 8 and p.data.builder.kwargs.crop_size == 256
    assert list(p.data.builder.kwargs.num_frames) == [5, 7, 9, 11, 13]
    assert tuple(p.data.builder.kwargs.scale_range) == (1.0, 1.5)
    # The paper's losses and MIMO-UNet's pyramid; the short-run options stay in `small`.
    lo = p.loss
    assert (lo.pixel_weight, lo.perceptual_weight, lo.adversarial_weight, lo.regression_weight, lo.q_weight) == (
        1.0, 0.01, 0.1, 0.05, 0.05
    )
    assert p.model.input_pyramid == "nearest" and p.model.zero_init_outputs is False
    sm = load_config("cfmd:small,face_video=False")
    assert sm.model.input_pyramid == "bilinear" and sm.model.zero_init_outputs is True
    assert sm.data.source.kwargs.drift > 0 and sm.loss.adversarial_weight < lo.adversarial_weight
    with pytest.raises(ConfigError, match="multiple of 4"):
        check_config(common.apply_overrides(c, ["--config.data.builder.kwargs.crop_size=42"]))
    with pytest.raises(ConfigError, match="step_kind"):
        check_config(common.apply_overrides(c, ["--config.train.step_kind=supervised"]))
    with pytest.raises(ConfigError, match="unknown ablation"):
        load_config("cfmd:ci,ablation=no_gan")


def test_inference_hooks():
    c = load_config("cfmd:ci")
    spec = R.inference_controls(c)["u"]
    assert (spec.default, spec.min, spec.max) == (0.5, 0.0, 1.0)
    spec = R.inference(c)
    assert (spec.input_kind, spec.multiple, spec.scale, spec.video_mode) == ("image", 4, 1, None)
    assert set(spec.controls) == {"u"}
    assert R.inference_controls(load_config("cfmd:ci,plain=True")) == {}


# ---------------------------------------------------------------------------------------------
# .pts, 300VW, face videos, mixture


PTS_STANDARD = "version: 1\nn_points:  3\n{\n1.5 2.25\n3 4\n-5e-1 6\n}\n"


def test_pts_parser_accepts_variants_and_matches_loadtxt(tmp_path):
    ref = np.loadtxt(PTS_STANDARD.splitlines()[3:6])
    np.testing.assert_array_equal(vw300.parse_pts(PTS_STANDARD), ref.astype(np.float32))
    variants = [
        "\ufeff" + PTS_STANDARD.replace("\n", "\r\n"),  # BOM + Windows line ends
        "1.5 2.25\n3 4\n\n-5e-1 6  // trailing comment\n",  # bare list
        "# a comment\nversion: 1\nn_points: 3\n{\n1.5,2.25\n3 4\n-5e-1 6\n}\n\n",
    ]
    for text in variants:
        np.testing.assert_array_equal(vw300.parse_pts(text), ref.astype(np.float32))
    f = tmp_path / "000001.pts"
    f.write_text(PTS_STANDARD)
    np.testing.assert_array_equal(vw300.read_pts(f, expected_points=3), ref.astype(np.float32))


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 1\nn_points: 4\n{\n1 2\n3 4\n5 6\n}\n", "n_points says 4"),
        ("n_points: 3\n{\n1 2\n3 x\n5 6\n}\n", "line 4: not a number"),
        ("n_points: 3\n{\n1 2\n3 4\n5 6\n", "not closed"),
        ("n_points: 3\n{\n1 2 3\n3 4\n5 6\n}\n", "line 3: expected two numbers"),
        ("version: 1\nn_points: 3\n", "no points"),
        ("{\n1 nan\n}\n", "non-finite"),
        ("{\n1 2\n}\n3 4\n", "after the closing"),
        ("n_points: three\n", "must be an integer"),
    ],
)
def test_pts_parser_errors(text, message):
    with pytest.raises(vw300.PtsError, match=message) as info:
        vw300.parse_pts(text, source="clip/annot/000007.pts")
    assert "clip/annot/000007.pts" in str(info.value)


def test_read_pts_expected_count_and_binary(tmp_path):
    f = tmp_path / "a.pts"
    f.write_text(PTS_STANDARD)
    with pytest.raises(vw300.PtsError, match="expected 68 points"):
        vw300.read_pts(f)
    g = tmp_path / "b.pts"
    g.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(vw300.PtsError, match="not a text file"):
        vw300.read_pts(g)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vw300.read_pts(tmp_path / "missing.pts")


def test_held_out_rule():
    assert vw300.held_out_ids(["d18", "d3", "d0", "d12", "d11"], 1) == ["d11"]
    ids = [f"{i:03d}" for i in range(1, 93)]
    test = vw300.held_out_ids(ids, 9)
    assert len(test) == 9 and len(set(test)) == 9
    assert test == [ids[int((k + 0.5) * 92 / 9)] for k in range(9)]
    assert len(vw300.split_ids(ids, "train")) == 83
    assert vw300.split_ids(ids, "val", test_ids=["005"]) == ["005"]
    with pytest.raises(ValueError, match="not among the videos"):
        vw300.split_ids(ids, "test", test_ids=["999"])


def _write_pts(path: pathlib.Path, pts: np.ndarray) -> None:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    path.write_text(f"version: 1\nn_points:  {len(pts)}\n{{\n{body}\n}}\n")


def _fake_300vw(root: pathlib.Path, ids=("001", "002", "003", "004"), frames=6, size=32) -> dict:
    """Tiny 300VW layout: <id>/frames/*.png (or <id>/vid.mp4 for the first) + <id>/annot/*.pts."""
    from PIL import Image

    from input_pipelines import video_io

    rng = np.random.default_rng(0)
    truth = {}
    for k, vid in enumerate(ids):
        (root / vid / "annot").mkdir(parents=True)
        imgs = (rng.uniform(size=(frames, size, size, 3)) * 255).astype(np.uint8)
        if k == 0:
            video_io.write_video(root / vid / "vid.mp4", imgs, crf=0)
        else:
            (root / vid / "frames").mkdir()
            for t in range(frames):
                Image.fromarray(imgs[t]).save(root / vid / "frames" / f"{t + 1:06d}.png")
        lms = rng.uniform(5, size - 5, size=(frames, 68, 2))
        for t in range(frames):
            _write_pts(root / vid / "annot" / f"{t + 1:06d}.pts", lms[t])
        truth[vid] = (imgs, lms)
    return truth


def test_vw300_source_split_windows_and_landmarks(tmp_path):
    truth = _fake_300vw(tmp_path)
    (tmp_path / "005").mkdir()  # no annotations: skipped with a warning
    with pytest.warns(UserWarning, match="skipped 1 unusable"):
        train = vw300.VW300Source(tmp_path, split="train", window=3, stride=2, test_ids=["003"])
    assert train.video_ids == ["001", "002", "004"]
    assert len(train) == 3 * 2  # starts 0, 2 in 6 frames
    rec = train[3]  # video 002, start 2
    assert rec["frames"].shape == (3, 32, 32, 3) and rec["landmarks"].shape == (3, 68, 2)
    imgs, lms = truth["002"]
    np.testing.assert_array_equal(rec["frames"], imgs[2:5].astype(np.float32) / 255)
    np.testing.assert_allclose(rec["landmarks"], lms[2:5] - 1.0, atol=1e-3)  # 1-based -> 0-based
    assert (int(rec["video_index"]), int(rec["start"])) == (1, 2)
    vid_rec = train[0]  # the video file (lossless x264)
    assert vid_rec["frames"].shape == (3, 32, 32, 3)
    test = vw300.VW300Source(tmp_path, split="test", window=3, test_ids=["003"])
    assert test.video_ids == ["003"] and "300VW 003 frames 1..3" in test.describe(0)
    with pytest.raises(FileNotFoundError, match="unusable"):
        vw300.VW300Source(tmp_path, split="train", window=3, test_ids=["003"], on_error="raise")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vw300.VW300Source(tmp_path / "nope")
    # the builder makes CFMD examples from it
    ex = CD.cfmd_blur(rec, np.random.default_rng(0), num_frames=3, crop_size=16, scale_range=(1.0, 1.0))
    assert ex["blurred"].shape == (16, 16, 3) and ex["sharp"].shape == (3, 16, 16, 3)


def test_face_video_source_cache_split_and_fallback(tmp_path):
    from input_pipelines import video_io

    vids = tmp_path / "videos"
    vids.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        video_io.write_video(vids / f"{name}.mp4", (rng.uniform(size=(8, 32, 32, 3)) * 255).astype(np.uint8), crf=0)
    cache = tmp_path / "cache"
    lms = rng.uniform(4, 28, size=(8, 68, 2)).astype(np.float32)
    for name in ("a", "c"):  # pre-filled cache: nothing is computed
        f = vids / f"{name}.mp4"
        out = cache / "face_landmarks" / f"{name}-{CD._file_digest(f)}.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, landmarks=lms, version=np.int32(CD.LANDMARK_CACHE_VERSION))
    src = CD.FaceVideoSource(vids, split="train", window=5, stride=3, landmarks="require", cache_dir=cache)
    assert src.stems == ["a", "c"]  # b (the middle of a, b, c) is held out
    rec = src[1]
    np.testing.assert_array_equal(rec["landmarks"], lms[3:8])
    with pytest.raises(ValueError, match="inside the video folder"):
        CD.video_landmarks(vids / "b.mp4", cache_dir=vids / "cache")
    held = CD.FaceVideoSource(vids, split="val", window=5, landmarks="none")
    assert held.stems == ["b"] and "landmarks" not in held[0]
    with pytest.warns(UserWarning, match="keep the time order|keeps the time order|time order"):
        CD._WARNED_NO_LANDMARKS = False
        ex = CD.cfmd_blur(held[0], np.random.default_rng(0), num_frames=5, crop_size=16)
    np.testing.assert_array_equal(ex["order"][:5], np.arange(5))  # time order without landmarks


def test_mixture_source_concatenates_and_normalises_records():
    part = {"name": "synthetic_faces", "kwargs": {"size": 32, "num_examples": 3, "mode": "sequence", "num_frames": 5}}
    mix = CD.MixtureSource([dict(part, repeat=2), dict(part, kwargs={**part["kwargs"], "num_examples": 2})], split="val")
    assert len(mix) == 3 * 2 + 2
    assert mix.locate(4) == (0, 1) and mix.locate(7) == (1, 1)
    rec = mix[4]
    assert set(rec) == {"frames", "landmarks", "index", "clip_index"}
    np.testing.assert_array_equal(rec["frames"], mix.parts[0][1]["frames"])
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        CD.MixtureSource([dict(part, repeat=0)])


def test_unrolled_stage_equals_scanned_stage():
    """``unroll_blocks`` (the CPU presets' Python loop) computes what the ``lax.scan`` stage computes
    (gradients follow from the same operations)."""
    from flax import nnx

    from restore_jax.methods.cfmd.model import CFMDGeneratorConfig, ContAdaStage

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8))
    ctl = jax.random.normal(jax.random.key(1), (2, 4))
    stage = ContAdaStage(8, 2, CFMDGeneratorConfig(widths=(8, 8, 8), control_features=4), rngs=nnx.Rngs(5))
    outs = []
    for unroll in (False, True):
        stage.unroll = unroll  # what CFMDGeneratorConfig(unroll_blocks=...) sets; same parameters
        gd, params = nnx.split(stage)
        # non-zero offsets so the deformable sampling is exercised
        params = jax.tree.map(lambda a: a + 0.05 * jnp.cos(jnp.arange(a.size).reshape(a.shape)), params)
        outs.append(jax.jit(lambda p, x, gd=gd: nnx.merge(gd, p)(x, ctl))(params, x))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)
    assert float(jnp.max(jnp.abs(outs[0] - x))) > 1e-3  # the blocks did something
