"""Small deterministic stand-ins for tests and smoke runs of the engine (no rendering, no files).

:class:`ArraySRData` is a data factory with the same interface as the default one (a checkpointable
Grain iterator of local batches) whose *global* batch ``t`` is the same examples whatever the
process count: process ``p`` of ``P`` gets rows ``[p * L, (p + 1) * L)`` of it (``L = G / P``). That
makes a two-process run comparable with a one-process run step by step. Optional NaN injection
(``nan_at``: global batch indices whose targets become NaN) exercises the non-finite guard, and
``sigterm_at`` sends this process a SIGTERM while that batch is built (preemption tests).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

import grain
import numpy as np


def smooth_image(seed: int, index: int, size: int) -> np.ndarray:
    """A deterministic smooth RGB image in [0, 1]: sum of a few random 2-D cosines (float32)."""
    rng = np.random.default_rng([int(seed), int(index)])
    y, x = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    img = np.zeros((size, size, 3))
    for _ in range(4):
        fy, fx = rng.uniform(0.5, 3.0, 2)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.05, 0.2, 3)
        img += amp * np.cos(2 * np.pi * (fy * y + fx * x) + phase)[..., None]
    return np.clip(0.5 + img, 0, 1).astype(np.float32)


class _Example:
    """Picklable ``k -> example`` (global stream position ``k``)."""

    def __init__(
        self,
        *,
        seed: int,
        hr_size: int,
        scale: int,
        num_examples: int,
        global_batch: int,
        nan_at: tuple[int, ...],
        sigterm_at: int | None = None,
    ):
        self.seed, self.hr_size, self.scale = seed, hr_size, scale
        self.num_examples, self.global_batch, self.nan_at = num_examples, global_batch, set(nan_at)
        self.sigterm_at = sigterm_at

    def __call__(self, k: int) -> dict[str, np.ndarray]:
        from restore_jax.ops import imresize_np

        k = int(k)
        if self.sigterm_at is not None and k == self.sigterm_at * self.global_batch:
            os.kill(os.getpid(), signal.SIGTERM)  # a preemption notice while building that batch
        hr = smooth_image(self.seed, k % self.num_examples, self.hr_size)
        lr = imresize_np(hr, 1.0 / self.scale).astype(np.float32)
        if k // self.global_batch in self.nan_at:
            hr = np.full_like(hr, np.nan)
        return {"hr": hr, "lr": lr, "meta/index": np.int32(k)}


class ArraySRData:
    """Data factory: ``factory(config, *, split, global_batch_size, seed, ...) -> grain iterator``."""

    def __init__(
        self,
        *,
        hr_size: int = 16,
        scale: int = 4,
        num_examples: int = 64,
        nan_at: Iterable[int] = (),
        sigterm_at: int | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.hr_size, self.scale, self.num_examples = hr_size, scale, num_examples
        self.nan_at = tuple(int(t) for t in nan_at)
        self.sigterm_at = sigterm_at
        self.process_index, self.process_count = process_index, process_count

    def __call__(self, config, *, split, global_batch_size, seed, shuffle=True, num_epochs=None):
        del config, shuffle, num_epochs
        import jax

        p = jax.process_index() if self.process_index is None else self.process_index
        n = jax.process_count() if self.process_count is None else self.process_count
        g = int(global_batch_size)
        local = g // n
        seed = int(seed) + (0 if split == "train" else 10_000)
        make = _Example(
            seed=seed, hr_size=self.hr_size, scale=self.scale, num_examples=self.num_examples,
            global_batch=g, nan_at=self.nan_at if split == "train" else (),
            sigterm_at=self.sigterm_at if split == "train" else None,
        )

        def position(j: int) -> int:  # local stream position j -> global stream position
            t, r = divmod(int(j), local)
            return t * g + p * local + r

        ds = grain.MapDataset.range(10**9).map(position).map(make).batch(local, drop_remainder=True)
        return iter(ds.to_iter_dataset())


#: The tiny ``baseline_sr`` run of the engine tests as command-line overrides of the ``ci`` preset
#: (1 residual block of 8 channels, 8 steps, batch 8, no evaluation, no image grids).
TINY_SR_OVERRIDES = (
    "--config.model.channels=8",
    "--config.model.num_blocks=1",
    "--config.train.num_steps=8",
    "--config.train.global_batch_size=8",
    "--config.train.ema_decay=0.5",
    "--config.eval.protocols=()",
    "--config.eval.final=False",
    "--config.log.console=False",
    "--config.log.image_every_steps=0",
)


def tiny_sr_config():
    """:data:`TINY_SR_OVERRIDES` on ``baseline_sr:ci``, checkpoints every 4 steps, saved synchronously.

    Data comes from the ``ci`` preset (synthetic faces, 32-px HR) or a stand-in such as :class:`ArraySRData`.
    """
    from restore_jax.api import load_config

    extra = ("--config.checkpoint.every_steps=4", "--config.checkpoint.async_save=False")
    return load_config("baseline_sr:ci", list(TINY_SR_OVERRIDES + extra))
