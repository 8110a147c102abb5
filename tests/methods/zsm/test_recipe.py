"""The ``zsm`` method on the engine: configs, loss, offset monitor, evaluation protocols, sharding.

References are independent of the code under test: NumPy for the Charbonnier sum and the GFI
targets (MATLAB bicubic through ``imresize_np``), forward hooks on the PyTorch re-statement
(``restore_jax/methods/zsm/torch_ref.py``) for the offset statistic, scikit-image for PSNR / SSIM, and
an oracle "model" that knows the ground truth for the window bookkeeping.

Compiled programs (JAX on CPU is compile-bound here): one ``Trainer`` for the ``ci`` preset on the 8
fake devices (init, step, predict; its predict has the shape of the evaluators' batches too) and one
single-device forward with the offset monitor, shared by the sharding and monitor tests.
"""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from restore_jax.methods.zsm import eval as ze
from restore_jax.methods.zsm import recipe as zr
from restore_jax.ops import imresize_np
from restore_jax import config as common
from restore_jax.api import check_config, load_config
from restore_jax.errors import ConfigError
from restore_jax.train.logging import image_grid
from restore_jax.train.optim import make_optimizer


from restore_jax.methods.zsm.torch_ref import ZSMTorch, transplant_from_nnx  # noqa: E402


def _config(arg: str = "ci"):
    return load_config(f"zsm:{arg}")


# ------------------------------------------------------------------------------------------------
# configs


@pytest.mark.parametrize(
    "arg, devices",
    [
        ("paper", 8), ("small", 1), ("ci", 8), ("small,degradation=noisy,gfi=True", 1),
        ("small,degradation=jpeg,data=synthetic", 4), ("paper,data=faces", 8),
    ],
)
def test_presets_validate(arg, devices):
    c = _config(arg)
    check_config(c, num_devices=devices)
    assert c.method == "zsm" and c.data.builder.name == "septuplet"


def test_paper_preset_is_the_published_setup():
    c = _config("paper")
    m = c.model
    assert (m.nf, m.groups, m.front_blocks, m.back_blocks, m.residual) == (64, 8, 5, 40, "none")
    o = c.optim
    assert (o.lr, o.b1, o.b2, o.schedule, tuple(o.restart_periods)) == (4e-4, 0.9, 0.99, "cosine_restarts", (150_000,) * 4)
    assert o.lr * o.min_lr_ratio == pytest.approx(1e-7)
    assert (c.train.num_steps, c.train.global_batch_size, c.loss.reduction) == (600_000, 16, "sum")
    kw = c.data.builder.kwargs
    assert (kw.hr_size, tuple(kw.lr_indices), kw.reverse_prob > 0, kw.rot90_prob > 0) == (128, (0, 2, 4, 6), True, True)


def test_ci_needs_no_shared_data():
    c = _config("ci")
    assert c.data.source.name == "synthetic_faces" and tuple(c.eval.vid4.clips) == ()


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.model.groups=3", "not divisible by model.groups"),
        ("--config.loss.reduction=median", "loss.reduction"),
        ("--config.data.builder.kwargs.lr_indices=(0, 1, 2, 3)", "every other frame"),
        ("--config.data.source.kwargs.num_frames=9", "gives 9 frames per record"),
        ("--config.data.builder.kwargs.hr_size=40", "multiple of 16"),
        ("--config.optim.lr_multipliers=(('no_such_layer', 0.1),)", "matches no parameter"),
        ("--config.eval.vid4.degradation=blurry", "eval.vid4.degradation"),
        ("--config.model.residual=bilinear", "model.residual"),
    ],
)
def test_bad_configs_are_explained(override, message):
    c = common.apply_overrides(_config("ci"), [override])
    with pytest.raises(ConfigError, match=message):
        check_config(c, num_devices=8)


def test_offset_regex_selects_exactly_the_offset_convs():
    paths = zr.param_paths(_config("ci"))
    hits = [p for p in paths if re.search(zr.OFFSET_CONV_REGEX, p)]
    assert len(hits) == 36  # 18 DCN layers x (kernel, bias)
    assert all(p.endswith(("conv_offset_mask/kernel", "conv_offset_mask/bias")) for p in hits)
    assert "interp_pcd/forward_dir/l1/dcn/conv_offset_mask/kernel" in hits
    # The engine's optimizer applies the multiplier to those paths only.
    c = common.apply_overrides(
        _config("ci"), ["--config.optim.lr_multipliers=(('dcn/conv_offset_mask/', 0.0),)", "--config.optim.warmup_steps=0"]
    )
    tree = {}
    for p in paths:
        node = tree
        *parents, leaf = p.split("/")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = jnp.ones((2,), jnp.float32)
    opt = make_optimizer(c.optim, total_steps=10)
    updates, _ = opt.tx.update(tree, opt.tx.init(tree), tree)
    flat = {"/".join(str(getattr(k, "key", k)) for k in kp): v for kp, v in jax.tree_util.tree_flatten_with_path(updates)[0]}
    for p, u in flat.items():
        assert bool(jnp.all(u == 0)) == (p in hits), p


# ------------------------------------------------------------------------------------------------
# loss


class _FakeZSM:
    """Stands in for the network in the loss: returns given outputs (no compilation)."""

    def __init__(self, pred, aux):
        self.pred, self.aux = pred, aux

    def forward_with_aux(self, frames, *, monitor_offsets=False):
        assert monitor_offsets
        return self.pred, self.aux


def test_loss_terms_and_gfi_targets():
    """Rec term on all 7 frames; GFI targets = bicubic x1/4 of HR frames (0-based) 1,3,5 and 2,4."""
    c = common.apply_overrides(_config("ci,gfi=True"), [])
    rng = np.random.default_rng(1)
    hr = rng.random((2, 7, 16, 16, 3), np.float32)
    lr_all = imresize_np(hr.astype(np.float64), scale=0.25).astype(np.float32)  # independent MATLAB bicubic
    pred = hr + 0.1
    aux = {"offset_abs_mean": jnp.float32(3.0), "offset_abs_max": jnp.float32(5.0),
           "gfi_first": lr_all[:, [1, 3, 5]], "gfi_second": lr_all[:, [2, 4]]}
    loss, metrics = zr.make_loss_fn(c)({"G": _FakeZSM(pred, aux)}, {"lr": hr[:, ::2, ::4, ::4], "hr": hr}, None)
    rec = np.sum(np.sqrt(0.1**2 + 1e-6) * np.ones(hr.shape))
    eps = 1e-3
    gfi = eps * (lr_all[:, [1, 3, 5]].size + lr_all[:, [2, 4]].size)  # exact targets: sqrt(0 + eps^2) each
    np.testing.assert_allclose(float(metrics["loss/rec"]), rec, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss/gfi_first"]) + float(metrics["loss/gfi_second"]), gfi, rtol=2e-3)
    np.testing.assert_allclose(float(loss), rec + gfi, rtol=1e-5)
    assert float(metrics["monitor/offset_abs_mean"]) == 3.0 and float(metrics["monitor/offset_abs_max"]) == 5.0


def test_offset_warning_and_hooks():
    c = _config("ci")
    warn = zr.make_metric_warnings(c)
    assert warn(10, {"monitor/offset_abs_mean": 12.0}) == []
    lines = warn(10, {"monitor/offset_abs_mean": 51.0, "monitor/offset_abs_max": 80.0})
    assert len(lines) == 1 and "51.0" in lines[0] and "lr_multipliers" in lines[0]
    spec = zr.inference(c)
    assert spec.input_kind == "window" and spec.video_mode == {"window": 4, "stride": 3, "temporal_scale": 2}
    assert (spec.multiple, spec.scale, spec.output_frames(4)) == (4, 4, 7)


def test_image_grid_shows_the_middle_frame_of_videos():
    vid = np.zeros((2, 7, 4, 4, 3), np.float32)
    vid[:, 3] = 1.0
    grid = image_grid([vid[:, ::2], vid])  # 4 input frames -> frame 2 (zeros); 7 frames -> frame 3 (ones)
    assert grid[:4, :4].max() == 0.0 and grid[:4, 6:10].min() == 1.0


# ------------------------------------------------------------------------------------------------
# evaluation protocol pieces (no network)


def _clip(t: int, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    frames = [0.5 + 0.3 * np.sin(6 * x + 0.4 * k + 3 * y)[..., None] * rng.uniform(0.5, 1.0, 3) for k in range(t)]
    return ze.quantize(np.stack(frames))


def _oracle(lr: np.ndarray, gt: np.ndarray):
    """A 'model' that finds each window's position in the LR sequence and returns the true frames."""

    def apply(x):
        out = []
        for w in x:
            starts = [s for s in range(lr.shape[0]) if np.array_equal(lr[s], w[0])]
            s = starts[0]
            idx = np.minimum(np.arange(2 * s, 2 * s + 7), gt.shape[0] - 1)
            out.append(gt[idx])
        return np.stack(out)

    return apply


@pytest.mark.parametrize("t", [3, 7, 9, 13, 15])
def test_every_frame_scored_once_and_oracle_is_perfect(t):
    gt = _clip(t, seed=t)
    chain = ze.degradation_chain(_config("ci"), "clean")
    lr = ze.make_lr(gt[0::2], chain, (0, 0))
    r = ze.evaluate_clip(_oracle(lr, gt), gt, chain=chain, seed=(0, 0), batch=2)
    frames = sorted(int(r.run.plan[w].out_offset + l) for w, l in zip(r.run.window_of_frame, r.run.local_of_frame))
    assert frames == list(range(t))
    assert np.all(np.isinf(r.model["psnr_y"])) and np.allclose(r.model["ssim_y"], 1.0)
    assert np.all(np.isfinite(r.baseline["psnr_y"]))


def test_baseline_model_reproduces_the_baseline_numbers():
    gt = _clip(13, seed=3)
    chain = ze.degradation_chain(_config("ci"), "clean")
    r = ze.evaluate_clip(lambda x: np.stack([ze.baseline_frames(w, 4) for w in x]), gt, chain=chain, seed=(0, 0), batch=3)
    s = r.summary()
    for k in ("psnr_y", "ssim_y", "psnr_rgb", "psnr_y_key", "psnr_y_interp"):
        assert s[k] == s["bicubic_" + k], k


def _y(x: np.ndarray) -> np.ndarray:
    return (16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def test_metrics_match_numpy_and_skimage():
    gt = _clip(7, seed=5)
    seen = []
    noise = np.random.default_rng(2).normal(0, 0.03, (1, 7, 32, 32, 3)).astype(np.float32)

    def apply(x):
        seen.append(x.copy())
        return np.stack([ze.baseline_frames(w, 4) for w in x]) + noise

    chain = ze.degradation_chain(_config("ci"), "clean")
    r = ze.evaluate_clip(apply, gt, chain=chain, seed=(0, 0), batch=1)

    def same_8bit(a, b):  # equal 8-bit frames, allowing a rare rounding flip (float32 vs float64 paths)
        d = np.abs(np.asarray(a, np.float64) - b)
        assert d.max() <= 1 / 255 + 1e-6 and np.mean(d > 1e-6) < 1e-3

    # inputs: 8-bit MATLAB bicubic x1/4 of frames 1, 3, 5, 7 (1-based)
    lr = np.round(np.clip(imresize_np(gt[0::2].astype(np.float64), scale=0.25), 0, 1) * 255) / 255
    same_8bit(seen[0][0], lr)
    up = imresize_np(lr, scale=4.0)
    base = np.empty((7,) + up.shape[1:])
    base[0::2], base[1::2] = up, (up[:-1] + up[1:]) / 2
    base = np.round(np.clip(base, 0, 1) * 255) / 255
    same_8bit(r.baseline_output, base)
    same_8bit(r.output, np.round(np.clip(base + noise[0], 0, 1) * 255) / 255)
    for pred, scores in ((r.output, r.model), (r.baseline_output, r.baseline)):
        py = [peak_signal_noise_ratio(_y(g), _y(p), data_range=1.0) for g, p in zip(gt, pred)]
        sy = [structural_similarity(_y(g), _y(p), data_range=1.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False) for g, p in zip(gt, pred)]
        prgb = [peak_signal_noise_ratio(g.astype(np.float64), p, data_range=1.0) for g, p in zip(gt, pred)]
        np.testing.assert_allclose(scores["psnr_y"], py, rtol=1e-4)
        np.testing.assert_allclose(scores["ssim_y"], sy, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(scores["psnr_rgb"], prgb, rtol=1e-4)
    # per clip, then over clips
    r2 = ze.evaluate_clip(apply, _clip(9, seed=6), chain=chain, seed=(0, 1), batch=1)
    m = ze.mean_results([r, r2])
    assert m["psnr_y"] == pytest.approx((np.mean(r.model["psnr_y"]) + np.mean(r2.model["psnr_y"])) / 2)
    assert (m["n_clips"], m["n_frames"]) == (2, 16)


def test_prepare_clip_cuts_to_odd_frames_and_scale_multiples():
    x = np.random.default_rng(0).random((10, 37, 50, 3)).astype(np.float32)
    y = ze.prepare_clip(x, crop=(30, 45))
    assert y.shape == (9, 28, 44, 3)
    np.testing.assert_array_equal(y * 255, np.round(y * 255))


# ------------------------------------------------------------------------------------------------
# the ci preset through the engine on 8 fake devices


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    from restore_jax.api import make_trainer

    c = _config("ci")
    c.mesh.shape = (4, 2)
    c.sharding.fsdp_min_size = 0
    c.log.console = False
    c.checkpoint.async_save = False
    trainer = make_trainer(c)
    workdir = tmp_path_factory.mktemp("zsm_ci")
    result = trainer.fit(workdir)
    return trainer, workdir, result


@pytest.fixture(scope="module")
def single_forward(ci_run):
    """Single-device jitted ``G.forward_with_aux(lr, monitor_offsets=True)`` on pure-dict params."""
    trainer = ci_run[0]
    graphdef = trainer.graphdefs["G"]
    device = jax.devices()[0]

    def fwd(params, lr):
        return nnx.merge(graphdef, params).forward_with_aux(lr, monitor_offsets=True)

    fn = jax.jit(fwd)
    return lambda params, lr: fn(jax.device_put(params, device), jax.device_put(lr, device))


def test_ci_trains_and_runs_both_evaluators(ci_run):
    _, workdir, result = ci_run
    assert result.step == 4 and result.skipped_steps == 0
    last = result.history[-1]
    for key in ("loss/rec", "monitor/offset_abs_mean", "monitor/offset_abs_max"):
        assert key in last and np.isfinite(last[key])
    assert 0 < last["monitor/offset_abs_mean"] <= last["monitor/offset_abs_max"]  # offsets start to move
    ev = result.eval_results
    for prefix in ("vid4", "vimeo"):
        for k in ("psnr_y", "ssim_y", "psnr_rgb", "bicubic_psnr_y", "bicubic_ssim_y", "bicubic_psnr_rgb"):
            assert np.isfinite(ev[f"{prefix}/{k}"]), (prefix, k)
    assert ev["vid4/n_frames"] == 7 and ev["vimeo/n"] == 8
    saved = json.loads((workdir / "eval" / "4.json").read_text())
    assert any("vid4" in t for t in saved["tables"]) and any("vimeo" in t for t in saved["tables"])
    assert (workdir / "samples" / "final_0000004.png").is_file()


def test_sharded_forward_equals_single_device(ci_run, single_forward):
    trainer = ci_run[0]
    state = ci_run[2].state
    variables = trainer.eval_params(state)
    lr = np.random.default_rng(0).random((8, 4, 8, 8, 3)).astype(np.float32)
    from restore_jax.train.mesh import make_global_batch

    sharded = trainer.predict_fn(variables, make_global_batch({"lr": lr}, trainer.mesh))
    assert len(sharded.sharding.device_set) == 8
    single = single_forward(jax.device_get(variables["params"]["G"]), lr)[0]
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), rtol=1e-5, atol=1e-6)


def test_offset_monitor_zero_at_init_and_matches_torch_hooks(ci_run, single_forward):
    trainer = ci_run[0]
    init = jax.device_get(trainer.init_state().params["G"])
    lr = np.random.default_rng(1).random((8, 4, 8, 8, 3)).astype(np.float32)
    _, aux = single_forward(init, lr)
    assert float(aux["offset_abs_mean"]) == 0.0 and float(aux["offset_abs_max"]) == 0.0

    # Non-trivial offsets: redraw every offset/mask conv.
    rng = np.random.default_rng(2)

    def perturb(path, x):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if "conv_offset_mask" in name:
            return rng.normal(0.0, 0.5, x.shape).astype(np.float32)
        return np.asarray(x)

    params = jax.tree_util.tree_map_with_path(perturb, init)
    _, aux = single_forward(params, lr)
    layers = np.asarray(aux["offset_abs_layers"])
    assert layers.shape == (18,) and layers.min() > 0.1

    model = nnx.merge(trainer.graphdefs["G"], params)
    ref = ZSMTorch.from_config(zr.zsm_config(trainer.config.model))
    transplant_from_nnx(ref, model)
    calls: dict[str, list[float]] = {}

    def hook(name):
        def fn(module, inputs, output):
            o1, o2, _ = torch.chunk(output, 3, dim=1)
            calls.setdefault(name, []).append(float(torch.cat([o1, o2], 1).abs().mean()))

        return fn

    for name, module in ref.named_modules():
        if name.endswith("dcn.offset_mask"):
            module.register_forward_hook(hook(name[: -len(".offset_mask")]))
    with torch.no_grad():
        ref(torch.from_numpy(lr).permute(0, 1, 4, 2, 3).contiguous())
    order = [f"{p}.{d}.lvl{lv}.dcn" for p in ("dfi_align", "rnn.h_align.align", "rnn.c_align.align")
             for d in ("a_to_b", "b_to_a") for lv in (3, 2, 1)]
    # every call of a layer sees the same number of offsets: the layer mean is the mean of its calls
    expected = np.array([np.mean(calls[n]) for n in order])
    np.testing.assert_allclose(layers, expected, rtol=1e-4)
    np.testing.assert_allclose(float(aux["offset_abs_mean"]), expected.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(aux["offset_abs_max"]), expected.max(), rtol=1e-4)


def test_shared_clips_and_vimeo_folder_load(shared_data):
    """Real inputs of the two protocols: a held-out face video and the Vimeo-layout septuplet."""
    clip = ze.load_clip(shared_data / "face_video" / "d0.mp4", 0, 8)
    gt = ze.prepare_clip(clip, crop=(256, 256))
    assert clip.shape == (8, 512, 512, 3) and gt.shape == (7, 256, 256, 3)

    class Ctx:
        config = _config("ci")

    s = ze.vimeo_septuplet_config(root=str(shared_data / "vimeo_septuplet"))
    (batch,) = list(ze._vimeo_folder_batches(Ctx(), s, 2))
    assert batch["hr"].shape == (2, 7, 64, 112, 3) and batch["lr"].shape == (2, 4, 16, 28, 3)
    assert batch["mask"].tolist() == [1.0, 0.0]
    expected = np.round(np.clip(imresize_np(batch["hr"][0, 0::2].astype(np.float64), scale=0.25), 0, 1) * 255) / 255
    assert np.abs(batch["lr"][0] - expected).max() <= 1 / 255 + 1e-6
