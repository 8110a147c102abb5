"""``baseline_sr``: residual x4 face SR (the engine's reference method).

Presets (``--config configs/baseline_sr.py:<preset>``):

- ``paper``: EDSR-baseline hyper-parameters (Lim et al., CVPRW 2017: 16 residual blocks of 64
  channels, 48x48 LR patches, batch 16, Adam lr 1e-4 with beta (0.9, 0.999), lr halved every 200k
  updates, L1 loss, 300k updates) on 256-px synthetic faces;
- ``small``: 8 blocks x 48 channels, 20k steps — a useful model on one GPU in well under an hour;
- ``demo``: 8 blocks x 32 channels, 64-px faces, ~600 steps — a few minutes on a laptop CPU, beats
  bicubic on held-out synthetic faces (and reports real faces from ``../shared/data/faces128/val``
  when that folder exists);
- ``ci``: a tiny network and a handful of steps — seconds on CPU (tests and smoke runs).

Extra argument knobs: ``steps=N`` overrides the step count (e.g. ``:demo,steps=100``).
"""

from __future__ import annotations

from restore_jax import config as rc

PRESETS = ("paper", "small", "demo", "ci")


def _data_config(*, image_size: int, hr_size: int, scale: int, num_train: int, num_val: int, workers: int):
    d = rc.data_config("sr_pair")
    d.source.kwargs.size = image_size
    d.source.kwargs.num_examples = num_train
    d.source.splits.val.num_examples = num_val
    d.source.splits.test.num_examples = num_val
    d.builder.kwargs.hr_size = hr_size
    d.builder.kwargs.scale = scale
    d.num_workers = workers
    return d


def get_config(arg: str | None = None):
    a = rc.parse_arg(arg, presets=PRESETS, default="demo", steps=0)
    c = rc.base_config()
    c.method = "baseline_sr"
    c.seed = 0
    c.preset = a.preset

    c.model = rc.ConfigDict()
    c.model.scale = 4
    c.model.channels = 32
    c.model.num_blocks = 8
    c.model.res_scale = 1.0
    c.model.skip = "bicubic"  # global skip: MATLAB bicubic upsampling of the input
    c.model.input_key = "lr"
    c.model.target_key = "hr"

    c.loss = rc.ConfigDict()
    c.loss.kind = "charbonnier"
    c.loss.eps = 1e-3

    c.eval.protocols = ("sr_psnr_ssim",)
    c.eval.sr_psnr_ssim = rc.ConfigDict()  # settings that differ from the protocol's defaults

    if a.preset == "paper":
        c.model.channels, c.model.num_blocks = 64, 16
        c.loss.kind = "l1"
        c.data = _data_config(image_size=256, hr_size=192, scale=4, num_train=100_000, num_val=100, workers=8)
        c.train.num_steps = 300_000
        c.train.global_batch_size = 16
        c.optim = rc.optim_config(
            lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, schedule="exponential", decay_rate=0.5, steps_per_epoch=200_000
        )
        c.train.ema_decay = 0.999
        c.checkpoint.every_steps = 5000
        c.checkpoint.best_metric = "synthetic/psnr"
        c.eval.every_steps = 5000
        c.log.every_steps = 100
        c.log.image_every_steps = 5000
    elif a.preset == "small":
        c.model.channels, c.model.num_blocks = 48, 8
        c.data = _data_config(image_size=128, hr_size=96, scale=4, num_train=20_000, num_val=100, workers=4)
        c.train.num_steps = 20_000
        c.train.global_batch_size = 32
        c.optim = rc.optim_config(lr=5e-4, schedule="cosine", warmup_steps=500, min_lr_ratio=0.01, grad_clip_norm=1.0)
        c.train.ema_decay = 0.999
        c.checkpoint.every_steps = 2000
        c.checkpoint.best_metric = "synthetic/psnr"
        c.eval.every_steps = 2000
        c.log.every_steps = 100
        c.log.image_every_steps = 2000
    elif a.preset == "demo":
        c.data = _data_config(image_size=64, hr_size=64, scale=4, num_train=2000, num_val=100, workers=0)
        c.train.num_steps = 600
        c.train.global_batch_size = 16
        c.optim = rc.optim_config(lr=1e-3, schedule="cosine", warmup_steps=30, min_lr_ratio=0.05, grad_clip_norm=1.0)
        c.train.ema_decay = 0.99
        c.checkpoint.every_steps = 200
        c.log.every_steps = 25
        c.log.image_every_steps = 200
        c.eval.sr_psnr_ssim.num_examples = 96
    else:  # ci
        c.model.channels, c.model.num_blocks = 8, 2
        c.data = _data_config(image_size=32, hr_size=32, scale=4, num_train=64, num_val=16, workers=0)
        c.train.num_steps = 6
        c.train.global_batch_size = 8
        c.optim = rc.optim_config(lr=1e-3, schedule="cosine", warmup_steps=2)
        c.train.ema_decay = 0.9
        c.checkpoint.every_steps = 3
        c.log.every_steps = 2
        c.log.image_every_steps = 3
        c.log.num_images = 2
        c.eval.sr_psnr_ssim.num_examples = 16
        c.eval.sr_psnr_ssim.real_max_examples = 16
    if a.steps:
        c.train.num_steps = int(a.steps)
    return c
