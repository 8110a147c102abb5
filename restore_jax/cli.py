"""``restore-jax`` command line.

    restore-jax train --config configs/<method>.py:<preset> --workdir DIR [--config.x=y ...]
    restore-jax train --config <method>:<preset> --workdir DIR          # the configs shipped with the package
    restore-jax eval  --config configs/<method>.py:<preset> --workdir DIR [--checkpoint STEP] [--config.x=y ...]
    restore-jax restore --checkpoint DIR [--step N] [--method M] INPUT OUTPUT [--tile 256] [--overlap 32]
                        [--<control> VALUE ...] [--frames K [--sweep-control NAME]] [--fps F]
    restore-jax export  --checkpoint DIR --out BUNDLE_DIR [--step N]

``train`` starts or resumes (from the latest good checkpoint in ``DIR``) a run; ``eval`` runs the
method's evaluation protocols on a saved checkpoint and writes ``DIR/eval/<step>.json``.
``restore`` runs a checkpoint (its saved config, EMA weights) on an image file, a folder of images or
a video file; ``--frames K`` sweeps the method's ``[0, 1]`` control over one image. Its control
options (``--u`` for CFMD) are generated from the checkpoint's method, so ``restore`` parses in two
stages: ``--checkpoint`` first, then the method's options. ``export`` writes a ``jax.export`` bundle
(``docs/inference.md``).
Multi-process runs: see ``launch/README.md`` (``RESTORE_JAX_*`` environment variables).

This module and :mod:`restore_jax.api` are the only places that turn a method id into a
:class:`~restore_jax.methods.api.Method`; a method outside the package is named with
``--config.method_module=pkg.mod`` or an installed ``restore_jax.methods`` entry point.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
import warnings
from collections.abc import Sequence


def _quiet_library_startup() -> None:
    """Environment defaults set before anything imports TensorFlow (CLU's TensorBoard writer does):
    no oneDNN / CPU-feature / "All log messages before absl::InitializeLog()" INFO lines in every
    run. ``setdefault`` only: a value the person exported wins (``TF_CPP_MIN_LOG_LEVEL=0`` shows
    them again). Level 1 hides INFO only; warnings and errors of TensorFlow and XLA still print."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # TF is used for TensorBoard/TFDS I/O only


_quiet_library_startup()  # at import: `restore-jax` (the entry point) and `python -m restore_jax.cli`

EPILOG = (
    "Overrides: any config field as --config.<section>.<field>=VALUE, e.g. --config.optim.lr=5e-4 "
    "--config.train.num_steps=2000; kwargs sections also take new keys, e.g. --config.data.source.name=image_folder "
    "--config.data.source.kwargs.root=/data/faces. Presets: --config configs/baseline_sr.py:demo (paper | small | demo | ci), "
    "or by method id from any folder: --config baseline_sr:demo."
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
        s.add_argument("--config", required=True, help="config file and preset (configs/baseline_sr.py:demo) or method id and preset (baseline_sr:demo)")
        s.add_argument("--workdir", required=True, help="run directory (checkpoints, TensorBoard logs, samples, eval)")
        if name == "eval":
            s.add_argument("--checkpoint", type=int, default=None, help="step to evaluate (default: latest)")
    r = sub.add_parser(
        "restore", help="restore images, a folder, a video, or sweep a control, with a trained checkpoint",
        description=RESTORE_DESCRIPTION, epilog=RESTORE_EPILOG, allow_abbrev=False,
    )
    _add_restore_args(r)
    e = sub.add_parser("export", help="export a trained checkpoint to a jax.export bundle", allow_abbrev=False)
    e.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/<step> folder)")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    e.add_argument("--out", required=True, help="bundle directory to write (must be empty or absent)")
    e.add_argument("--platforms", default=None, help="comma-separated lowering platforms, e.g. cpu,cuda (default: current backend)")
    return p


VIDEO_INPUTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif")  # = restorer.VIDEO_EXTENSIONS (no import here)
RESTORE_DESCRIPTION = (
    "Restore an image file, a folder of images or a video file with a trained checkpoint (EMA weights, the "
    "config saved with it); or, with --frames K, write K restorations of one image sweeping the method's "
    "[0, 1] control."
)
RESTORE_EPILOG = (
    "Method controls (e.g. --u for cfmd) are options generated from the checkpoint's method: they appear "
    "after --checkpoint, e.g. `restore-jax restore --checkpoint RUN --help` lists them. "
    "Video inputs: " + " ".join(VIDEO_INPUTS) + "; outputs .mp4 .mov .mkv .gif, a folder, or a PNG pattern "
    "like out/f_%04d.png."
)


def _add_restore_args(r: argparse.ArgumentParser, hooks: dict | None = None) -> None:
    """The ``restore`` options; ``hooks`` (from the checkpoint's config) adds one ``--<name>`` per control."""
    r.add_argument("--checkpoint", required=True, help="training workdir (or its checkpoints/<step> folder)")
    r.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    r.add_argument("--method", default=None, help="method id the checkpoint must have (a check; default: any)")
    r.add_argument("input", help="image file, folder of images, or video file (" + " ".join(VIDEO_INPUTS) + ")")
    r.add_argument(
        "output",
        help="image file / folder (image inputs); .mp4 .mov .mkv .gif, a folder or a PNG pattern (videos, --frames)",
    )
    r.add_argument("--tile", type=int, default=None, help="process in tiles of this size (input pixels); default: whole image")
    r.add_argument("--overlap", type=int, default=None, help="tile overlap in input pixels (default: min(32, tile/4))")
    r.add_argument(
        "--frames", type=int, default=None, metavar="K",
        help="sweep: K restorations of one image with the method's [0, 1] control at i/K (i = 0..K-1), written "
        "as a PNG sequence (OUTPUT a folder or a pattern like out/u_%%02d.png), .gif or .mp4",
    )
    r.add_argument(
        "--faces", type=int, default=None, metavar="CROP",
        help="whole photo: detect and align every face to a CROPxCROP input crop (the size the model was trained "
        "on), restore it and paste it back; needs the face-api weights (RESTORE_JAX_FACE_API)",
    )
    r.add_argument("--face-template", choices=("ffhq", "chip"), default="ffhq",
                   help="framing of the model's training crops for --faces (default: ffhq)")
    r.add_argument("--sweep-control", default=None, metavar="NAME", help="control --frames varies (default: the only [0, 1] one)")
    r.add_argument(
        "--fps", type=float, default=None,
        help="frame rate of a written video (default: the input's times the method's temporal scale; 10 for --frames)",
    )
    if not hooks or not hooks["controls"]:
        return
    g = r.add_argument_group(f"controls of method {hooks['method']}")
    taken = {a.dest for a in r._actions}
    for name, spec in hooks["controls"].items():
        if name in taken or name.replace("-", "_") in taken:
            raise ValueError(f"method {hooks['method']!r}: control {name!r} collides with a restore option; rename it")
        rng = f"range [{spec.min}, {spec.max}], " if (spec.min is not None or spec.max is not None) else ""
        shape = f"{len(spec.shape) and 'comma-separated, shape ' + str(spec.shape) + ', ' or ''}"
        g.add_argument(
            f"--{name}", dest=f"control__{name}", type=_control_parser(name, spec), default=None, metavar="VALUE",
            help=f"{spec.description or name} ({shape}{rng}default {spec.default})".replace("%", "%%"),
        )


def _control_parser(name: str, spec):
    """argparse ``type`` for one control: a number, or comma-separated numbers for a vector control."""
    import numpy as np

    def parse(text: str):
        try:
            values = [float(v) for v in text.split(",")] if spec.shape else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--{name} expects {'comma-separated numbers' if spec.shape else 'a number'}, got {text!r}") from None
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != tuple(spec.shape):
            raise argparse.ArgumentTypeError(f"--{name} expects {int(np.prod(spec.shape))} comma-separated values, got {text!r}")
        return arr if spec.shape else float(arr)

    return parse


# Exit codes: 0 done; 1 the model cannot be exported (export); 2 a user error (nothing written,
# or nothing more after the error); 3 training stopped on a non-finite step; 4 restore of a folder
# finished but some images could not be restored (the others were written; the failures listed);
# 130 interrupted. See docs/inference.md, "Failure modes".
EXIT_PARTIAL = 4
# `train` stopped by SIGTERM (preemption) after its checkpoint was committed: 128 + SIGTERM(15), what
# a shell reports for a process killed by SIGTERM, so schedulers (Slurm requeue, Kubernetes) and
# wrapper scripts see "terminated, resumable" rather than success (0) or an error (1, 2). Also when
# checkpointing is disabled (then the message says that nothing was saved). See docs/engine.md,
# "Failure modes".
EXIT_PREEMPTED = 143


def _fail(message: str, code: int = 2) -> int:
    print(f"restore-jax: error: {message}", file=sys.stderr)
    return code


def _one_line_warnings() -> None:
    """Warnings this package gives people (e.g. an unreadable checkpoint skipped) as one stderr line,
    without the source line Python adds; other libraries' warnings keep the default format."""
    package = str(pathlib.Path(__file__).resolve().parent)
    default = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if str(filename).startswith(package):
            return f"restore-jax: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the process's entry point (not a call from Python code or tests)
        _one_line_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "restore":  # two-stage parsing: its options depend on the checkpoint
        return _restore_main(argv[1:])
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "export":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _inference_command(args)

    from restore_jax.errors import CheckpointError, ConfigError, NonFiniteError, WorkdirLockedError

    try:
        from restore_jax import api
        from restore_jax.config import parse_override_args

        overrides = parse_override_args(extra)
        config = api.load_config(args.config, overrides)
        method = api.method_for(config)
        workdir = pathlib.Path(args.workdir).expanduser()
        problem = _workdir_problem(workdir)
        if problem:
            return _fail(problem)
        if args.command == "eval" and not workdir.is_dir():
            return _fail(f"workdir {workdir} does not exist; train first with: restore-jax train --config {args.config} --workdir {workdir}")

        from restore_jax.train import distributed

        distributed.initialize()
        if args.command == "train":
            return _train(config, method, workdir, args.config)
        return _eval(config, method, workdir, args.checkpoint)
    except (ConfigError, CheckpointError, WorkdirLockedError) as e:
        return _fail(str(e))
    except NonFiniteError as e:
        return _fail(str(e), code=3)
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)


def _workdir_problem(workdir: pathlib.Path) -> str | None:
    """Why ``workdir`` cannot be a run folder (it, or a folder above it, is a file), else None."""
    for p in (workdir, *workdir.absolute().parents):
        if p.exists():
            if p.is_dir():
                return None
            what = "is a file" if p == workdir else f"cannot be created: {p} is a file"
            return f"--workdir {workdir} {what}; give a folder (created if missing)"
    return None


def _train(config, method, workdir: pathlib.Path, spec: str) -> int:
    import jax

    from restore_jax.train.loop import Trainer

    main_process = jax.process_index() == 0
    if main_process:
        print(f"restore-jax train: {spec} -> {workdir}", flush=True)
    t0 = time.perf_counter()
    trainer = Trainer(config, method)
    result = trainer.fit(workdir)
    if main_process:
        wall = time.perf_counter() - t0
        status = "stopped by SIGTERM" if result.preempted else "stopped early" if result.stopped_early else "done"
        print(
            f"{status}: step {result.step}/{config.train.num_steps} in {wall:.1f} s "
            f"(training loop {result.wall_time_s:.1f} s); checkpoints in {workdir / 'checkpoints'}; "
            f"TensorBoard: tensorboard --logdir {workdir / 'tb'}",
            flush=True,
        )
    if result.preempted:
        if main_process:
            saved = f"checkpoint of step {result.checkpoint_step} committed" if result.checkpoint_step is not None else "no checkpoint saved"
            print(f"restore-jax train: exiting with {EXIT_PREEMPTED} (preempted; {saved})", file=sys.stderr, flush=True)
        return EXIT_PREEMPTED
    return 0


def _eval(config, method, workdir: pathlib.Path, step: int | None) -> int:
    import jax

    from restore_jax.train.loop import evaluate_checkpoint

    main_process = jax.process_index() == 0
    log = print if main_process else (lambda *_: None)
    step, results, tables = evaluate_checkpoint(config, method, workdir, step=step, log=log)
    if main_process:
        for t in tables:
            print(t)
        if not tables:
            for k, v in sorted(results.items()):
                print(f"{k}: {v:.6g}")
        print(f"results written to {workdir / 'eval' / f'{step}.json'}", flush=True)
    return 0


def _restore_parser(hooks: dict | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="restore-jax restore", description=RESTORE_DESCRIPTION, epilog=RESTORE_EPILOG, allow_abbrev=False
    )
    _add_restore_args(p, hooks)
    return p


def _restore_main(argv: list[str]) -> int:
    """``restore``: read ``--checkpoint`` first, load its config (no weights), add the method's
    control options, then parse everything. User errors exit with code 2."""
    from restore_jax import api
    from restore_jax.errors import ConfigError
    from restore_jax.inference.restorer import RestorerError, inference_hooks, read_checkpoint_config

    stage1 = argparse.ArgumentParser(prog="restore-jax restore", add_help=False, allow_abbrev=False)
    stage1.add_argument("--checkpoint", default=None)
    stage1.add_argument("--step", default=None)  # a bad value is reported by the full parser below
    stage1.add_argument("-h", "--help", action="store_true")
    known, _ = stage1.parse_known_args(argv)
    step = int(known.step) if known.step is not None and known.step.lstrip("-").isdigit() else None
    hooks = method = None
    if known.checkpoint is not None:
        try:
            config = read_checkpoint_config(known.checkpoint, step)
            method = api.method_for(config)
            hooks = inference_hooks(method.inference_spec(config), method.id)
        except RestorerError as e:
            if not known.help:
                return _fail(str(e))
        except ConfigError as e:  # a method this installation does not know
            return _fail(f"the checkpoint's method cannot be loaded: {e}")
    try:
        parser = _restore_parser(hooks)
    except ValueError as e:
        return _fail(str(e))
    if known.help:
        parser.print_help()
        if hooks is None:
            print("\n(no readable --checkpoint given: method controls are not listed)")
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra:
        names = [f"--{n}" for n in (hooks or {}).get("controls", {})]
        accepted = f"method {hooks['method']!r} accepts the controls {', '.join(names) or '(none)'}" if hooks else ""
        options = [a.split("=", 1)[0] for a in extra if a.startswith("-")]
        what = f"unknown option(s) {' '.join(options)}" if options else f"unrecognized arguments: {' '.join(extra)}"
        return _fail(what + (f"; {accepted}" if accepted else ""))
    controls = {k[len("control__"):]: v for k, v in vars(args).items() if k.startswith("control__") and v is not None}
    return _restore_command(args, method, hooks, controls)


def _restore_command(args, method, hooks: dict, controls: dict) -> int:
    from restore_jax.inference.image_io import (
        ImageReadError,
        check_frames_output,
        check_restored_output,
        read_image_for_restore,
    )
    from restore_jax.inference.restorer import (
        VIDEO_EXTENSIONS,
        FolderRestoreError,
        Restorer,
        RestorerError,
        check_not_input,
        plan_folder,
    )

    try:
        src, dst = pathlib.Path(args.input), pathlib.Path(args.output)
        if not src.exists():
            return _fail(f"input {src} does not exist (an image file, a folder of images or a video file)")
        if args.method is not None and args.method != hooks["method"]:
            return _fail(
                f"--method {args.method} does not match the checkpoint: {args.checkpoint} was trained for method "
                f"{hooks['method']!r} (drop --method or pass another --checkpoint)"
            )
        if args.overlap is not None and args.tile is None:
            return _fail("--overlap needs --tile (e.g. --tile 256 --overlap 32)")
        if args.fps is not None and not args.fps > 0:
            return _fail(f"--fps must be positive, got {args.fps}")
        is_video = src.is_file() and src.suffix.lower() in VIDEO_EXTENSIONS
        if args.sweep_control is not None and args.frames is None:
            return _fail("--sweep-control needs --frames K")
        if args.faces is not None and (not src.is_file() or is_video or args.frames is not None or args.tile is not None):
            return _fail("--faces restores the faces of one photo: give an image file, without --frames or --tile")
        if args.frames is not None or is_video:
            if args.frames is not None and (not src.is_file() or is_video):
                return _fail(f"--frames sweeps a control over one image; {src} is not an image file")
            if args.frames is not None and args.frames < 1:
                return _fail(f"--frames must be >= 1, got {args.frames}")
            try:
                check_frames_output(dst)
            except ValueError as e:
                return _fail(str(e))
        else:
            if args.fps is not None:
                return _fail("--fps applies to video inputs and --frames sweeps only")
            if src.is_file() and dst.is_dir():
                dst = dst / (src.stem + ".png")
            if src.is_file() and dst.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
                return _fail(f"output {dst} needs an image extension (.png, .jpg, .webp) or an existing folder")
            # Checked before the checkpoint is loaded: inputs are never overwritten, names never
            # collide, and an alpha channel never reaches a JPEG after the model ran.
            if src.is_dir():
                plan_folder(src, dst)
            else:
                check_not_input(src, dst)
                if dst.suffix.lower() in (".jpg", ".jpeg"):
                    try:
                        check_restored_output(dst, read_image_for_restore(src)[1])
                    except ImageReadError:
                        raise
                    except ValueError as e:  # alpha into a JPEG
                        return _fail(str(e))
        if (args.frames is not None or is_video) and check_frames_output(dst) == "video":
            check_not_input(src, dst)
        restorer = Restorer.from_checkpoint(args.checkpoint, method, step=args.step)
        print(f"restore-jax restore: {restorer}", flush=True)
        tiles = {"tile": args.tile, "overlap": args.overlap}
        if args.frames is not None:
            name = restorer.sweep_control(args.sweep_control)
            if name in controls:
                return _fail(f"--{name} is what --frames sweeps (values i/{args.frames}); do not pass it too")
            out = restorer.sweep_file(src, dst, control=name, num=args.frames, fps=args.fps or 10.0, **tiles, **controls)
            print(f"wrote {args.frames} frames ({name} = i/{args.frames}) to {out}", flush=True)
        elif is_video:
            out = restorer.video(src, dst, fps=args.fps, **tiles, **controls)
            print(f"wrote {out}", flush=True)
        elif args.faces is not None:
            out, n = restorer.restore_faces_file(src, dst, crop_size=args.faces, template=args.face_template, **controls)
            print(f"restored {n} face(s); wrote {out}", flush=True)
        elif src.is_dir():
            try:
                written = restorer.restore_folder(src, dst, **tiles, **controls)
            except FolderRestoreError as e:  # the others were written: say so, then list the failures
                print(f"wrote {len(e.written)} image(s) to {dst}", flush=True)
                return _fail(str(e), code=EXIT_PARTIAL)
            print(f"wrote {len(written)} image(s) to {dst}", flush=True)
        else:
            out = restorer.restore_file(src, dst, **tiles, **controls)
            print(f"wrote {out}", flush=True)
        return 0
    except (RestorerError, ImageReadError, FileExistsError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)


def _inference_command(args) -> int:
    """``export``: user errors (missing checkpoint, bad paths) exit 2, a model that cannot be lowered 1."""
    from restore_jax import api
    from restore_jax.errors import ConfigError
    from restore_jax.inference.export import check_platforms
    from restore_jax.inference.restorer import RestorerError

    try:
        try:  # before loading or writing anything: jax.export would lower for any name
            platforms = None if args.platforms is None else check_platforms(args.platforms)
        except ValueError as e:
            return _fail(f"--platforms {args.platforms}: {e}")
        out = pathlib.Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            return _fail(f"--out {out} exists and is not an empty folder; choose a new bundle directory")
        restorer = api.load_restorer(args.checkpoint, step=args.step)
        try:
            path = restorer.export(out, platforms=platforms)
        except RestorerError:
            raise
        except ValueError as e:  # the model cannot be lowered with symbolic shapes: not the user's input
            lines = str(e).splitlines()
            short = lines[0][:400] + (f" ... {lines[-1]}" if len(lines) > 1 else "")
            return _fail(f"cannot export {restorer.method} step {restorer.step}: {short}", code=1)
        print(f"restore-jax export: {restorer} -> {path}", flush=True)
        return 0
    except (RestorerError, FileExistsError, ConfigError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)


if __name__ == "__main__":
    sys.exit(main())
