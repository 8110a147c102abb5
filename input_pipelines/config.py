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

import ml_collections

from input_pipelines.builders import BUILDERS

__all__ = ["default_data_config"]


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
