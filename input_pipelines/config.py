"""The data config schema: ``default_data_config()`` returns it, filled with working defaults.

Fields (an ``ml_collections.ConfigDict``)::

    source:            which records to read
      name:            registry name: image_folder | identity_folder | video | frame_folder |
                       vimeo_septuplet | tfds | arrayrecord | synthetic_faces
      kwargs:          constructor arguments of that source (see input_pipelines/sources.py)
      splits:          {split: {kwarg overrides}} applied when building that split, e.g.
                       {'train': {'subdir': 'train'}, 'val': {'subdir': 'val'}}
    builder:           how a record becomes an example
      name:            sr_pair | burst | frame_average_blur | septuplet | reference_set |
                       multiview_pair | contrastive_quadruple
      kwargs:          builder arguments (crop sizes, scale, degradation chain ...)
    num_workers:       Grain worker processes (mp_prefetch); 0 = build examples in the main process
    worker_buffer:     batches buffered per worker process
    read_threads:      threads per process that build examples (Grain ReadOptions.num_threads)
    prefetch_buffer:   batches buffered per process (Grain ReadOptions.prefetch_buffer_size)
    shuffle:           shuffle training splits (build(..., shuffle=False) also turns it off)
    seed:              the data seed the training engine passes to build(); examples are a pure
                       function of (seed, position in the stream)
    on_error:          'skip' | 'raise' for unreadable files (see docs/data.md)
    even_shards:       with several processes, drop the last len % process_count records so every
                       process gets the same number of examples (multi-host steps stay in lock-step)
    eval:
      seed:            seed of the (fixed) degradations of evaluation examples
      pad_remainder:   True: pad the last batch and add a 'mask' key; False: drop it
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import ConfigDict

from input_pipelines.builders import BUILDERS
from input_pipelines.sources import SOURCES, accepted_args
from restore_jax.errors import ConfigError

__all__ = ["default_data_config", "validate_data_config"]


def default_data_config(builder: str = "sr_pair") -> ml_collections.ConfigDict:
    """Data config for ``builder`` on synthetic faces (no files needed); override what you need.

    The synthetic-faces ``mode`` is set to what the builder expects (stills, sequences, views or
    identity sets). Sizes are small CPU-friendly defaults; method configs set the papers' sizes.
    """
    if builder not in BUILDERS:
        raise ValueError(f"unknown builder {builder!r}; registered builders: {sorted(BUILDERS)}")
    spec = BUILDERS[builder]
    builder_kwargs: dict = {
        "sr_pair": {"hr_size": 64, "scale": 4},
        "burst": {"hr_size": 64, "num_frames": 7, "scale": 4},
        "frame_average_blur": {"num_frames": [5, 7, 9, 11, 13], "crop_size": 64, "scale_range": (1.0, 1.5), "gamma": 1.0, "reorder": "fmr"},
        "septuplet": {"hr_size": 64, "scale": 4},
        "reference_set": {"num_references": 3, "hr_size": 64, "scale": 4},
        "multiview_pair": {},
        "contrastive_quadruple": {"num_frames": 5, "hr_size": 48},
    }.get(builder, {})
    source_kwargs: dict = {
        "size": 64,
        "num_identities": 100,
        "num_examples": 1000,
        "seed": 0,
        "mode": spec.synthetic_mode,
    }
    if spec.synthetic_mode == "sequence":
        source_kwargs["num_frames"] = 13 if builder == "frame_average_blur" else 7
        if builder == "frame_average_blur":
            # Fast head motion sampled densely: the averaged frames show smooth (not ghosted) blur.
            source_kwargs.update(fps=60.0, motion_scale=4.0)
    if spec.synthetic_mode == "identity_set":
        source_kwargs["set_size"] = 4
    if spec.synthetic_mode == "views":
        source_kwargs["num_views"] = 4
    cfg = ml_collections.ConfigDict()
    cfg.source = ml_collections.ConfigDict(
        {"name": "synthetic_faces", "kwargs": source_kwargs, "splits": {"val": {"num_examples": 100}, "test": {"num_examples": 100}}}
    )
    cfg.builder = ml_collections.ConfigDict({"name": builder, "kwargs": builder_kwargs})
    cfg.num_workers = 2
    cfg.worker_buffer = 2
    cfg.read_threads = 2
    cfg.prefetch_buffer = 4
    cfg.shuffle = True
    cfg.seed = 0
    cfg.on_error = "skip"
    cfg.even_shards = True
    cfg.eval = ml_collections.ConfigDict({"seed": 0, "pad_remainder": True})
    return cfg


def _check_kwargs(kwargs: Mapping[str, Any], accepted: set[str] | None, required: set[str], what: str, field: str) -> None:
    """``kwargs`` (one split's constructor arguments) against a factory's signature."""
    for key in kwargs:
        if accepted is not None and key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=2, cutoff=0.6)
            hint = f"; did you mean {', '.join(field + '.' + c for c in close)}?" if close else ""
            if not close and field.startswith("data.source."):
                hint = "; to read another source, set --config.data.source.name too (its kwargs then start empty)"
            raise ConfigError(
                f"{field}.{key}: {what} takes no argument {key!r} (it takes {', '.join(sorted(accepted)) or 'none'}){hint}"
            )
    missing = sorted(required - set(kwargs))
    if missing:
        example = " ".join(f"--config.{field}.{m}=..." for m in missing)
        raise ConfigError(f"{field}.{missing[0]} is required by {what} and not set; set it, e.g. {example}")


def validate_data_config(
    data: ConfigDict, *, sources: Mapping[str, Any] | None = None, builders: Mapping[str, Any] | None = None
) -> None:
    """Check a ``data`` section (:class:`~restore_jax.errors.ConfigError` with a fix-it message):
    numbers, ``on_error``, and, when a method's ``sources`` / ``builders`` are given, that the source and builder exist and their ``kwargs`` fit their signatures
    (per split). Files are not looked at here (a restored checkpoint needs no training data): a
    missing folder is reported when the source is built, before the first step."""
    for key, minimum in (("num_workers", 0), ("worker_buffer", 1), ("read_threads", 0), ("prefetch_buffer", 0)):
        if key in data and data[key] is not None:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"data.{key} must be an integer >= {minimum}, got {value!r}")
    if "on_error" in data and data.on_error is not None:
        if data.on_error not in ("skip", "raise"):
            raise ConfigError(f"data.on_error={data.on_error!r} is not one of 'skip', 'raise'")
    for part in ("source", "builder"):
        section = data.get(part)
        if not isinstance(section, ConfigDict):
            continue
        if not isinstance(section.get("name"), str) or not section.name:
            raise ConfigError(f"data.{part}.name must name a {part}, got {section.get('name')!r}")
        kwargs = section.get("kwargs")
        if kwargs is not None and not isinstance(kwargs, ConfigDict):
            raise ConfigError(f"data.{part}.kwargs must be a section of arguments, got {type(kwargs).__name__}")
    if sources is None or builders is None:
        return
    src = data.get("source")
    if isinstance(src, ConfigDict):
        table = {**SOURCES, **sources}
        if src.name not in table:
            raise ConfigError(f"data.source.name={src.name!r} is not a source; known sources: {', '.join(sorted(table))}")
        accepted, required = accepted_args(table[src.name])
        # make_source passes split= and on_error= itself to the sources that take them
        if accepted is not None:
            required -= {"split", "on_error"} & accepted
        base = dict(src.get("kwargs") or {})
        splits = src.get("splits") or {}
        what = f"source {src.name!r}"
        _check_kwargs(base, accepted, required, what, "data.source.kwargs")
        for split, extra in splits.items():
            if not isinstance(extra, ConfigDict):
                raise ConfigError(f"data.source.splits.{split} must be a section of arguments, got {extra!r}")
            _check_kwargs({**base, **extra}, accepted, required, what, f"data.source.splits.{split}")
    bld = data.get("builder")
    if isinstance(bld, ConfigDict):
        table = {**BUILDERS, **builders}
        if bld.name not in table:
            raise ConfigError(f"data.builder.name={bld.name!r} is not a builder; known builders: {', '.join(sorted(table))}")
        accepted, required = accepted_args(table[bld.name].fn, skip=2)  # fn(element, rng, **kwargs)
        _check_kwargs(dict(bld.get("kwargs") or {}), accepted, required, f"builder {bld.name!r}", "data.builder.kwargs")
