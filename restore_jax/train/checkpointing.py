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
it is moved to ``<workdir>/checkpoints_corrupt/`` with a warning and the previous one is tried;
nothing is deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import shutil
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

__all__ = ["CheckpointManager", "Restored"]


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

    def _quarantine(self, step: int) -> None:
        """Move an unreadable step directory aside (never delete), so new saves can reuse the step."""
        if jax.process_index() == 0:
            self.corrupt_dir.mkdir(parents=True, exist_ok=True)
            target = self.corrupt_dir / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
            shutil.move(str(self.directory / str(step)), str(target))
        multihost_utils.sync_global_devices(f"restore_jax_quarantine_{step}")
        self._mgr.reload()

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
            try:
                self._saved_shapes(step)
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"checkpoint {self.directory / str(step)} is unreadable ({type(e).__name__}: {e})") from e
            self.check_compatible(step, abstract_state)
            try:
                return self._restore_step(step, abstract_state, data_iter)
            except Exception as e:  # noqa: BLE001 - report any reader failure to the person
                raise CheckpointError(
                    f"checkpoint {self.directory / str(step)} could not be restored ({type(e).__name__}: {e})"
                ) from e
        for candidate in sorted(self._mgr.all_steps(), reverse=True):
            try:
                self._saved_shapes(candidate)  # unreadable metadata: corrupt, handled below
            except Exception:  # noqa: BLE001
                pass
            else:
                self.check_compatible(candidate, abstract_state)  # a config mismatch is not corruption
            try:
                return self._restore_step(candidate, abstract_state, data_iter)
            except Exception as e:  # noqa: BLE001 - fall back to the previous checkpoint
                msg = (
                    f"checkpoint step {candidate} in {self.directory} could not be restored "
                    f"({type(e).__name__}: {str(e)[:300]}); moving it to {self.corrupt_dir} and trying the previous one"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                log.warning(msg)
                self._quarantine(candidate)
        return None
