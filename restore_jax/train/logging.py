"""Logging adapter: the only module that imports CLU (``clu.metric_writers``).

- TensorBoard event files under ``<workdir>/tb`` (scalars: losses, learning rates, norms,
  throughput; image grids) through CLU's default writer. Process 0 writes; the other processes
  only log through ``absl.logging``.
- A console progress line on process 0 (step, loss, examples/s, step time, data-wait share, ETA).
- Sample grids (input | output | target per row) also saved as PNG under ``<workdir>/samples``.
- An optional profiler window: ``jax.profiler`` trace of a few steps into ``<workdir>/profile``.

CLU is imported lazily (it imports TensorFlow), so modules that only build steps stay light.
"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np


def format_duration(seconds: float) -> str:
    """``3725`` -> ``'1h02m05s'``; ``65`` -> ``'1m05s'``; ``4.2`` -> ``'4s'``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _nearest_resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = (np.arange(h) * x.shape[1] // h).clip(0, x.shape[1] - 1)
    xs = (np.arange(w) * x.shape[2] // w).clip(0, x.shape[2] - 1)
    return x[:, ys][:, :, xs]


def image_grid(columns: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows = examples, columns = the given ``[N, H, W, C]`` batches (resized to the largest, nearest).

    Video batches ``[N, T, H, W, C]`` show their middle frame ``T // 2``. Values are clipped to
    [0, 1]; returns ``[rows * H', cols * W', C]`` float32.
    """
    cols = [np.asarray(c, np.float32) for c in columns]
    cols = [np.clip(c[:, c.shape[1] // 2] if c.ndim == 5 else c, 0.0, 1.0) for c in cols]
    n = min(c.shape[0] for c in cols)
    h = max(c.shape[1] for c in cols)
    w = max(c.shape[2] for c in cols)
    ch = max(c.shape[3] for c in cols)
    out = np.ones((n * (h + pad) - pad, len(cols) * (w + pad) - pad, ch), np.float32)
    for j, c in enumerate(cols):
        c = _nearest_resize(c[:n], h, w)
        if c.shape[3] != ch:
            c = np.repeat(c[..., :1], ch, axis=3)
        for i in range(n):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = c[i]
    return out


def save_png(path: str | pathlib.Path, image: np.ndarray) -> pathlib.Path:
    """Write a float [0, 1] ``[H, W, 3]`` image as an 8-bit PNG."""
    from PIL import Image

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


class Throughput:
    """Time per step and data-wait share between two log points."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._t0 = time.perf_counter()
        self.steps = 0
        self.data_time = 0.0

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` of host work (evaluation, checkpoint, images) out of the step time."""
        self._t0 += seconds

    def add(self, steps: int = 1, data_time: float = 0.0) -> None:
        self.steps += steps
        self.data_time += data_time

    def summary(self, global_batch_size: int) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        steps = max(self.steps, 1)
        return {
            "perf/step_time_s": elapsed / steps,
            "perf/examples_per_s": self.steps * global_batch_size / elapsed,
            "perf/data_wait_s": self.data_time / steps,
            "perf/data_wait_frac": self.data_time / elapsed,
        }


class ProfilerWindow:
    """``jax.profiler`` trace from ``start_step`` for ``num_steps`` steps (process 0; off if start < 0)."""

    def __init__(self, logdir: str | pathlib.Path, start_step: int, num_steps: int, enabled: bool = True):
        self.logdir = str(logdir)
        self.start, self.stop = int(start_step), int(start_step) + int(num_steps)
        self.enabled = enabled and start_step >= 0 and num_steps > 0
        self.active = False

    def before_step(self, step: int) -> None:
        if self.enabled and not self.active and step == self.start:
            jax.profiler.start_trace(self.logdir)
            self.active = True

    def after_step(self, step: int, sync: Any = None) -> None:
        """``step``: completed steps; ``sync``: arrays to wait for before the trace stops."""
        if self.active and step >= self.stop:
            if sync is not None:
                jax.block_until_ready(sync)
            jax.profiler.stop_trace()
            self.active = False

    def close(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False


class RunLogger:
    """TensorBoard + console + PNG writer of one run (see the module docstring)."""

    def __init__(
        self,
        workdir: str | pathlib.Path,
        *,
        total_steps: int,
        global_batch_size: int,
        console: bool = True,
        stream=None,
    ):
        from clu import metric_writers  # lazy: imports TensorFlow

        self.workdir = pathlib.Path(workdir)
        self.is_main = jax.process_index() == 0
        self.total_steps = int(total_steps)
        self.global_batch_size = int(global_batch_size)
        self.console = console and self.is_main
        self.stream = stream or sys.stdout
        self.writer = metric_writers.create_default_writer(
            str(self.workdir / "tb") if self.is_main else None, just_logging=not self.is_main, asynchronous=True
        )
        self._t_start = time.perf_counter()
        self._step_start: int | None = None

    # -- console ---------------------------------------------------------------------------------

    def info(self, message: str) -> None:
        """A line on process 0's console."""
        if self.is_main:
            print(message, file=self.stream, flush=True)

    def mark_start(self, step: int) -> None:
        """Remember where this session started (resumed runs estimate ETA from their own pace)."""
        self._t_start = time.perf_counter()
        self._step_start = int(step)

    def eta_seconds(self, step: int) -> float:
        done = step - (self._step_start or 0)
        if done <= 0:
            return float("nan")
        per_step = (time.perf_counter() - self._t_start) / done
        return per_step * (self.total_steps - step)

    def progress(self, step: int, scalars: Mapping[str, float]) -> None:
        """Console line: ``step 120/600 (20%) | loss 0.0312 | 45.1 ex/s | 0.71 s/step | data 3% | ETA 5m40s``."""
        if not self.console:
            return
        parts = [f"step {step}/{self.total_steps} ({100.0 * step / max(self.total_steps, 1):.0f}%)"]
        if "loss" in scalars:
            parts.append(f"loss {scalars['loss']:.4g}")
        for key in ("loss/D", "loss/G"):
            if key in scalars:
                parts.append(f"{key.split('/')[1]} {scalars[key]:.4g}")
        if "perf/examples_per_s" in scalars:
            parts.append(f"{scalars['perf/examples_per_s']:.1f} ex/s")
            parts.append(f"{scalars['perf/step_time_s']:.3g} s/step")
            parts.append(f"data {100.0 * scalars['perf/data_wait_frac']:.0f}%")
        parts.append(f"ETA {format_duration(self.eta_seconds(step))}")
        self.info(" | ".join(parts))

    # -- TensorBoard -----------------------------------------------------------------------------

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        clean = {k: float(v) for k, v in scalars.items() if np.ndim(v) == 0}
        self.writer.write_scalars(int(step), clean)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """``{name: [H, W, C] or [N, H, W, C]}`` float images in [0, 1]."""
        batch = {k: (v[None] if np.ndim(v) == 3 else v) for k, v in images.items()}
        self.writer.write_images(int(step), {k: np.clip(v, 0, 1) for k, v in batch.items()})

    def write_sample_grid(self, step: int, columns: Sequence[np.ndarray], name: str = "samples") -> pathlib.Path | None:
        """Input | output | target grid to TensorBoard and ``<workdir>/samples/<name>_<step>.png``."""
        if not self.is_main:
            return None
        grid = image_grid(columns)
        self.write_images(step, {name: grid})
        return save_png(self.workdir / "samples" / f"{name}_{int(step):07d}.png", grid)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
