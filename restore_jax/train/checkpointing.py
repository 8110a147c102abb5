"""Checkpointing adapter: the only module that imports Orbax.

Layout (``<workdir>/checkpoints/<step>/``, one directory per saved step, written atomically by
Orbax — a directory appears only once complete)::

    state/      the TrainState (Orbax StandardSave: OCDBT/Zarr arrays, any sharding)
    data_iter/  Grain iterator position, one process_<i>-of-<n>.json per process
    config/     the run's config as JSON (provenance; ``restore-jax eval`` reads the method from it)

Policies: save every ``every_steps`` steps, on a preemption notice (multi-process runs: the JAX
preemption sync point), and when the caller forces it (end of training, SIGTERM in single-process
runs); keep the latest ``keep_last`` plus the ``keep_best`` best by an eval metric.

Restore always goes through an abstract tree of ``jax.ShapeDtypeStruct(..., sharding=...)`` built
from *our* sharding rules for the *current* mesh, so a checkpoint written on 8 devices restores onto
4 (or any mesh the rules fit). If the newest checkpoint cannot be read (truncated or corrupt files),
it is moved to ``<workdir>/checkpoints_corrupt/`` with a one-line warning and the previous one is
tried; nothing is deleted. A failed read leaves TensorStore futures behind whose late callbacks
would print dozens to thousands of "Event loop is closed" / "Future exception was never
retrieved" tracebacks: those (and only those) are filtered (:func:`quiet_failed_reads`), so a
corrupt checkpoint costs the person one readable line. Incomplete saves
(``<step>.orbax-checkpoint-tmp*`` left by a killed run) are removed by
:func:`remove_stale_tmp_dirs` when training starts (under the workdir lock).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import re
import shutil
import sys
import time
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from restore_jax.errors import CheckpointError
from restore_jax.train.paths import path_str

log = logging.getLogger(__name__)

__all__ = ["CheckpointManager", "Restored", "TMP_SUFFIX", "quiet_failed_reads", "remove_stale_tmp_dirs", "short_error"]

TMP_SUFFIX = ".orbax-checkpoint-tmp"  # Orbax's in-progress directory suffix (atomic rename on commit)


def short_error(e: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, without TensorStore's JSON spec dump, at most ``limit`` characters."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = re.sub(r"\s*\[tensorstore_spec=.*$", "", text)
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_read_leftover(exc: BaseException | None) -> bool:
    """An exception TensorStore/asyncio raise *after* a failed Orbax read has returned."""
    if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
        return True  # a TensorStore callback on the closed event loop of the failed read
    text = str(exc)
    return isinstance(exc, ValueError) and ("tensorstore_spec" in text or "OCDBT" in text or '"zarr" driver' in text)


class _LeftoverLogFilter(logging.Filter):
    """Drops asyncio's "Future/Task exception was never retrieved" records for TensorStore read errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "exception was never retrieved" not in record.getMessage():
            return True
        exc = record.exc_info[1] if record.exc_info else None
        text = record.getMessage()
        return not (_is_read_leftover(exc) or "tensorstore_spec" in text or "OCDBT" in text)


def _from_closed_loop_callback(tb) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "call_soon_threadsafe":
            return True
        tb = tb.tb_next
    return False


def _leftover_unraisable_hook(previous):
    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and not _from_closed_loop_callback(unraisable.exc_traceback):
            previous(unraisable)  # a closed loop elsewhere: not ours to hide
        elif _is_read_leftover(exc):
            return
        else:
            previous(unraisable)

    hook._restore_jax_leftovers = True  # noqa: SLF001 - marker: installed once
    return hook


def quiet_failed_reads() -> None:
    """Filter the late noise of failed TensorStore reads (idempotent; other messages pass through).

    Failed reads leave futures behind; when they complete, TensorStore calls into the closed event
    loop (printed through ``sys.unraisablehook``) and asyncio logs "Future exception was never
    retrieved" at garbage collection: tens to thousands of tracebacks for one corrupt checkpoint,
    after the error was already reported in one line."""
    if not getattr(sys.unraisablehook, "_restore_jax_leftovers", False):
        sys.unraisablehook = _leftover_unraisable_hook(sys.unraisablehook)
    aio = logging.getLogger("asyncio")
    if not any(isinstance(f, _LeftoverLogFilter) for f in aio.filters):
        aio.addFilter(_LeftoverLogFilter())


@contextlib.contextmanager
def _quiet_restore():
    """Around one restore attempt: the leftover filters, and Orbax's/TensorStore's own log records of
    the failure (absl / orbax loggers, ERROR and below) held back; the caller reports the failure."""
    quiet_failed_reads()
    loggers = [logging.getLogger(n) for n in ("absl", "orbax", "tensorstore")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def remove_stale_tmp_dirs(directory: str | pathlib.Path) -> list[pathlib.Path]:
    """Delete ``<step>.orbax-checkpoint-tmp*`` folders in ``directory`` (saves a killed run never
    committed: incomplete by construction, never restored) and return them. Call it only while no
    other run writes to ``directory`` (``Trainer.fit`` holds the workdir lock). Process 0 deletes;
    all processes synchronise."""
    directory = pathlib.Path(directory)
    removed: list[pathlib.Path] = []
    if jax.process_index() == 0 and directory.is_dir():
        for p in sorted(directory.iterdir()):
            if TMP_SUFFIX in p.name and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("restore_jax_remove_stale_tmp")
    return removed


@dataclasses.dataclass
class Restored:
    step: int
    state: Any
    config: dict | None


def _grain_args():
    import grain  # local: grain registers its Orbax handlers on import

    return grain.checkpoint.CheckpointSave, grain.checkpoint.CheckpointRestore


class CheckpointManager:
    """Save/restore ``TrainState`` + data-iterator position + config under ``directory``."""

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        every_steps: int,
        keep_last: int = 3,
        keep_best: int = 0,
        best_metric: str = "",
        best_mode: str = "max",
        async_save: bool = True,
    ):
        self.directory = pathlib.Path(directory).absolute()
        self.corrupt_dir = self.directory.parent / (self.directory.name + "_corrupt")
        self.quarantined: list[pathlib.Path] = []  # moved aside by this manager's restores
        self.best_metric = best_metric
        keep = [policies.LatestN(n=int(keep_last))]
        if best_metric and keep_best > 0:
            keep.append(
                policies.BestN(
                    get_metric_fn=lambda m, k=best_metric: float(m[k]),
                    reverse=(best_mode == "min"),  # Orbax BestN: reverse=False keeps the highest
                    n=int(keep_best),
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=policies.AnySavePolicy(
                [policies.FixedIntervalPolicy(int(every_steps)), policies.PreemptionCheckpointingPolicy()]
            ),
            preservation_policy=policies.AnyPreservationPolicy(keep),
            enable_async_checkpointing=bool(async_save),
            create=True,
        )
        self._mgr = ocp.CheckpointManager(self.directory, options=options)

    # -- queries ---------------------------------------------------------------------------------

    def all_steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def latest_step(self) -> int | None:
        return self._mgr.latest_step()

    def moved_aside(self) -> list[pathlib.Path]:
        """Everything in ``corrupt_dir`` (unreadable checkpoints moved aside, by any run)."""
        return sorted(self.corrupt_dir.iterdir()) if self.corrupt_dir.is_dir() else []

    def should_save(self, step: int) -> bool:
        """Interval or preemption policy says save at ``step`` (the number of completed steps)."""
        return bool(self._mgr.should_save(step))

    def reached_preemption(self, step: int) -> bool:
        return bool(self._mgr.reached_preemption(step))

    # -- save ------------------------------------------------------------------------------------

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_iter: Any = None,
        config: dict | None = None,
        metrics: dict[str, float] | None = None,
        force: bool = False,
    ) -> bool:
        """Save (asynchronously) if the policy says so or ``force``; returns whether a save started."""
        step = int(step)
        if step in self._mgr.all_steps():
            return False
        if not force and not self._mgr.should_save(step):
            return False
        items = {"state": ocp.args.StandardSave(state)}
        if data_iter is not None:
            save_cls, _ = _grain_args()
            items["data_iter"] = save_cls(data_iter)
        if config is not None:
            items["config"] = ocp.args.JsonSave(config)
        if metrics and self.best_metric and self.best_metric not in metrics:
            metrics = None  # BestN needs the tracked metric; without it the step is kept by LatestN only
        saved = self._mgr.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
        return bool(saved)

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._mgr.wait_until_finished()

    def close(self) -> None:
        self._mgr.wait_until_finished()
        self._mgr.close()

    def __enter__(self) -> "CheckpointManager":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- restore ---------------------------------------------------------------------------------

    def _saved_shapes(self, step: int) -> dict[str, tuple[int, ...]]:
        """``{path: shape}`` of the saved state (reads metadata only; raises if it is unreadable)."""
        meta = ocp.StandardCheckpointHandler().metadata(epath.Path(self.directory / str(step) / "state"))
        tree = meta.tree if hasattr(meta, "tree") else meta
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {path_str(p): tuple(m.shape) for p, m in flat}

    def check_compatible(self, step: int, abstract_state: Any) -> None:
        """Raise ``CheckpointError`` when checkpoint ``step`` holds a differently shaped state (a
        different model or optimizer config): that is the person's mistake, not file corruption."""
        saved = self._saved_shapes(step)
        expected = {}
        for p, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]:
            if not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                expected[path_str(p)] = tuple(leaf.shape)
        missing = sorted(set(expected) - set(saved))
        wrong = sorted(k for k in expected if k in saved and saved[k] != expected[k])
        if missing or wrong:
            details = [f"missing in checkpoint: {', '.join(missing[:5])}" if missing else ""]
            details += [f"{k}: saved {saved[k]} vs config {expected[k]}" for k in wrong[:5]]
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} does not match this config's model/optimizer "
                f"({'; '.join(d for d in details if d)}). Use the config the run was started with, "
                "or a fresh --workdir."
            )

    def _restore_step(self, step: int, abstract_state: Any, data_iter: Any) -> Restored:
        step_dir = self.directory / str(step)
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iter is not None:
            if not (step_dir / "data_iter").is_dir():
                raise CheckpointError(f"checkpoint {step_dir} has no data-iterator state")
            _, restore_cls = _grain_args()
            items["data_iter"] = restore_cls(data_iter)
        if (step_dir / "config").is_dir():
            items["config"] = ocp.args.JsonRestore()
        out = self._mgr.restore(step, args=ocp.args.Composite(**items))
        return Restored(step=step, state=out["state"], config=out["config"] if "config" in items else None)

    def _quarantine(self, step: int) -> pathlib.Path:
        """Move an unreadable step directory aside (never delete), so new saves can reuse the step."""
        target = self.corrupt_dir / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:
            self.corrupt_dir.mkdir(parents=True, exist_ok=True)
            n = 1
            while target.exists():  # the same step moved twice within a second
                target, n = self.corrupt_dir / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}-{n}", n + 1
            shutil.move(str(self.directory / str(step)), str(target))
        multihost_utils.sync_global_devices(f"restore_jax_quarantine_{step}")
        self._mgr.reload()
        self.quarantined.append(target)
        return target

    def restore(self, abstract_state: Any, *, data_iter: Any = None, step: int | None = None) -> Restored | None:
        """Restore onto the shardings in ``abstract_state`` (a ``ShapeDtypeStruct`` tree).

        ``step=None``: the newest readable checkpoint (unreadable newer ones are moved aside with a
        warning), or ``None`` when the directory has none. An explicit ``step`` must exist and be
        readable (``CheckpointError`` otherwise). ``data_iter`` (a Grain iterator) is set in place.
        """
        if step is not None:
            if step not in self._mgr.all_steps():
                raise CheckpointError(
                    f"no checkpoint for step {step} in {self.directory}; available steps: {self.all_steps() or 'none'}"
                )
            others = [s for s in self.all_steps() if s != step]
            hint = f"; other steps: {others} (choose one with --step)" if others else ""
            try:
                with _quiet_restore():
                    self._saved_shapes(step)
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"checkpoint {self.directory / str(step)} is unreadable ({short_error(e)}){hint}") from e
            self.check_compatible(step, abstract_state)
            try:
                with _quiet_restore():
                    return self._restore_step(step, abstract_state, data_iter)
            except Exception as e:  # noqa: BLE001 - report any reader failure to the person
                raise CheckpointError(
                    f"checkpoint {self.directory / str(step)} could not be restored ({short_error(e)}){hint}"
                ) from e
        for candidate in sorted(self._mgr.all_steps(), reverse=True):
            try:
                with _quiet_restore():
                    self._saved_shapes(candidate)  # unreadable metadata: corrupt, handled below
            except Exception:  # noqa: BLE001
                pass
            else:
                self.check_compatible(candidate, abstract_state)  # a config mismatch is not corruption
            try:
                with _quiet_restore():
                    return self._restore_step(candidate, abstract_state, data_iter)
            except Exception as e:  # noqa: BLE001 - fall back to the previous checkpoint
                target = self._quarantine(candidate)
                msg = (
                    f"checkpoint step {candidate} in {self.directory} could not be restored "
                    f"({short_error(e, 200)}); moved it to {target}; trying the previous one"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return None
