"""Shared helpers for the benchmarks in ``bench/``: timing, machine description, JSON results, tables.

The benchmarks import this as ``bench.common``: run them as modules from the repository root
(``python -m bench.zsm_bench``), which puts the root on ``sys.path`` without any path edits.

Every benchmark times with :func:`time_fn` (medians of several runs after a warm-up), records
:func:`machine_info` and its configuration, and writes ``bench/results/<name>.json`` through
:func:`write_results` so numbers from different machines and commits can be compared.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def _block(value: Any) -> Any:
    """Wait for every JAX array in ``value`` (any pytree) to be computed; other leaves pass through."""
    try:
        import jax
    except ImportError:  # pragma: no cover - JAX is a hard dependency of the project
        return value
    return jax.block_until_ready(value)


def time_fn(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 5) -> list[float]:
    """Seconds taken by each of ``repeats`` calls of ``fn()`` after ``warmup`` untimed calls.

    JAX outputs are waited for with ``jax.block_until_ready``; a PyTorch ``fn`` must synchronise
    itself (e.g. end with ``torch.cuda.synchronize()``) since torch tensors are returned as they are.
    """
    if repeats < 1:
        raise ValueError(f"time_fn: repeats must be >= 1, got {repeats}")
    for _ in range(max(warmup, 0)):
        _block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return times


def median(times: Sequence[float]) -> float:
    return float(statistics.median(times))


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, Python and library versions (those importable) and JAX devices."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:  # other work on a shared machine skews timings; record how busy it was
        info["load_average_1_5_15min"] = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        pass
    versions = {}
    for name in ("numpy", "jax", "jaxlib", "flax", "torch", "torchvision"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            continue
    info["versions"] = versions
    try:
        import jax

        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as exc:  # noqa: BLE001 - a broken backend should not stop the record
        info["jax_devices"] = f"unavailable: {exc}"
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    for var in ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            info.setdefault("env", {})[var] = os.environ[var]
    return info


def write_results(name: str, payload: Mapping[str, Any], path: str | os.PathLike | None = None) -> pathlib.Path:
    """Write ``payload`` as ``bench/results/<name>.json`` (or to ``path`` when given; e.g. a smoke run
    that must not replace a committed record), pretty-printed, and return the path."""
    if path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}.json"
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` (dicts) as an aligned text table with the given column order."""
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(wd) for c, wd in zip(columns, widths))
    print(line)
    print("  ".join("-" * wd for wd in widths))
    for r in cells:
        print("  ".join(v.ljust(wd) for v, wd in zip(r, widths)))
