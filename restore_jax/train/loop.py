"""The host training loop: build once, resume, step, log, evaluate, checkpoint, guard against NaN.

``Trainer(config, method)`` builds everything that is compiled (init, step, predict) once for a
mesh (``method`` is the :class:`~restore_jax.methods.api.Method` the config names: the engine
knows methods only through that type; ``restore_jax.api.make_trainer(config)`` resolves it);
``Trainer.fit(workdir)`` runs (or resumes) a training run in ``workdir``::

    <workdir>/checkpoints/<step>/   Orbax checkpoints (state, data_iter, config)
    <workdir>/tb/                   TensorBoard event files
    <workdir>/samples/*.png         input | output | target grids
    <workdir>/eval/<step>.json      evaluation results
    <workdir>/profile/              profiler trace (when log.profile_start_step >= 0)

The compiled functions are reused across ``fit`` calls on the same ``Trainer`` (tests share them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from restore_jax.errors import CheckpointError, NonFiniteError
from restore_jax.methods.api import Method
from restore_jax.nn.params import count_params
from restore_jax.train import evaluation as evaluation_lib
from restore_jax.train import mesh as mesh_lib
from restore_jax.train.optim import make_optimizers
from restore_jax.train.state import TrainState, graphdefs_of, make_init_fn
from restore_jax.train.steps import build_step, contrastive_init_extras, make_predict_fn
from restore_jax.train.workdir_lock import WorkdirLock

_LOW_OPT = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

DataFactory = Callable[..., Iterator[Mapping[str, np.ndarray]]]


def default_data_factory(config, *, split, global_batch_size, seed, shuffle=True, num_epochs=None, catalog=None):
    """Training batches from ``input_pipelines.build`` (local batches of this process); ``catalog``:
    the method's own sources and builders."""
    from input_pipelines.pipeline import build

    return build(
        config.data,
        split=split,
        global_batch_size=global_batch_size,
        seed=seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        shuffle=shuffle,
        num_epochs=num_epochs,
        catalog=catalog,
    )


@dataclasses.dataclass
class FitResult:
    state: TrainState
    step: int
    history: list[dict[str, float]]  # logged scalars, one dict per log point
    eval_results: dict[str, float]
    stopped_early: bool = False
    skipped_steps: int = 0
    wall_time_s: float = 0.0
    data_state: Any = None  # the data iterator's position at the end (get_state())
    preempted: bool = False  # stopped by SIGTERM (the CLI exits with 143)
    checkpoint_step: int | None = None  # the step of the committed SIGTERM checkpoint (None: none saved)


class _SigtermFlag:
    """SIGTERM -> save a checkpoint at the next step boundary and stop (single-process runs).

    The handler stays installed until ``fit`` has waited for that checkpoint to be committed and
    closed the checkpointer: schedulers send SIGTERM more than once (and Slurm sends SIGKILL after
    a grace period), and a second SIGTERM handled by the default action would kill the process
    mid-write, leaving only ``<step>.orbax-checkpoint-tmp``. Later SIGTERMs are counted, not
    fatal. :meth:`deferring_interrupts` also holds back SIGINT (Ctrl-C) while a save is being
    finished; the ``KeyboardInterrupt`` is raised once it is on disk.

    Multi-process runs rely on the JAX preemption sync point (Orbax's preemption policy) instead, so
    that every process saves the same step.
    """

    def __init__(self) -> None:
        self.raised = False
        self.count = 0
        self._previous = None
        self._installed = False

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, frame) -> None:
        del signum, frame
        self.raised = True
        self.count += 1

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    @contextlib.contextmanager
    def deferring_interrupts(self):
        """SIGINT inside the block is remembered and raised as ``KeyboardInterrupt`` after it."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        got: list[int] = []
        previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        if got:
            if callable(previous):  # Python's default raises KeyboardInterrupt
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


class Trainer:
    """Everything compiled for one config and mesh; ``fit`` runs a (resumable) training run."""

    def __init__(
        self,
        config,
        method: Method,
        *,
        mesh: jax.sharding.Mesh | None = None,
        data_factory: DataFactory | None = None,
    ):
        if not isinstance(method, Method):
            raise TypeError(
                f"Trainer(config, method): method must be a restore_jax.methods.api.Method, got {type(method).__name__}; "
                "restore_jax.api.make_trainer(config) resolves config.method for you"
            )
        self.method = method
        config = method.complete_config(config)
        self.config = config
        self.mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.mesh)
        method.check_config(config, num_devices=self.mesh.size, process_count=jax.process_count())
        self.recipe = method.make_recipe(config)
        self.evaluators = method.all_evaluators()
        self.catalog = method.catalog()
        self.data_factory = data_factory or functools.partial(default_data_factory, catalog=self.catalog)
        self.graphdefs = graphdefs_of(self.recipe.networks)
        trained = ("D", "G") if self.recipe.step_kind == "gan" else (self.recipe.primary,)
        self.optimizers = make_optimizers(config, trained, self.recipe.primary)
        ema = (self.recipe.primary,) if config.train.ema_decay > 0 else ()
        init_extras = None
        if self.recipe.step_kind == "contrastive":
            c = config.contrastive
            init_extras = contrastive_init_extras(self.recipe.primary, int(c.queue_size), int(c.embed_dim))
        self._init = make_init_fn(self.recipe.networks, self.optimizers, ema_networks=ema, init_extras=init_extras)
        self.abstract_state = jax.eval_shape(self._init, jax.random.key(0))
        self.state_sharding = mesh_lib.state_shardings(self.abstract_state, self.mesh, config.sharding)
        self.batch_sharding = mesh_lib.batch_sharding(self.mesh)
        self.replicated = mesh_lib.replicated(self.mesh)
        # Init runs once: on CPU compile it without optimisation (its threefry-heavy graph otherwise
        # takes seconds per parameter array to compile on CPU).
        init_opts = _LOW_OPT if self.mesh.devices.flat[0].platform == "cpu" else None
        self.init_fn = jax.jit(self._init, out_shardings=self.state_sharding, compiler_options=init_opts)
        step = build_step(self.recipe, self.graphdefs, self.optimizers, config)
        self.step_fn = jax.jit(
            step,
            in_shardings=(self.state_sharding, self.batch_sharding),
            out_shardings=(self.state_sharding, self.replicated),
            donate_argnums=0,
        )
        self.predict_fn = None
        if self.recipe.predict is not None:
            self.predict_fn = jax.jit(
                make_predict_fn(
                    self.graphdefs,
                    self.recipe.predict,
                    compute_dtype=config.train.compute_dtype,
                    input_keys=self.recipe.input_keys,
                ),
                out_shardings=self.batch_sharding,
            )
        self._eval_cache: dict = {}

    # -- state -----------------------------------------------------------------------------------

    def init_state(self) -> TrainState:
        """Fresh state from ``config.seed`` (sharded by the rules at creation: no host copy)."""
        return self.init_fn(jax.random.key(int(self.config.seed)))

    def abstract_restore_target(self) -> TrainState:
        """``ShapeDtypeStruct`` tree with this mesh's shardings: the restore target."""
        return mesh_lib.with_shardings(self.abstract_state, self.state_sharding)

    def make_checkpointer(self, workdir: str | pathlib.Path):
        from restore_jax.train.checkpointing import CheckpointManager

        c = self.config.checkpoint
        return CheckpointManager(
            pathlib.Path(workdir) / "checkpoints",
            every_steps=int(c.every_steps),
            keep_last=int(c.keep_last),
            keep_best=int(c.keep_best),
            best_metric=c.best_metric,
            best_mode=c.best_mode,
            async_save=bool(c.async_save),
        )

    def make_data_iter(self):
        t = self.config.train
        return self.data_factory(
            self.config, split="train", global_batch_size=int(t.global_batch_size), seed=int(self.config.seed)
        )

    def global_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """Global arrays of the keys the recipe needs from this process's local batch."""
        keys = self.recipe.batch_keys
        if keys is not None:
            missing = [k for k in keys if k not in local_batch]
            if missing:
                raise KeyError(
                    f"the data gives keys {sorted(local_batch)} but {self.config.method} needs {list(keys)}; "
                    "check config.data.builder"
                )
            local_batch = {k: local_batch[k] for k in keys}
        return mesh_lib.make_global_batch(local_batch, self.mesh)

    def eval_params(self, state: TrainState) -> dict[str, Any]:
        """Variables for ``predict_fn``: params (EMA copies when ``eval.use_ema``) and model state."""
        params = dict(state.params)
        if self.config.eval.use_ema and state.ema_params:
            params.update(state.ema_params)
        return {"params": params, "model_state": state.extras.get("model_state", {})}

    # -- evaluation ------------------------------------------------------------------------------

    def evaluate(self, state: TrainState, workdir: str | pathlib.Path, *, log=print) -> tuple[dict[str, float], list[str]]:
        """Run ``config.eval.protocols`` on ``state``; writes ``eval/<step>.json``; returns results and tables."""
        names = tuple(self.config.eval.protocols)
        if not names or self.predict_fn is None:
            return {}, []
        ctx = evaluation_lib.EvalContext(
            config=self.config,
            mesh=self.mesh,
            params=self.eval_params(state),
            predict_fn=self.predict_fn,
            step=int(jax.device_get(state.step)),
            workdir=pathlib.Path(workdir),
            log=log,
            cache=self._eval_cache,
            catalog=self.catalog,
        )
        results = evaluation_lib.run_evaluators(ctx, names, self.evaluators)
        return results, ctx.tables

    def sample_columns(self, state: TrainState, batch: Mapping[str, jax.Array], n: int) -> list[np.ndarray]:
        """(input, output, target) images of the first ``n`` examples of a global batch."""
        in_key, tgt_key = self.recipe.image_keys
        out = self.predict_fn(self.eval_params(state), batch)
        # Every process takes part (the arrays span processes); each gets the full rows back.
        return [np.asarray(multihost_utils.process_allgather(c, tiled=True))[:n] for c in (batch[in_key], out, batch[tgt_key])]

    # -- training --------------------------------------------------------------------------------

    def fit(
        self,
        workdir: str | pathlib.Path,
        *,
        stop_after: int | None = None,
        stream=None,
        logger=None,
    ) -> FitResult:
        """Train from scratch or resume from ``workdir``'s latest good checkpoint up to ``train.num_steps``.

        ``stop_after``: stop (after saving a checkpoint) once this many total steps are done; the
        run resumes from there (tests, time-boxed jobs). Raises :class:`NonFiniteError` under
        ``nan_policy='stop'`` when a step is non-finite (no checkpoint is written for it).

        Reliability (``docs/engine.md``, "Failure modes"): the workdir is locked for the run
        (:class:`WorkdirLockedError` when another run holds ``<workdir>/.lock``); incomplete saves of
        an interrupted run are removed; if the workdir has checkpoints but none is readable,
        :class:`CheckpointError` (unless ``checkpoint.allow_fresh_start``); a SIGTERM saves and
        commits a checkpoint at the next step boundary and returns with ``preempted=True``.
        """
        workdir = pathlib.Path(workdir)
        if jax.process_index() == 0:
            workdir.mkdir(parents=True, exist_ok=True)
        # One run per workdir (process 0 holds <workdir>/.lock); SIGTERM handled from here until the
        # checkpointer is closed (see _SigtermFlag).
        lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
        lock_notes = lock.acquire() if lock is not None else []
        try:
            with _SigtermFlag() as sigterm:
                return self._fit_locked(workdir, sigterm, lock_notes, stop_after=stop_after, stream=stream, logger=logger)
        finally:
            if lock is not None:
                lock.release()

    def _fit_locked(self, workdir: pathlib.Path, sigterm: _SigtermFlag, lock_notes: list[str], *, stop_after, stream, logger) -> FitResult:
        from restore_jax.train.checkpointing import remove_stale_tmp_dirs
        from restore_jax.train.logging import ProfilerWindow, RunLogger, Throughput

        cfg = self.config
        total = int(cfg.train.num_steps)
        end = total if stop_after is None else min(total, int(stop_after))
        gbs = int(cfg.train.global_batch_size)
        logger = logger or RunLogger(
            workdir, total_steps=total, global_batch_size=gbs, console=cfg.log.console, stream=stream
        )
        for note in lock_notes:
            logger.info(note)
        ckpt = data_iter = None
        t_wall = time.perf_counter()
        history: list[dict[str, float]] = []
        eval_results: dict[str, float] = {}
        skipped = 0
        stopped_early = preempted = False
        checkpoint_step = None
        profiler = ProfilerWindow(workdir / "profile", cfg.log.profile_start_step, cfg.log.profile_num_steps, logger.is_main)
        try:
            if cfg.checkpoint.enabled:
                for tmp in remove_stale_tmp_dirs(workdir / "checkpoints"):
                    logger.info(f"removed an incomplete checkpoint save left by an interrupted run: {tmp}")
                ckpt = self.make_checkpointer(workdir)
            data_iter = self.make_data_iter()
            state, step = self._start(ckpt, data_iter, logger)
            start_step = step
            logger.mark_start(step)
            if step >= end:
                logger.info(f"nothing to do: already at step {step} (train.num_steps={total})")
            throughput = Throughput()
            pending: list[tuple[int, dict[str, jax.Array]]] = []
            consecutive_bad = 0
            interval: list[dict[str, Any]] = []
            last_batch = None
            while step < end:
                profiler.before_step(step)
                t0 = time.perf_counter()
                try:
                    local = next(data_iter)
                except StopIteration:
                    logger.info(f"the training data ran out at step {step}; stopping")
                    stopped_early = True
                    break
                batch = self.global_batch(local)
                t_data = time.perf_counter() - t0
                with jax.profiler.StepTraceAnnotation("train", step_num=step):
                    state, metrics = self.step_fn(state, batch)
                step += 1
                throughput.add(1, t_data)
                pending.append((step, metrics))
                last_batch = batch
                profiler.after_step(step, sync=metrics)

                is_log = step % cfg.log.every_steps == 0 or step == end
                is_ckpt = ckpt is not None and (ckpt.should_save(step) or step == end or sigterm.raised)
                is_eval = cfg.eval.every_steps > 0 and step % cfg.eval.every_steps == 0
                is_image = cfg.log.image_every_steps > 0 and step % cfg.log.image_every_steps == 0
                if not (is_log or is_ckpt or is_eval or is_image or len(pending) >= 100):
                    continue

                # Sync point: fetch pending metrics, apply the NaN policy before anything is saved.
                fetched = jax.device_get(pending)
                pending = []
                for s, m in fetched:
                    if m["finite"] < 0.5:
                        skipped += 1
                        consecutive_bad += 1
                        self._on_nonfinite(s, m, consecutive_bad, logger)
                    else:
                        consecutive_bad = 0
                        interval.append(m)
                if is_log:
                    # finite steps since the last log point, averaged (the last value for lr)
                    scalars = {k: float(np.mean([m[k] for m in interval])) for k in interval[0]} if interval else {}
                    scalars.update({k: float(v) for k, v in fetched[-1][1].items() if k.startswith("lr/")})
                    interval = []
                    scalars.update(throughput.summary(gbs))
                    scalars["train/skipped_steps"] = float(skipped)
                    throughput.reset()
                    logger.write_scalars(step, scalars)
                    logger.progress(step, scalars)
                    if self.recipe.metric_warnings is not None:
                        for line in self.recipe.metric_warnings(step, scalars):
                            logger.info(line)
                    history.append({"step": float(step), **scalars})
                t_host = time.perf_counter()
                if is_image and self.predict_fn is not None:
                    cols = self.sample_columns(state, last_batch, int(cfg.log.num_images))
                    logger.write_sample_grid(step, cols)
                if is_eval:
                    eval_results, tables = self.evaluate(state, workdir, log=logger.info)
                    logger.write_scalars(step, {f"eval/{k}": v for k, v in eval_results.items()})
                    for t in tables:
                        logger.info(t)
                if is_ckpt:
                    metrics_for_best = eval_results if is_eval else None
                    ckpt.save(
                        step,
                        state,
                        data_iter=data_iter,
                        config=cfg.to_dict(),
                        metrics=metrics_for_best,
                        force=(step == end or sigterm.raised),
                    )
                throughput.exclude(time.perf_counter() - t_host)
                if sigterm.raised:
                    stopped_early = preempted = True
                    if ckpt is not None:
                        # (a no-op when this step's save already started above; it did not when the
                        # signal came after the decision, e.g. during evaluation)
                        ckpt.save(step, state, data_iter=data_iter, config=cfg.to_dict(), force=True)
                        # "saved" only once it is committed; the handler is still installed, so
                        # more SIGTERMs cannot interrupt the write (Ctrl-C is held back too).
                        with sigterm.deferring_interrupts():
                            ckpt.wait()
                        if (ckpt.directory / str(step)).is_dir():
                            checkpoint_step = step
                    again = f" (SIGTERM received {sigterm.count} times; the save was finished first)" if sigterm.count > 1 else ""
                    if checkpoint_step is not None:
                        logger.info(
                            f"SIGTERM: saved a checkpoint at step {step} ({ckpt.directory / str(step)}){again}; "
                            "stopping (resume with the same command)"
                        )
                    elif ckpt is None:
                        logger.info(
                            f"SIGTERM: stopping at step {step}{again}; no checkpoint was saved "
                            "(checkpoint.enabled=False): this run cannot be resumed"
                        )
                    else:
                        logger.info(
                            f"SIGTERM: stopping at step {step}{again}; no checkpoint for it was committed; the latest "
                            f"checkpoint is step {ckpt.latest_step()}"
                        )
                    break
            if stop_after is not None and step < total:
                stopped_early = True
            ran = step > start_step
            if ran and step >= total and cfg.eval.final and not (cfg.eval.every_steps and step % cfg.eval.every_steps == 0):
                eval_results, tables = self.evaluate(state, workdir, log=logger.info)
                if eval_results:
                    logger.write_scalars(step, {f"eval/{k}": v for k, v in eval_results.items()})
                for t in tables:
                    logger.info(t)
            if ran and step >= total and self.predict_fn is not None and last_batch is not None:
                cols = self.sample_columns(state, last_batch, int(cfg.log.num_images))
                path = logger.write_sample_grid(step, cols, name="final")
                if path:
                    logger.info(f"sample grid (input | output | target): {path}")
            data_state = data_iter.get_state() if hasattr(data_iter, "get_state") else None
        finally:
            profiler.close()
            try:
                if ckpt is not None:
                    with sigterm.deferring_interrupts():  # pending saves finish before we leave
                        ckpt.close()
            finally:
                logger.close()
                if hasattr(data_iter, "close"):
                    data_iter.close()
        return FitResult(
            state=state,
            step=step,
            history=history,
            eval_results=eval_results,
            stopped_early=stopped_early,
            skipped_steps=skipped,
            wall_time_s=time.perf_counter() - t_wall,
            data_state=data_state,
            preempted=preempted,
            checkpoint_step=checkpoint_step,
        )

    def _start(self, ckpt, data_iter, logger) -> tuple[TrainState, int]:
        """Latest good checkpoint (state + data position) or a fresh state."""
        if ckpt is not None:
            had = ckpt.all_steps()
            restored = ckpt.restore(self.abstract_restore_target(), data_iter=data_iter)
            if restored is not None:
                logger.info(f"resumed from {ckpt.directory / str(restored.step)}")
                return restored.state, int(restored.step)
            moved = ckpt.moved_aside()
            if had or moved:
                # Checkpoints existed but none is readable: restarting from step 0 would silently
                # throw the run's progress away (and exit 0). Stop unless asked for a fresh start.
                where = ", ".join(str(p) for p in (ckpt.quarantined or moved)[-8:])
                what = (
                    f"no checkpoint of {ckpt.directory} is readable: step(s) {had} could not be restored and were "
                    f"moved aside to {where}"
                    if had
                    else f"{ckpt.directory} has no checkpoints, but {ckpt.corrupt_dir} holds unreadable ones moved "
                    f"aside by an earlier attempt: {where}"
                )
                if not bool(self.config.checkpoint.get("allow_fresh_start", False)):
                    raise CheckpointError(
                        f"{what}. Not starting again from step 0 (that would silently lose the run's progress). "
                        "Inspect or repair them (see docs/engine.md, Failure modes), use a new --workdir, or start "
                        "this workdir over from step 0 with --config.checkpoint.allow_fresh_start=True."
                    )
                logger.info(f"{what}; starting from step 0 (checkpoint.allow_fresh_start=True)")
        state = self.init_state()
        n = count_params(state.params)
        logger.info(
            f"{self.config.method}: {n:,} parameters; mesh {dict(self.mesh.shape)} on "
            f"{jax.device_count()} {jax.devices()[0].platform} device(s), {jax.process_count()} process(es)"
        )
        return state, 0

    def _on_nonfinite(self, step: int, metrics: Mapping[str, Any], consecutive: int, logger) -> None:
        policy = self.config.train.nan_policy
        loss = metrics.get("loss", metrics.get("loss/G", float("nan")))
        where = f"step {step}: loss={float(loss):.4g}"
        if policy == "stop":
            raise NonFiniteError(
                f"non-finite loss or gradient at {where}. The update was not applied and no checkpoint "
                "was written after it; the last good checkpoint is intact. Lower the learning rate, "
                "enable clipping (--config.optim.grad_clip_norm=1.0), check the data, or set "
                "--config.train.nan_policy=skip to skip such steps."
            )
        logger.info(f"[nan_policy=skip] non-finite {where}; update skipped")
        if consecutive >= int(self.config.train.max_consecutive_nonfinite):
            raise NonFiniteError(
                f"{consecutive} consecutive non-finite steps (last at {where}); giving up. The last good "
                "checkpoint is intact."
            )


def train(config, method: Method, workdir: str | pathlib.Path, **kwargs) -> FitResult:
    """Build a :class:`Trainer` for ``config`` and run ``fit(workdir)``."""
    return Trainer(config, method).fit(workdir, **kwargs)


def evaluate_checkpoint(
    config, method: Method, workdir: str | pathlib.Path, *, step: int | None = None, log=print
) -> tuple[int, dict[str, float], list[str]]:
    """Restore checkpoint ``step`` (default: latest good) of ``workdir`` and run the eval protocols."""
    trainer = Trainer(config, method)
    ckpt = trainer.make_checkpointer(workdir)
    try:
        if not ckpt.all_steps():
            raise CheckpointError(
                f"no checkpoints in {ckpt.directory}; train first (restore-jax train ... --workdir {workdir})"
            )
        restored = ckpt.restore(trainer.abstract_restore_target(), step=step)
        if restored is None:
            moved = ", ".join(str(p) for p in ckpt.quarantined)
            raise CheckpointError(
                f"no readable checkpoint in {ckpt.directory}" + (f"; the unreadable ones were moved aside to {moved}" if moved else "")
            )
    finally:
        ckpt.close()
    results, tables = trainer.evaluate(restored.state, workdir, log=log)
    return restored.step, results, tables
