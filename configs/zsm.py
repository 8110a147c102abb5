"""``zsm``: Zooming Slow-Mo, one-stage space-time video super-resolution (x4 space, x2 time; restore_jax/methods/zsm/README.md).

Presets (``--config configs/zsm.py:<preset>[,knob=value...]``):

- ``paper``: the published hyper-parameters (spec seed_001 §A.5, peer_implementations §1.1): the
  11,102,771-parameter network (nf 64, 8 deformable groups, 5 + 40 residual blocks), Adam lr 4e-4
  with betas (0.9, 0.99), cosine annealing with restarts every 150k updates down to 1e-7
  (``cosine_restarts``, 4 periods), 600k updates, batch 16 (the released training file; the thesis
  says 24), LR 32x32 / HR 128x128 patches, random flips, quarter turns and time reversal,
  Charbonnier summed over all pixels, no EMA, no clipping. Data: Vimeo-90K septuplets (``vimeo_septuplet``
  source; point ``--config.data.source.kwargs.root`` at your copy, the folder holding
  ``sep_trainlist.txt``, ``sep_testlist.txt`` and ``sequences/``); evaluation on the Vimeo test list
  and the four Vid4 clips (``data/Vid4/{calendar,city,foliage,walk}``; clean bicubic LR).
- ``small``: a model for a 2-core CPU: nf 16, 2 deformable groups, 2 + 6 residual blocks (525,999
  parameters), LR 16x16 / HR 64x64 windows, batch 4, 1,000 steps of Adam 1e-3 (cosine, 50 warm-up
  steps), EMA 0.99; ~1 s/step on an idle 2-core CPU (1.6-4 s/step measured on a shared one, see
  restore_jax/methods/zsm/README.md). Not in the paper: ``model.residual='bicubic'`` adds the bicubic + frame-averaging
  baseline to the output (last conv zero-initialised), so the short run starts at the baseline and
  learns a correction (``--config.model.residual=none`` for the plain network). Data: 7-frame windows
  of the shared face videos (``../shared/data/face_video``; ``d3``, ``d11``, ``d12`` train, ``d18``
  and ``d0`` held out). Evaluation: ``vid4`` on the two held-out clips (25 frames, centre 256x256
  crop at native resolution) and ``vimeo_septuplet`` on the held-out windows.
- ``ci``: a tiny network on synthetic face sequences (32 px), a few steps: seconds of training on
  CPU (tests); needs nothing from ``../shared``.

Knobs: ``steps=N`` (train steps); ``degradation=clean|noisy|jpeg`` (LR frames: MATLAB bicubic x1/4;
then Gaussian noise (sigma 25.5/255, an assumption - the thesis cites ToFlow without a value) plus
10 % salt-and-pepper; or JPEG at a quality factor drawn from 10-40 per clip);
``data=faces|synthetic|vimeo`` (training source; the pipeline reads one source per run, so face
videos and synthetic sequences are alternatives, not a mixture); ``gfi=True`` (the thesis's guided
feature interpolation losses).
"""

from __future__ import annotations

from restore_jax import config as rc

PRESETS = ("paper", "small", "ci")
DEGRADATIONS = ("clean", "noisy", "jpeg")
DATA = ("faces", "synthetic", "vimeo")
FACE_VIDEO_TRAIN = ("d3.mp4", "d11.mp4", "d12.mp4")
FACE_VIDEO_HELD_OUT = ("d18.mp4", "d0.mp4")
VID4_CLIPS = ("data/Vid4/calendar", "data/Vid4/city", "data/Vid4/foliage", "data/Vid4/walk")


def degradation_chain(kind: str, scale: int = 4) -> list:
    """LR degradation steps of a variant (``restore_jax.degradations.Compose`` format)."""
    down = ("downsample", {"factor": float(scale), "method": "bicubic"})
    if kind == "clean":
        return [down]
    if kind == "noisy":  # seed_001 §A.2: Gaussian + 10 % salt-and-pepper "as in ToFlow"
        return [down, ("mixed_noise", {"sigma": 25.5, "amount": 0.1})]
    if kind == "jpeg":  # seed_001 §A.2: QF 10-40 (one draw per clip)
        return [down, ("jpeg", {"quality": (10, 40), "per_frame": False})]
    raise rc.ConfigError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")


def _source(kind: str, *, size: int, num_train: int, num_val: int) -> dict:
    if kind == "faces":
        videos = rc.shared_data("face_video")
        return {
            "name": "video",
            "kwargs": {"paths": [str(videos / f) for f in FACE_VIDEO_TRAIN], "window": 7, "stride": 1},
            "splits": {
                "val": {"paths": [str(videos / f) for f in FACE_VIDEO_HELD_OUT], "stride": 7},
                "test": {"paths": [str(videos / f) for f in FACE_VIDEO_HELD_OUT], "stride": 7},
            },
        }
    if kind == "synthetic":
        return {
            "name": "synthetic_faces",
            "kwargs": {"size": size, "num_examples": num_train, "seed": 0, "mode": "sequence", "num_frames": 7},
            "splits": {"val": {"num_examples": num_val}, "test": {"num_examples": num_val}},
        }
    if kind == "vimeo":
        return {
            "name": "vimeo_septuplet",
            "kwargs": {"root": "data/vimeo_septuplet", "num_frames": 7},
            "splits": {"val": {"split": "test"}, "test": {"split": "test"}},
        }
    raise rc.ConfigError(f"unknown data {kind!r}; choose one of {', '.join(DATA)}")


def _data_config(source: dict, *, hr_size: int, degradation: str, workers: int):
    d = rc.data_config("septuplet")
    d.source = rc.ConfigDict(source)
    d.builder.kwargs = rc.ConfigDict(
        {
            "hr_size": hr_size,
            "scale": 4,
            "lr_indices": (0, 2, 4, 6),
            "hflip_prob": 0.5,
            "vflip_prob": 0.5,  # with hflip + quarter turns: all 8 dihedral poses
            "rot90_prob": 0.5,
            "reverse_prob": 0.5,  # random temporal reversal (random_reverse: true)
            "degradation": degradation_chain(degradation),
        }
    )
    d.num_workers = workers
    return d


def get_config(arg: str | None = None):
    a = rc.parse_arg(arg, presets=PRESETS, default="small", steps=0, degradation="clean", data="", gfi=False)
    if a.degradation not in DEGRADATIONS:
        raise rc.ConfigError(f"unknown degradation {a.degradation!r}; choose one of {', '.join(DEGRADATIONS)}")
    c = rc.base_config()
    c.method = "zsm"
    c.seed = 0
    c.preset = a.preset

    c.model = rc.ConfigDict()
    c.model.nf = 64
    c.model.groups = 8
    c.model.front_blocks = 5
    c.model.back_blocks = 40
    c.model.scale = 4
    c.model.gfi = bool(a.gfi)
    c.model.gfi_blocks = 5
    c.model.residual = "none"  # the paper: no global skip; 'bicubic' adds the two-stage baseline
    c.model.unroll = True  # unrolled scans: same numbers, much faster backward on CPU, longer compile
    c.model.offset_warn = 50.0  # console warning when mean |offset| (LR pixels) exceeds this
    c.model.input_key = "lr"
    c.model.target_key = "hr"

    c.loss = rc.ConfigDict()
    c.loss.eps = 1e-3  # Charbonnier sqrt(d^2 + eps^2): 1e-6 inside the root, as the reference
    c.loss.reduction = "sum"  # the reference sums over batch, frames, pixels; 'mean' averages
    c.loss.pixel_weight = 1.0
    c.loss.gfi_first_weight = 1.0  # lambda_2, lambda_3 of Eq. 6.10: not given in the thesis
    c.loss.gfi_second_weight = 1.0

    c.eval.protocols = ("vid4", "vimeo_septuplet")
    # settings that differ from the protocols' defaults (restore_jax/methods/zsm/eval.py)
    c.eval.vid4 = rc.ConfigDict()
    c.eval.vimeo_septuplet = rc.ConfigDict()

    if a.preset == "paper":
        data = a.data or "vimeo"
        c.model.unroll = False  # accelerators: rolled scans compile fast and run well
        c.data = _data_config(_source(data, size=256, num_train=100_000, num_val=100), hr_size=128,
                              degradation=a.degradation, workers=8)
        c.train.num_steps = 600_000
        c.train.global_batch_size = 16  # train_zsm.yml; the thesis reports 24
        c.optim = rc.optim_config(
            lr=4e-4, b1=0.9, b2=0.99, eps=1e-8, schedule="cosine_restarts",
            restart_periods=(150_000,) * 4, restart_weights=(1.0,) * 4, min_lr_ratio=1e-7 / 4e-4,
        )
        c.train.ema_decay = 0.0
        c.checkpoint.every_steps = 5000
        c.checkpoint.best_metric = "vimeo/psnr_y"
        c.eval.every_steps = 50_000
        c.log.every_steps = 100
        c.log.image_every_steps = 5000
        c.eval.vid4.clips = VID4_CLIPS
        c.eval.vid4.crop = ()
        c.eval.vid4.max_frames = 0
        c.eval.vid4.degradation = "clean" if a.degradation == "clean" else "data"
        if data == "vimeo":  # full 448x256 test septuplets rather than the training crops
            c.eval.vimeo_septuplet.root = c.data.source.kwargs.root
            c.eval.vimeo_septuplet.list_split = "test"
        c.eval.vimeo_septuplet.batch_size = 8
    elif a.preset == "small":
        data = a.data or "faces"
        c.model.nf, c.model.groups, c.model.front_blocks, c.model.back_blocks = 16, 2, 2, 6
        c.model.gfi_blocks = 2
        c.model.residual = "bicubic"  # short CPU run: learn a correction of bicubic + averaging
        c.data = _data_config(_source(data, size=96, num_train=20_000, num_val=48), hr_size=64,
                              degradation=a.degradation, workers=1)
        c.train.num_steps = 1000
        c.train.global_batch_size = 4
        c.optim = rc.optim_config(lr=1e-3, b1=0.9, b2=0.99, schedule="cosine", warmup_steps=50, min_lr_ratio=0.01)
        c.train.ema_decay = 0.99
        c.checkpoint.every_steps = 250
        c.checkpoint.best_metric = ""
        c.log.every_steps = 25
        c.log.image_every_steps = 250
        c.eval.vimeo_septuplet.batch_size = 4
        if data != "faces":
            c.eval.vid4.clips = ()  # synthetic sequences
    else:  # ci
        data = a.data or "synthetic"
        c.model.nf, c.model.groups, c.model.front_blocks, c.model.back_blocks = 8, 2, 1, 1
        c.model.gfi_blocks = 1
        c.model.unroll = False  # tests: the shortest compile
        c.data = _data_config(_source(data, size=32, num_train=64, num_val=8), hr_size=32,
                              degradation=a.degradation, workers=0)
        c.train.num_steps = 4
        c.train.global_batch_size = 8
        c.optim = rc.optim_config(lr=4e-4, b1=0.9, b2=0.99, schedule="cosine", warmup_steps=1)
        c.train.ema_decay = 0.5
        c.checkpoint.every_steps = 2
        c.log.every_steps = 2
        c.log.image_every_steps = 4
        c.log.num_images = 2
        c.eval.vid4.clips = ()  # synthetic sequences: no ../shared needed
        c.eval.vid4.synthetic_clips = 1
        c.eval.vid4.synthetic_frames = 7
        c.eval.vid4.synthetic_size = 32
        c.eval.vid4.crop = ()
    if a.steps:
        c.train.num_steps = int(a.steps)
    return c
