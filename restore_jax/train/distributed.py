"""Multi-process start: the one wrapper around ``jax.distributed.initialize()``.

Environment (set by ``launch/*``; all optional, single-process runs need none):

- ``RESTORE_JAX_COORDINATOR=host:port``, ``RESTORE_JAX_NUM_PROCESSES=N``, ``RESTORE_JAX_PROCESS_ID=i``
  (and optionally ``RESTORE_JAX_LOCAL_DEVICE_IDS=0,1``): explicit cluster description (any
  machine, including several processes on one host for testing);
- ``RESTORE_JAX_DISTRIBUTED=auto``: let JAX detect the cluster (Cloud TPU pods, Slurm, Open MPI).

Nothing set: no-op (one process, all local devices). Call it before any other JAX call.
CPU-only clusters use Gloo collectives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax

from restore_jax.errors import ConfigError

ENV_COORDINATOR = "RESTORE_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "RESTORE_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "RESTORE_JAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "RESTORE_JAX_LOCAL_DEVICE_IDS"
ENV_MODE = "RESTORE_JAX_DISTRIBUTED"

_initialized = False


def _int_env(env: Mapping[str, str], name: str) -> int:
    value = env.get(name)
    if value is None:
        raise ConfigError(f"{ENV_COORDINATOR} is set but {name} is not; set both {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID}")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Start multi-process JAX if arguments or the environment ask for it; returns whether it did.

    Idempotent. Explicit arguments win over ``RESTORE_JAX_*`` variables.
    """
    global _initialized
    if _initialized:
        return True
    env = os.environ if env is None else env
    coordinator = coordinator_address or env.get(ENV_COORDINATOR)
    mode = env.get(ENV_MODE, "").strip().lower()
    if "cpu" in env.get("JAX_PLATFORMS", "").lower():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator:
        n = num_processes if num_processes is not None else _int_env(env, ENV_NUM_PROCESSES)
        pid = process_id if process_id is not None else _int_env(env, ENV_PROCESS_ID)
        if not 0 <= pid < n:
            raise ConfigError(f"process id {pid} must be in [0, {n})")
        if local_device_ids is None and env.get(ENV_LOCAL_DEVICE_IDS):
            local_device_ids = [int(x) for x in env[ENV_LOCAL_DEVICE_IDS].split(",")]
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=n,
            process_id=pid,
            local_device_ids=local_device_ids,
        )
    elif mode == "auto":
        jax.distributed.initialize()
    elif mode in ("", "off", "0", "false"):
        return False
    else:
        raise ConfigError(f"{ENV_MODE}={mode!r}: use 'auto' (cluster auto-detection) or leave it unset")
    _initialized = True
    return True


def shutdown() -> None:
    """Leave the cluster (end of a multi-process run); no-op when not initialized."""
    global _initialized
    if _initialized:
        jax.distributed.shutdown()
        _initialized = False
