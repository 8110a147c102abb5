"""Grain input pipelines: sources, sample builders, and the ``build`` / ``build_eval`` entry points.

Public API (imported lazily, so ``import input_pipelines.synthetic_faces`` or a worker process
does not pay for Grain/JAX until needed)::

    build(data_config, *, split, global_batch_size, seed, process_index=None, process_count=None,
          shuffle=True, num_epochs=None, drop_remainder=True) -> grain.DatasetIterator
    build_eval(data_config, split, batch_size, *, process_index=None, process_count=None)
    default_data_config(builder="sr_pair") -> ml_collections.ConfigDict
    make_source(config, *, split=None, on_error=None) -> Source
    BUILDERS / SOURCES generic tables (a method adds its own via Catalog), write_arrayrecord(source, path, ...)

See ``docs/data.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build": "input_pipelines.pipeline",
    "Catalog": "input_pipelines.pipeline",
    "build_eval": "input_pipelines.pipeline",
    "build_dataset": "input_pipelines.pipeline",
    "build_eval_dataset": "input_pipelines.pipeline",
    "save_iterator_state": "input_pipelines.pipeline",
    "restore_iterator_state": "input_pipelines.pipeline",
    "default_data_config": "input_pipelines.config",
    "make_source": "input_pipelines.sources",
    "SOURCES": "input_pipelines.sources",
    "Source": "input_pipelines.sources",
    "ImageFolderSource": "input_pipelines.sources",
    "IdentityFolderSource": "input_pipelines.sources",
    "VideoSource": "input_pipelines.sources",
    "FrameFolderSource": "input_pipelines.sources",
    "VimeoSeptupletSource": "input_pipelines.sources",
    "TFDSSource": "input_pipelines.sources",
    "ArrayRecordSource": "input_pipelines.sources",
    "SyntheticFacesSource": "input_pipelines.sources",
    "BUILDERS": "input_pipelines.builders",
    "write_arrayrecord": "input_pipelines.arrayrecord",
    "read_image": "input_pipelines.image_io",
    "ImageReadError": "input_pipelines.image_io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'input_pipelines' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
