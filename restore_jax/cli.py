"""``restore-jax`` command line.

    restore-jax train --config configs/<method>.py:<preset> --workdir DIR [--config.x=y ...]
    restore-jax eval  --config configs/<method>.py:<preset> --workdir DIR [--checkpoint STEP] [--config.x=y ...]
    restore-jax restore --checkpoint DIR [--step N] INPUT OUTPUT [--tile 256] [--overlap 32]
    restore-jax export  --checkpoint DIR --out BUNDLE_DIR [--step N]

``train`` starts or resumes (from the latest good checkpoint in ``DIR``) a run; ``eval`` runs the
method's evaluation protocols on a saved checkpoint and writes ``DIR/eval/<step>.json``.
``restore`` runs a checkpoint (its saved config, EMA weights) on an image file or a folder of images;
``export`` writes a ``jax.export`` bundle of it (``docs/inference.md``).
Multi-process runs: see ``launch/README.md`` (``RESTORE_JAX_*`` environment variables).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence

EPILOG = (
    "Overrides: any config field as --config.<section>.<field>=VALUE, e.g. --config.optim.lr=5e-4 "
    "--config.train.num_steps=2000. Presets: --config configs/baseline_sr.py:demo (paper | small | demo | ci)."
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="restore-jax",
        description="Controllable face and video restoration in JAX: training, evaluation, restoration and export.",
        epilog=EPILOG,
        allow_abbrev=False,
    )
    sub = p.add_subparsers(dest="command", metavar="{train,eval,restore,export}")
    sub.required = True
    for name, help_text in (
        ("train", "train (or resume) a method from a config"),
        ("eval", "evaluate a saved checkpoint with the method's protocols"),
    ):
        s = sub.add_parser(name, help=help_text, epilog=EPILOG, allow_abbrev=False)
        s.add_argument("--config", required=True, help="config file and preset, e.g. configs/baseline_sr.py:demo")
        s.add_argument("--workdir", required=True, help="run directory (checkpoints, TensorBoard logs, samples, eval)")
        if name == "eval":
            s.add_argument("--checkpoint", type=int, default=None, help="step to evaluate (default: latest)")
    r = sub.add_parser("restore", help="restore an image or a folder of images with a trained checkpoint", allow_abbrev=False)
    r.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/<step> folder)")
    r.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    r.add_argument("input", help="image file or folder of images")
    r.add_argument("output", help="output image file (input is a file) or folder (input is a folder)")
    r.add_argument("--tile", type=int, default=None, help="process in tiles of this size (input pixels); default: whole image")
    r.add_argument("--overlap", type=int, default=None, help="tile overlap in input pixels (default: min(32, tile/4))")
    e = sub.add_parser("export", help="export a trained checkpoint to a jax.export bundle", allow_abbrev=False)
    e.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/<step> folder)")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    e.add_argument("--out", required=True, help="bundle directory to write (must be empty or absent)")
    e.add_argument("--platforms", default=None, help="comma-separated lowering platforms, e.g. cpu,cuda (default: current backend)")
    return p


def _fail(message: str, code: int = 2) -> int:
    print(f"restore-jax: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command in ("restore", "export"):
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _inference_command(args)

    from restore_jax.train.errors import CheckpointError, ConfigError, NonFiniteError

    try:
        from restore_jax.train import config_loading

        config_loading.ensure_configs_importable()
        from configs import common

        overrides = common.parse_override_args(extra)
        config = config_loading.load_config(args.config, overrides)
        workdir = pathlib.Path(args.workdir).expanduser()
        if args.command == "eval" and not workdir.is_dir():
            return _fail(f"workdir {workdir} does not exist; train first with: restore-jax train --config {args.config} --workdir {workdir}")

        from restore_jax.train import distributed

        distributed.initialize()
        if args.command == "train":
            return _train(config, workdir, args.config)
        return _eval(config, workdir, args.checkpoint)
    except (ConfigError, CheckpointError) as e:
        return _fail(str(e))
    except NonFiniteError as e:
        return _fail(str(e), code=3)
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)


def _train(config, workdir: pathlib.Path, spec: str) -> int:
    import jax

    from restore_jax.train.loop import Trainer

    main_process = jax.process_index() == 0
    if main_process:
        print(f"restore-jax train: {spec} -> {workdir}", flush=True)
    t0 = time.perf_counter()
    trainer = Trainer(config)
    result = trainer.fit(workdir)
    if main_process:
        wall = time.perf_counter() - t0
        status = "stopped early" if result.stopped_early else "done"
        print(
            f"{status}: step {result.step}/{config.train.num_steps} in {wall:.1f} s "
            f"(training loop {result.wall_time_s:.1f} s); checkpoints in {workdir / 'checkpoints'}; "
            f"TensorBoard: tensorboard --logdir {workdir / 'tb'}",
            flush=True,
        )
    return 0


def _eval(config, workdir: pathlib.Path, step: int | None) -> int:
    import jax

    from restore_jax.train.loop import evaluate_checkpoint

    main_process = jax.process_index() == 0
    log = print if main_process else (lambda *_: None)
    step, results, tables = evaluate_checkpoint(config, workdir, step=step, log=log)
    if main_process:
        for t in tables:
            print(t)
        if not tables:
            for k, v in sorted(results.items()):
                print(f"{k}: {v:.6g}")
        print(f"results written to {workdir / 'eval' / f'{step}.json'}", flush=True)
    return 0


def _inference_command(args) -> int:
    """``restore`` / ``export``: user errors (missing checkpoint, bad paths / images / tiles) exit 2."""
    from restore_jax.inference.image_io import ImageReadError
    from restore_jax.inference.restorer import Restorer, RestorerError

    try:
        if args.command == "restore":
            src, dst = pathlib.Path(args.input), pathlib.Path(args.output)
            if not src.exists():
                return _fail(f"input {src} does not exist (an image file or a folder of images)")
            if src.is_file() and dst.is_dir():
                dst = dst / (src.stem + ".png")
            if src.is_file() and dst.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
                return _fail(f"output {dst} needs an image extension (.png, .jpg, .webp) or an existing folder")
            if args.overlap is not None and args.tile is None:
                return _fail("--overlap needs --tile (e.g. --tile 256 --overlap 32)")
            restorer = Restorer.from_checkpoint(args.checkpoint, step=args.step)
            print(f"restore-jax restore: {restorer}", flush=True)
            if src.is_dir():
                written = restorer.restore_folder(src, dst, tile=args.tile, overlap=args.overlap)
                print(f"wrote {len(written)} image(s) to {dst}", flush=True)
            else:
                out = restorer.restore_file(src, dst, tile=args.tile, overlap=args.overlap)
                print(f"wrote {out}", flush=True)
            return 0
        out = pathlib.Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            return _fail(f"--out {out} exists and is not an empty folder; choose a new bundle directory")
        restorer = Restorer.from_checkpoint(args.checkpoint, step=args.step)
        platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip()) if args.platforms else None
        try:
            path = restorer.export(out, platforms=platforms)
        except ValueError as e:  # the model cannot be lowered with symbolic shapes: not the user's input
            lines = str(e).splitlines()
            short = lines[0][:400] + (f" ... {lines[-1]}" if len(lines) > 1 else "")
            return _fail(f"cannot export {restorer.method} step {restorer.step}: {short}", code=1)
        print(f"restore-jax export: {restorer} -> {path}", flush=True)
        return 0
    except (RestorerError, ImageReadError, FileExistsError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)


if __name__ == "__main__":
    sys.exit(main())
