"""Finding a training checkpoint and its config snapshot for inference (no weights are read here).

``find_checkpoint`` resolves a workdir, its ``checkpoints`` folder or one ``checkpoints/<step>``
folder; ``read_checkpoint_config`` reads the run's config saved next to a step (the newest readable
one by default). :class:`RestorerError` is the user-error type of the whole inference package.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import warnings
from typing import Union

PathLike = Union[str, os.PathLike]

__all__ = ["CheckpointLocation", "RestorerError", "find_checkpoint", "load_checkpoint", "read_checkpoint_config"]


class RestorerError(ValueError):
    """A user error: missing checkpoint, unknown control, bad input shape (the message says what to do)."""


@dataclasses.dataclass(frozen=True)
class CheckpointLocation:
    directory: pathlib.Path  # <workdir>/checkpoints
    step: int


def _steps_in(directory: pathlib.Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / "state").is_dir())


def find_checkpoint(path: PathLike, step: int | None = None) -> CheckpointLocation:
    """Resolve a workdir, its ``checkpoints`` folder or one ``checkpoints/<step>`` folder.

    Raises :class:`RestorerError` naming what was looked for when nothing matches.
    """
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise RestorerError(
            f"checkpoint path {p} does not exist; pass a training workdir (containing checkpoints/<step>/state), "
            "e.g. the --workdir of restore-jax train"
        )
    if p.name.isdigit() and (p / "state").is_dir():  # a single step folder
        if step is not None and step != int(p.name):
            raise RestorerError(f"{p} is the checkpoint of step {p.name}, but step={step} was requested")
        return CheckpointLocation(p.parent.absolute(), int(p.name))
    directory = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    steps = _steps_in(directory)
    if not steps:
        raise RestorerError(
            f"no checkpoints found: looked for {p / 'checkpoints'}/<step>/state and {p}/<step>/state; "
            f"train first (restore-jax train --config ... --workdir {p}) or pass the right workdir"
        )
    if step is None:
        return CheckpointLocation(directory.absolute(), steps[-1])
    if step not in steps:
        raise RestorerError(f"no checkpoint for step {step} in {directory}; available steps: {steps}")
    return CheckpointLocation(directory.absolute(), int(step))


def _is_step_folder(path: PathLike) -> bool:
    p = pathlib.Path(path).expanduser()
    return p.name.isdigit() and (p / "state").is_dir()


def _short_reason(e: BaseException) -> str:
    """One line for a skipped checkpoint: the reader's error without TensorStore's spec dump."""
    from restore_jax.train.checkpointing import short_error

    cause = e.__cause__
    return short_error(cause, 160) if cause is not None else short_error(e, 200).split(": ", 1)[-1]


def _read_config(loc: CheckpointLocation):
    """The run's config snapshot (``<step>/config``, Orbax JSON) as a ``ConfigDict``."""
    import ml_collections

    cfg_dir = loc.directory / str(loc.step) / "config"
    candidates = [cfg_dir / "metadata"] if cfg_dir.is_dir() else []
    candidates += sorted(q for q in cfg_dir.glob("*") if q.is_file() and q.name != "commit_success.txt") if cfg_dir.is_dir() else []
    for f in candidates:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "method" in data:
            return ml_collections.ConfigDict(data)
    raise RestorerError(
        f"checkpoint {loc.directory / str(loc.step)} has no readable config snapshot (looked for {cfg_dir}/metadata); "
        "it was not written by restore-jax train"
    )


def read_checkpoint_config(workdir_or_path: PathLike, step: int | None = None):
    """The config snapshot of a checkpoint (no weights loaded); :class:`RestorerError` if none.

    Without ``step`` (and given a workdir, not a step folder): the newest step whose snapshot is
    readable (``from_checkpoint`` warns about the skipped ones)."""
    loc = find_checkpoint(workdir_or_path, step)
    if step is not None or _is_step_folder(workdir_or_path):
        return _read_config(loc)
    first_error = None
    for s in sorted((s for s in _steps_in(loc.directory) if s <= loc.step), reverse=True):
        try:
            return _read_config(CheckpointLocation(loc.directory, s))
        except RestorerError as e:
            first_error = first_error or e
    raise first_error if first_error is not None else RestorerError(f"no checkpoints in {loc.directory}")


def load_checkpoint(workdir_or_path: PathLike, method, *, step: int | None = None):
    """``(config, location, trainer, restored)`` of a checkpoint, for inference.

    Without ``step`` the newest *readable* step is used; unreadable newer ones are skipped with one
    warning naming them and ``--step`` (never moved aside: a training run may own the folder). The
    ``Trainer`` is built on ONE device whatever mesh the run trained on (the restore target is
    re-sharded), so any device count loads any checkpoint; ``config`` is the run's own snapshot.
    """
    import jax
    import ml_collections

    from restore_jax.errors import CheckpointError, ConfigError
    from restore_jax.train.checkpointing import CheckpointManager
    from restore_jax.train.loop import Trainer
    from restore_jax.train.mesh import make_mesh

    loc = find_checkpoint(workdir_or_path, step)
    explicit = step is not None or _is_step_folder(workdir_or_path)
    # Default (no step): the newest *readable* step; unreadable newer ones are skipped with a
    # warning (never moved: a training run may own this folder).
    candidates = [loc.step] if explicit else sorted((s for s in _steps_in(loc.directory) if s <= loc.step), reverse=True)
    skipped: list[tuple[int, str]] = []
    trainer = config = restored = None
    ckpt = CheckpointManager(loc.directory, every_steps=1, async_save=False)
    try:
        for s in candidates:
            here = CheckpointLocation(loc.directory, s)
            try:
                step_config = _read_config(here)
            except RestorerError as e:
                if explicit:
                    raise
                skipped.append((s, "no readable config snapshot"))
                continue
            if step_config.method != method.id:
                raise RestorerError(f"checkpoint {here.directory / str(s)} is a {step_config.method!r} run, not {method.id!r}")
            if trainer is None or step_config.to_dict() != config.to_dict():
                try:
                    # Inference runs on one device whatever mesh the run trained on (the
                    # restore target is re-sharded), so any device count can load any checkpoint.
                    one = ml_collections.ConfigDict(step_config.to_dict())
                    one.mesh.shape = (1,) * len(tuple(one.mesh.axes))
                    trainer = Trainer(one, method, mesh=make_mesh(one.mesh, devices=jax.devices()[:1]))
                except (ConfigError, KeyError) as e:
                    raise RestorerError(f"the config saved with {here.directory / str(s)} cannot build the model: {e}") from e
            config = step_config
            try:
                restored = ckpt.restore(trainer.abstract_restore_target(), step=s)
            except CheckpointError as e:
                if explicit:
                    raise RestorerError(str(e)) from e
                skipped.append((s, _short_reason(e)))
                continue
            loc = here
            break
    finally:
        ckpt.close()
    if restored is None:
        reasons = "; ".join(f"step {s}: {r}" for s, r in skipped)
        raise RestorerError(
            f"no checkpoint in {loc.directory} is readable ({reasons}). --step N restores a specific step; "
            "retrain (or restore the files from a backup) if none is usable"
        )
    if skipped:
        bad = ", ".join(f"step {s} ({r})" for s, r in skipped)
        warnings.warn(
            f"latest checkpoint(s) of {loc.directory} unreadable: {bad}; using step {loc.step}, the newest readable "
            "one (--step N chooses another)",
            RuntimeWarning,
            stacklevel=3,
        )
    return config, loc, trainer, restored
