"""Grain pipelines: ``build`` (training) and ``build_eval`` (deterministic evaluation).

Training graph (per process)::

    MapDataset.source(source)            # records, random access
      [: len - len % process_count]      # even_shards: same number of examples per process
      [process_index::process_count]     # this process's shard (disjoint, union = everything)
      .shuffle(seed=shuffle_seed)        # global shuffle of the shard, re-drawn each epoch
      .repeat(num_epochs)                # None = forever
      .random_map(builder, seed=map_seed)  # rng seeded by (map_seed, position): pure function
      .batch(global_batch // process_count, drop_remainder)
      .to_iter_dataset(ReadOptions(read_threads, prefetch_buffer))
      .mp_prefetch(MultiprocessingOptions(num_workers, worker_buffer))   # if num_workers > 0

Determinism: the example at stream position ``k`` of a process is a pure function of
``(seed, process_index, process_count, k)`` and the data: Grain's ``random_map`` seeds a fresh
``np.random.Generator`` from the map seed and the position, worker processes each build whole
batches ``w, w + W, ...`` and the output is re-interleaved in order, so the batches do not depend
on ``num_workers`` or ``read_threads``. ``map_seed`` folds in the process index so that processes
draw different degradations for their i-th examples.

Checkpointing: the returned ``grain.DatasetIterator`` has ``get_state()`` (a small JSON-able dict
of positions) and ``set_state(state)``. Rebuild the pipeline with the same arguments, call
``set_state`` and it continues exactly where it stopped. With Orbax, save it in the same
Composite checkpoint as the train state::

    ocp.args.Composite(state=ocp.args.StandardSave(state), data_iter=grain.checkpoint.CheckpointSave(it))
    ocp.args.Composite(state=ocp.args.StandardRestore(abstract), data_iter=grain.checkpoint.CheckpointRestore(it))

(one ``process_<i>-of-<n>.json`` per process; :func:`save_iterator_state` /
:func:`restore_iterator_state` do the same without Orbax.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import grain
import numpy as np

from input_pipelines.builders import BuilderSpec, get_builder
from input_pipelines.sources import Source, make_source

__all__ = [
    "build",
    "build_eval",
    "build_dataset",
    "build_eval_dataset",
    "save_iterator_state",
    "restore_iterator_state",
    "BuilderTransform",
    "Catalog",
    "GroupedSource",
]


def _plain(x: Any) -> Any:
    """ConfigDict / FrozenConfigDict -> plain dicts (lists and tuples kept as they are)."""
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _get(cfg: Mapping[str, Any], key: str, default: Any) -> Any:
    v = cfg.get(key, default)
    return default if v is None else v


class BuilderTransform:
    """Picklable ``(element, rng) -> example`` wrapper around a registered builder."""

    def __init__(self, name: str, kwargs: Mapping[str, Any] | None = None, builders: Mapping[str, BuilderSpec] | None = None):
        self.name = name
        self.kwargs = dict(kwargs or {})
        # The function itself travels to worker processes (pickled by reference to its module).
        self.fn = get_builder(name, builders).fn

    def __call__(self, element: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.fn(element, rng, **self.kwargs)

    def __repr__(self) -> str:
        return f"BuilderTransform({self.name!r}, {self.kwargs!r})"


class GroupedSource:
    """Record ``i`` of ``source`` together with ``num_records - 1`` partners for multi-record builders.

    Partner ``k`` of ``i`` is ``(i + 1 + r_k) % n`` with ``r_k`` drawn from a generator seeded by
    ``(seed, i)``: never ``i`` itself (when ``n > 1``) and a pure function of ``(seed, i)``.
    """

    def __init__(self, source: Source, num_records: int, seed: int):
        self.source, self.num_records, self.seed = source, int(num_records), int(seed)

    def __len__(self) -> int:
        return len(self.source)

    def partners(self, index: int) -> list[int]:
        n = len(self.source)
        if n == 1:
            return [index] * (self.num_records - 1)
        r = np.random.default_rng([self.seed, int(index)]).integers(0, n - 1, size=self.num_records - 1)
        return [int((index + 1 + v) % n) for v in r]

    def __getitem__(self, index: int):
        index = int(index)
        return tuple(self.source[j] for j in [index] + self.partners(index))


class _PadMapDataset(grain.MapDataset):
    """Pads a finite dataset of dicts to ``length`` by repeating its last element; adds ``mask``."""

    def __init__(self, parent: grain.MapDataset, length: int):
        super().__init__(parent)
        self._length = int(length)
        self._n = len(parent)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        index = int(index) % self._length
        valid = index < self._n
        example = dict(self._parent[index if valid else self._n - 1])
        example["mask"] = np.asarray(valid, np.float32)
        return example

    def __str__(self) -> str:
        return f"_PadMapDataset(length={self._length})"


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
    return int(process_index), int(process_count)


def _seeds(seed: int, *extra: int) -> tuple[int, int, int]:
    """Three independent 32-bit seeds (shuffle, builder, partners) derived from ``seed``."""
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    state = np.random.SeedSequence([int(seed), *[int(e) for e in extra]]).generate_state(3)
    return int(state[0]), int(state[1]), int(state[2])


@dataclasses.dataclass(frozen=True)
class Catalog:
    """A method's own sources and builders (``Method.sources`` / ``Method.builders``), looked up
    before the generic ``SOURCES`` / ``BUILDERS`` tables. Passed explicitly: nothing registers on import."""

    sources: Mapping[str, Callable[..., Source]] = dataclasses.field(default_factory=dict)
    builders: Mapping[str, BuilderSpec] = dataclasses.field(default_factory=dict)


def _missing_paths(source_cfg: Mapping[str, Any], split: str) -> list[str]:
    """``field=value`` of the path-like source arguments (this split's) that do not exist."""
    base = dict(source_cfg.get("kwargs") or {})
    extra = dict((source_cfg.get("splits") or {}).get(split) or {})
    out = []
    for key, value in {**base, **extra}.items():
        field = f"data.source.splits.{split}.{key}" if key in extra else f"data.source.kwargs.{key}"
        values = value if isinstance(value, (list, tuple)) else [value]
        pathlike = key in ("root", "path", "paths", "list_file") or any(isinstance(v, str) and os.sep in v for v in values)
        bad = [v for v in values if pathlike and isinstance(v, str) and v and not os.path.exists(v)]
        if bad:
            out.append(f"{field}={bad[0]} does not exist")
    return out


def _build_source(cfg: Mapping[str, Any], split: str, catalog: Catalog) -> Source:
    """``make_source`` for ``split``; a source that cannot be built (missing folder, wrong arguments,
    no readable file) is a :class:`~restore_jax.errors.ConfigError` naming the config fields."""
    from restore_jax.errors import ConfigError

    source_cfg = cfg["source"]
    try:
        return make_source(source_cfg, split=split, on_error=cfg.get("on_error"), sources=catalog.sources)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        name = source_cfg.get("name")
        reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        missing = _missing_paths(source_cfg, split)
        where = "; ".join(missing) if missing else f"check --config.data.source.kwargs (and data.source.splits.{split})"
        raise ConfigError(f"data.source {name!r} (split {split!r}) cannot be built: {reason}; {where}") from exc


def _source_and_builder(data_config: Mapping[str, Any], split: str, partner_seed: int, catalog: Catalog | None):
    catalog = catalog or Catalog()
    cfg = _plain(data_config)
    src = _build_source(cfg, split, catalog)
    bname = cfg["builder"]["name"]
    spec = get_builder(bname, catalog.builders)
    if spec.num_records > 1:
        src = GroupedSource(src, spec.num_records, partner_seed)
    return cfg, src, BuilderTransform(bname, cfg["builder"].get("kwargs") or {}, catalog.builders)


def _ensure_absl_flags_parsed() -> None:
    """Grain's multiprocess prefetch reads absl flags (worker profiling, with JAX importable); outside an
    absl app (pytest, notebooks, plain scripts) they are unparsed and reading them raises. Mark
    them parsed with their defaults then; an absl app has parsed them already and is untouched."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _to_iter(ds: grain.MapDataset, cfg: Mapping[str, Any]) -> grain.IterDataset:
    read = grain.ReadOptions(
        num_threads=int(_get(cfg, "read_threads", 2)), prefetch_buffer_size=int(_get(cfg, "prefetch_buffer", 4))
    )
    ids = ds.to_iter_dataset(read)
    workers = int(_get(cfg, "num_workers", 0))
    if workers > 0:
        _ensure_absl_flags_parsed()
        ids = ids.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=int(_get(cfg, "worker_buffer", 1)))
        )
    return ids


def build_dataset(
    data_config: Mapping[str, Any],
    *,
    split: str,
    global_batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    catalog: Catalog | None = None,
) -> grain.IterDataset:
    """The training :class:`grain.IterDataset` behind :func:`build` (same arguments)."""
    pi, pc = _process(process_index, process_count)
    if global_batch_size < 1 or global_batch_size % pc:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of process_count={pc}"
        )
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None (forever) or >= 1, got {num_epochs}")
    shuffle_seed, map_seed, partner_seed = _seeds(seed)
    map_seed = _seeds(seed, pi, pc)[1]
    cfg, src, transform = _source_and_builder(data_config, split, partner_seed, catalog)
    ds = grain.MapDataset.source(src)
    n = len(ds)
    if pc > 1:
        if _get(cfg, "even_shards", True):
            ds = ds[: n - n % pc]
        ds = ds[pi::pc]
    if len(ds) == 0:
        raise ValueError(f"split {split!r} has {n} records: too few for {pc} processes")
    if shuffle and _get(cfg, "shuffle", True):
        ds = ds.shuffle(seed=shuffle_seed)
    if num_epochs != 1:
        ds = ds.repeat(num_epochs)
    ds = ds.random_map(transform, seed=map_seed)
    ds = ds.batch(global_batch_size // pc, drop_remainder=drop_remainder)
    return _to_iter(ds, cfg)


def build(
    data_config: Mapping[str, Any],
    *,
    split: str,
    global_batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    catalog: Catalog | None = None,
) -> grain.DatasetIterator:
    """Iterator of **local** batches (``global_batch_size // process_count`` examples each).

    Batches are dicts of NumPy arrays with a leading batch axis (images, degradation params under
    ``deg/``, augmentation under ``aug/``, provenance under ``meta/``). ``process_index`` /
    ``process_count`` default to ``jax.process_index()`` / ``jax.process_count()``. ``shuffle``
    and ``data_config.shuffle`` must both be true to shuffle. ``num_epochs=None`` repeats forever;
    with a finite count, batches may span an epoch boundary (``drop_remainder`` only affects the
    very last batch). The iterator is checkpointable (``get_state`` / ``set_state``; see the
    module docstring). Call ``close()`` on it when done if ``num_workers > 0``.
    """
    return iter(
        build_dataset(
            data_config,
            split=split,
            global_batch_size=global_batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            shuffle=shuffle,
            num_epochs=num_epochs,
            drop_remainder=drop_remainder,
            catalog=catalog,
        )
    )


def build_eval_dataset(
    data_config: Mapping[str, Any],
    split: str,
    batch_size: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    catalog: Catalog | None = None,
) -> grain.IterDataset:
    """The evaluation :class:`grain.IterDataset` behind :func:`build_eval`."""
    pi, pc = _process(process_index, process_count)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cfg = _plain(data_config)
    eval_cfg = cfg.get("eval") or {}
    eval_seed = int(_get(eval_cfg, "seed", 0))
    shuffle_seed, map_seed, partner_seed = _seeds(eval_seed)
    cfg, src, transform = _source_and_builder(cfg, split, partner_seed, catalog)
    # Examples are built on the *global* index before sharding: the evaluation set is the same
    # whatever the number of processes.
    ds = grain.MapDataset.source(src).random_map(transform, seed=map_seed)
    n = len(ds)
    if pc > 1:
        ds = ds[pi::pc]
    if _get(eval_cfg, "pad_remainder", True):
        per_process = math.ceil(n / pc)
        ds = _PadMapDataset(ds, math.ceil(per_process / batch_size) * batch_size)
        ds = ds.batch(batch_size, drop_remainder=True)
    else:
        per_process = n // pc
        ds = ds[:per_process].batch(batch_size, drop_remainder=True)
    return _to_iter(ds, cfg)


def build_eval(
    data_config: Mapping[str, Any],
    split: str,
    batch_size: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    catalog: Catalog | None = None,
) -> grain.DatasetIterator:
    """One deterministic pass over ``split`` in order (no shuffle, no repeat) in batches of ``batch_size``.

    Degradations are drawn with ``data_config.eval.seed`` from each example's **global** index, so
    the evaluation inputs are fixed and independent of the process count. With
    ``eval.pad_remainder=True`` (default) every process gets ``ceil(ceil(n / process_count) /
    batch_size)`` full batches with a float32 ``mask`` key (1 = real example, 0 = padding copy of
    the last one; weight metrics by it); with ``False`` incomplete batches are dropped (and each
    process keeps ``n // process_count`` examples) and there is no ``mask``.
    """
    return iter(
        build_eval_dataset(
            data_config, split, batch_size, process_index=process_index, process_count=process_count, catalog=catalog
        )
    )


def save_iterator_state(iterator: grain.DatasetIterator, directory: str | os.PathLike, *, process_index: int = 0, process_count: int = 1) -> str:
    """Write ``iterator.get_state()`` as ``process_<i>-of-<n>.json`` in ``directory`` (Grain's Orbax layout)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(os.fspath(directory), f"process_{process_index}-of-{process_count}.json")
    with open(path, "w") as f:
        json.dump(iterator.get_state(), f, indent=2)
    return path


def restore_iterator_state(iterator: grain.DatasetIterator, directory: str | os.PathLike, *, process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
    """Load a state written by :func:`save_iterator_state` (or Grain's Orbax handler) into ``iterator``."""
    path = os.path.join(os.fspath(directory), f"process_{process_index}-of-{process_count}.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no data-iterator state at {path}; the checkpoint was written with a different process "
            "count or without the iterator"
        )
    with open(path) as f:
        iterator.set_state(json.load(f))
    return iterator
