"""Config schema and loading (no method knowledge; imports no JAX).

- :mod:`restore_jax.config.schema`: the engine's base sections, ``parse_arg`` for presets,
  ``--config.x=y`` overrides, engine validation;
- :mod:`restore_jax.config.loading`: find and run ``configs/<id>.py:<arg>`` (a path, or an id
  resolved to the configs shipped with the installed package).

A user-facing config file imports only this package::

    from restore_jax import config as rc

    def get_config(arg=None):
        knobs = rc.parse_arg(arg, presets=("paper", "small", "ci"), default="small")
        c = rc.base_config()
        c.method = "my_method"
        ...
"""

from __future__ import annotations

from ml_collections import ConfigDict

from restore_jax.config.loading import available_configs, load_config_file, resolve_config_path
from restore_jax.config.schema import (
    COMPUTE_DTYPES,
    MESH_AXES,
    STEP_KINDS,
    apply_overrides,
    base_config,
    check_eval_batch,
    data_parallel_size,
    fill_sections,
    mesh_sizes,
    optim_config,
    parse_arg,
    parse_override_args,
    resolve_mesh_sizes,
    validate,
)
from restore_jax.errors import ConfigError
from restore_jax.locations import shared_data, shared_dir


def data_config(builder: str = "sr_pair") -> ConfigDict:
    """The data section with working defaults for a generic ``builder`` on synthetic faces
    (``input_pipelines.config.default_data_config``); a method's own builder is set by name after."""
    from input_pipelines.config import default_data_config

    return default_data_config(builder)

__all__ = [
    "COMPUTE_DTYPES",
    "ConfigDict",
    "ConfigError",
    "MESH_AXES",
    "STEP_KINDS",
    "apply_overrides",
    "available_configs",
    "base_config",
    "check_eval_batch",
    "data_config",
    "data_parallel_size",
    "fill_sections",
    "load_config_file",
    "mesh_sizes",
    "optim_config",
    "parse_arg",
    "parse_override_args",
    "resolve_config_path",
    "resolve_mesh_sizes",
    "shared_data",
    "shared_dir",
    "validate",
]
