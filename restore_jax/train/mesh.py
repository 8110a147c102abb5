"""Device mesh and sharding rules, all from config (code never branches on the device count).

Mesh: always the two axes ``('data', 'fsdp')`` (a size-1 axis is harmless), shape from
``config.mesh`` (one ``-1`` takes the remaining devices). The batch's leading dimension is split
over both axes; parameters, optimizer moments and EMA copies follow the rules below.

Rules (``config.sharding.rules``): ``(regex, spec)`` pairs matched with ``re.search`` against the
'/'-joined path of every leaf of the :class:`~restore_jax.train.state.TrainState`, e.g.
``params/G/blocks/0/conv1/kernel`` or ``opt_state/G/1/mu/blocks/0/conv1/kernel`` (moments carry the
parameter's path as a suffix, so one rule covers a parameter and its optimizer state). The first
matching rule wins; no match, scalars and PRNG keys are replicated. ``spec`` is:

- ``'replicate'``;
- ``'fsdp'``: shard the largest dimension divisible by the ``fsdp`` axis size over ``fsdp``, for
  arrays with at least ``config.sharding.fsdp_min_size`` elements (else replicate);
- a tuple of mesh-axis names / ``None`` per dimension: an explicit ``PartitionSpec``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from restore_jax.config.schema import MESH_AXES as AXES
from restore_jax.config.schema import resolve_mesh_sizes
from restore_jax.train.paths import path_str
BATCH_AXES = ("data", "fsdp")


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``('data', 'fsdp')`` mesh over ``devices`` (default: all global devices)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = resolve_mesh_sizes(mesh_config.shape, mesh_config.axes, len(devices))
    shape = tuple(sizes[a] for a in AXES)
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over ``('data', 'fsdp')``, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES))


def batch_shards(mesh: Mesh) -> int:
    return int(mesh.shape["data"] * mesh.shape["fsdp"])


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def partition_spec(path: str, shape: tuple[int, ...], rules, mesh: Mesh, fsdp_min_size: int) -> P:
    """The ``PartitionSpec`` the first matching rule gives a leaf (see the module docstring)."""
    if len(shape) == 0:
        return P()
    for pattern, spec in rules:
        if not re.search(pattern, path):
            continue
        if spec == "replicate":
            return P()
        if spec == "fsdp":
            n = int(mesh.shape["fsdp"])
            if int(np.prod(shape)) < fsdp_min_size:
                return P()
            candidates = [d for d in range(len(shape)) if shape[d] % n == 0]
            if not candidates:
                return P()
            dim = max(candidates, key=lambda d: (shape[d], -d))
            spec_list = [None] * len(shape)
            spec_list[dim] = "fsdp"
            return P(*spec_list)
        if isinstance(spec, (tuple, list)):
            if len(spec) > len(shape):
                raise ValueError(f"sharding rule {pattern!r} spec {spec} has more entries than {path} {shape}")
            for dim, axis in enumerate(spec):
                names = (axis,) if isinstance(axis, str) else tuple(axis or ())
                size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
                if shape[dim] % size:
                    raise ValueError(
                        f"sharding rule {pattern!r}: dim {dim} of {path} {shape} is not divisible by {names} ({size})"
                    )
            return P(*spec)
        raise ValueError(f"sharding rule {pattern!r}: unknown spec {spec!r} (use 'replicate', 'fsdp' or a tuple)")
    return P()


def tree_shardings(tree: Any, mesh: Mesh, rules, fsdp_min_size: int, prefix: str = "") -> Any:
    """A ``NamedSharding`` per leaf of ``tree`` (arrays or ``ShapeDtypeStruct``s) from the rules."""

    def one(path, leaf):
        if _is_key(leaf):
            return replicated(mesh)
        p = prefix + path_str(path)
        return NamedSharding(mesh, partition_spec(p, tuple(leaf.shape), rules, mesh, fsdp_min_size))

    return jax.tree_util.tree_map_with_path(one, tree)


def state_shardings(abstract_state: Any, mesh: Mesh, sharding_config) -> Any:
    """Shardings of a whole (abstract) ``TrainState`` from ``config.sharding``."""
    return tree_shardings(abstract_state, mesh, tuple(sharding_config.rules), int(sharding_config.fsdp_min_size))


def with_shardings(abstract: Any, shardings: Any) -> Any:
    """``ShapeDtypeStruct`` tree carrying ``shardings`` (the restore target; never the saved sharding)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def make_global_batch(local_batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble this process's local rows into global arrays sharded over the batch axes.

    Every process passes its own ``[local_batch, ...]`` rows; the global batch is their
    concatenation in process order. Non-numeric entries (e.g. file names) are dropped and 64-bit
    numbers become 32-bit.
    """
    sharding = batch_sharding(mesh)
    out = {}
    for key, value in local_batch.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf" or arr.ndim == 0:
            continue
        if arr.dtype.itemsize == 8 and arr.dtype.kind in "iuf":  # JAX runs 32-bit by default
            arr = arr.astype({"i": np.int32, "u": np.uint32, "f": np.float32}[arr.dtype.kind])
        out[key] = jax.make_array_from_process_local_data(sharding, arr)
    return out
