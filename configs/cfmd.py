"""``cfmd``: CFMD-GAN, continuous facial motion deblurring with a moment control ``u`` (restore_jax/methods/cfmd/README.md).

Presets (``--config configs/cfmd.py:<preset>[,knob=value...]``):

- ``paper``: the paper's settings (spec seed_002_003 §A4-A5): the full generator (widths 32/64/128,
  8 ContAda blocks per stage) and the U-Net discriminator (64-512 channels), Adam 1e-4 with betas
  (0.9, 0.999) for both nets, decayed x0.99 per epoch (an epoch = 1,500 steps, i.e. the 12,000
  random samples per epoch of the released code at batch 8), batch 8, 256^2 crops after random
  scaling 1.0-1.5, N in {5, 7, 9, 11, 13}, 200 epochs (300k steps); loss weights 1 / 0.01 / 0.1 /
  0.05 and lambda_Q 0.05. Data: synthetic motion sequences rendered at 384 px, or 300VW with
  ``vw300=/path/to/300VW`` (83/9 split, see input_pipelines/vw300.py).
- ``small``: CPU-trainable in ~30 min on 2 cores: widths 16/32/64, 1 ContAda block per stage
  (CADC and CACA on), a 4-level discriminator of 16-128 channels, 64^2 crops, batch 4, Adam 5e-4 (G)
  and 2e-4 (D) without decay, EMA 0.995, 1,500 steps; the generator starts exactly at the blurred
  input (bilinear input pyramid, zero output convs: engineering options, off in ``paper``); data:
  synthetic sequences (96 px renders, gentle head motion ``motion_scale=1`` plus a straight-line
  drift of 0.75-1.5 head units/s within 20 degrees of the horizontal: the left eye travels ~5 px
  over 13 frames) mixed with the shared face videos (``../shared/data/face_video``, clip ``d11``
  held out) when that folder exists.
- ``ci``: tiny networks, 32^2 crops, a few steps, no LPIPS, no shared data: seconds (tests).

Knobs: ``steps=N`` (train steps); ``ablation=none|no_cadc|no_caca|no_fmr`` (Table 5: without the
deformable conv, without channel attention, time order instead of FMR); ``plain=True`` (the plain
deblurring baseline: the same generator with ``u`` fixed at 0.5, no discriminator, supervised
Charbonnier (+LPIPS) against the middle re-ordered frame); ``face_video=False`` (synthetic only);
``vw300=<root>`` (300VW instead of synthetic sequences).
"""

from __future__ import annotations

from restore_jax import config as rc

PRESETS = ("paper", "small", "ci")
ABLATIONS = ("none", "no_cadc", "no_caca", "no_fmr")


def _synthetic_source(
    size: int, num_train: int, num_val: int, motion_scale: float = 4.0, drift: float = 0.0, drift_angle: float = 180.0
) -> dict:
    """Synthetic talking/moving-head sequences of 13 frames at 60 fps (exact landmarks); ``drift`` adds
    straight-line head motion (head units per second) within ``drift_angle`` degrees of the horizontal."""
    return {
        "name": "synthetic_faces",
        "kwargs": {
            "size": size,
            "num_examples": num_train,
            "seed": 0,
            "mode": "sequence",
            "num_frames": 13,
            "fps": 60.0,
            "motion_scale": float(motion_scale),
            "drift": float(drift),
            "drift_angle": float(drift_angle),
        },
        "splits": {"val": {"num_examples": num_val}, "test": {"num_examples": num_val}},
    }


def _data_config(source: dict, *, crop: int, workers: int, scale_range=(1.0, 1.5)):
    d = rc.data_config("frame_average_blur")
    d.source = rc.ConfigDict(source)
    d.builder.name = "cfmd_blur"
    d.builder.kwargs = rc.ConfigDict(
        {
            "num_frames": [5, 7, 9, 11, 13],
            "crop_size": crop,
            "scale_range": tuple(scale_range),
            "gamma": 1.0,
            "reorder": "fmr",
            "face_crop": True,
            "face_margin": 0.3,
        }
    )
    d.num_workers = workers
    return d


def get_config(arg: str | None = None):
    a = rc.parse_arg(arg, presets=PRESETS, default="small", steps=0, ablation="none", plain=False, face_video=True, vw300="")
    if a.ablation not in ABLATIONS:
        raise rc.ConfigError(f"unknown ablation {a.ablation!r}; choose one of {', '.join(ABLATIONS)}")
    c = rc.base_config()
    c.method = "cfmd"
    c.seed = 0
    c.preset = a.preset

    m = c.model = rc.ConfigDict()
    m.widths = (32, 64, 128)
    m.blocks_per_stage = 8
    m.mapping_layers = 8
    m.mapping_width = 64
    m.control_features = 64
    m.use_deformable = True  # CADC (ablation no_cadc: plain 3x3 conv)
    m.use_channel_attention = True  # CACA (ablation no_caca)
    m.attention_reduction = 16
    m.remat_blocks = False
    m.unroll_blocks = False  # True: unrolled block loop (faster backward on XLA:CPU, longer compile)
    m.input_pyramid = "nearest"  # MIMO-UNet; 'bilinear': the labels' resize (short runs start at the input)
    m.zero_init_outputs = False  # True: zero output convs, training starts exactly at the blurred input
    m.d_base_features = 64
    m.d_channel_multipliers = (1, 2, 4, 8)
    m.d_spectral_norm = True
    m.d_power_iterations = 1
    m.controllable = not a.plain  # False: the plain deblurring baseline (u = 0.5, no GAN)
    m.ablation = a.ablation
    m.input_key = "blurred"
    m.target_key = "target"
    m.control_key = "u_target"

    lo = c.loss = rc.ConfigDict()
    lo.charbonnier_eps = 1e-3
    lo.pixel_weight = 1.0
    lo.perceptual_weight = 0.01
    lo.perceptual_net = "alex"
    lo.adversarial_weight = 0.1
    lo.regression_weight = 0.05  # lambda_ar (G)
    lo.q_weight = 0.05  # lambda_Q (D, real and fake)

    c.train.step_kind = "supervised" if a.plain else "gan"
    c.gan.loss = "ns"  # BCE on logits (the spec's corrected signs)
    c.gan.d_steps_per_step = 1
    c.gan.g_every = 1

    c.eval.protocols = ("cfmd_s2s", "cfmd_s2v")
    # settings that differ from the protocols' defaults (restore_jax/methods/cfmd/eval.py)
    c.eval.cfmd_s2s = rc.ConfigDict()
    c.eval.cfmd_s2v = rc.ConfigDict()

    if a.preset == "paper":
        source = (
            {"name": "vw300", "kwargs": {"root": a.vw300, "window": 13, "stride": 5}, "splits": {}}
            if a.vw300
            else _synthetic_source(384, 100_000, 200)
        )
        c.data = _data_config(source, crop=256, workers=8)
        c.train.num_steps = 300_000
        c.train.global_batch_size = 8
        c.optim = rc.optim_config(lr=1e-4, b1=0.9, b2=0.999, schedule="exponential", decay_rate=0.99, steps_per_epoch=1500)
        c.optim_D = rc.optim_config(lr=1e-4, b1=0.9, b2=0.999, schedule="exponential", decay_rate=0.99, steps_per_epoch=1500)
        c.train.ema_decay = 0.0  # the paper keeps no EMA
        c.checkpoint.every_steps = 7500
        c.checkpoint.best_metric = "s2s/synthetic_faces/psnr" if not a.vw300 else "s2s/vw300/psnr"
        c.eval.every_steps = 15_000
        c.log.every_steps = 100
        c.log.image_every_steps = 5000
        for s in (c.eval.cfmd_s2s, c.eval.cfmd_s2v):
            s.num_examples = 200
    elif a.preset == "small":
        m.widths, m.blocks_per_stage = (16, 32, 64), 1
        m.unroll_blocks = True
        m.input_pyramid, m.zero_init_outputs = "bilinear", True
        m.d_base_features, m.d_channel_multipliers = 16, (1, 2, 4, 8)
        parts = [dict(_synthetic_source(96, 4000, 48, motion_scale=1.0, drift=1.5, drift_angle=20.0), repeat=1)]
        if a.face_video and rc.shared_data("face_video").is_dir():
            parts.append(
                {"name": "face_video", "kwargs": {"paths": str(rc.shared_data("face_video")), "window": 13, "stride": 1}, "splits": {}, "repeat": 1}
            )
        source = {"name": "mixture", "kwargs": {"parts": parts}, "splits": {}} if len(parts) > 1 else parts[0]
        if len(parts) == 1:
            source.pop("repeat")
        c.data = _data_config(source, crop=64, workers=2)
        c.train.num_steps = 1500
        c.train.global_batch_size = 4
        # A 1,500-step run keeps D near chance, so its gradient is mostly noise; at the paper's
        # 0.1 / 0.05 it drowned the pixel term and the generator never left the blurred input.
        lo.adversarial_weight, lo.regression_weight = 0.005, 0.005
        c.optim = rc.optim_config(lr=5e-4, b1=0.9, b2=0.999)
        c.optim_D = rc.optim_config(lr=2e-4, b1=0.9, b2=0.999)
        c.train.ema_decay = 0.995
        c.checkpoint.every_steps = 250
        c.checkpoint.best_metric = ""
        c.log.every_steps = 25
        c.log.image_every_steps = 500
        for s in (c.eval.cfmd_s2s, c.eval.cfmd_s2v):
            s.num_examples = 24
            s.batch_size = 8
    else:  # ci
        m.widths, m.blocks_per_stage = (8, 8, 8), 1
        m.unroll_blocks = True
        m.mapping_layers, m.mapping_width, m.control_features = 2, 8, 8
        m.d_base_features, m.d_channel_multipliers = 8, (1, 2)
        lo.perceptual_weight = 0.0
        c.data = _data_config(_synthetic_source(48, 32, 8), crop=32, workers=0)
        c.train.num_steps = 4
        c.train.global_batch_size = 8
        c.optim = rc.optim_config(lr=1e-3)
        c.optim_D = rc.optim_config(lr=1e-3)
        c.train.ema_decay = 0.5
        c.checkpoint.every_steps = 2
        c.checkpoint.async_save = False
        c.log.every_steps = 2
        c.log.image_every_steps = 0
        c.log.num_images = 2
        for s in (c.eval.cfmd_s2s, c.eval.cfmd_s2v):
            s.num_examples = 8
            s.frame_counts = (5, 7)
            s.face_video_dir = "none"
            s.identity = "off"
            s.lpips = True
    if a.ablation == "no_cadc":
        m.use_deformable = False
    elif a.ablation == "no_caca":
        m.use_channel_attention = False
    elif a.ablation == "no_fmr":
        c.data.builder.kwargs.reorder = "none"
    if a.steps:
        c.train.num_steps = int(a.steps)
    return c
