"""Host-side input-pipeline throughput: examples per second per worker for each sample builder.

Each row builds examples at a paper's sizes from synthetic faces (no files needed): the time per
example is ``source[i]`` (rendering) plus the builder (crop, degradations), measured in this one
process, so ``1 / time`` is what one Grain worker process sustains; ``num_workers`` workers scale it
up to the host's core count. Process CPU time per example is reported too (steadier than wall
time on a busy host). A last row runs the full Grain pipeline (``input_pipelines.build``,
0 workers) to show the framework overhead. Medians of several runs after a warm-up.

    python -m bench.pipeline_bench                 # all rows, modest repeat counts
    python -m bench.pipeline_bench --quick         # fewer examples (smoke run)
    python -m bench.pipeline_bench --rows cfmd_n13_256,sr_128_x4

Writes ``bench/results/pipeline_cpu.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from bench.common import machine_info, median, print_table, time_fn, write_results

# name -> (description, source kwargs (synthetic_faces), builder name, builder kwargs)
ROWS: dict[str, tuple[str, dict, str, dict]] = {
    "cfmd_n13_256": (
        "CFMD: mean of N=13 frames, face box scaled x1.0-1.5, 256^2 crop, FMR order",
        {"size": 320, "mode": "sequence", "num_frames": 13},
        "frame_average_blur",
        {"num_frames": 13, "crop_size": 256, "scale_range": (1.0, 1.5), "reorder": "fmr"},
    ),
    "zsm_septuplet_128": (
        "ZSM: septuplet, HR 128^2 crop (LR 32^2 frames 1,3,5,7), flips/rot90/reverse",
        {"size": 160, "mode": "sequence", "num_frames": 7},
        "septuplet",
        {"hr_size": 128, "scale": 4},
    ),
    "zsm_septuplet_256x448": (
        "ZSM: full Vimeo-size septuplet 256x448 (LR 64x112), flips/reverse",
        {"size": 448, "mode": "sequence", "num_frames": 7},
        "septuplet",
        {"hr_size": (256, 448), "scale": 4, "rot90_prob": 0.0},
    ),
    "mfsr_burst7_128": (
        "MFSR: burst of 7 warped LR 32^2 frames + HR 128^2 (JPEG 10-70)",
        {"size": 128, "mode": "image"},
        "burst",
        {"hr_size": 128, "num_frames": 7, "scale": 4, "burst_kwargs": {"jpeg_quality": (10, 70)}},
    ),
    "sr_128_x4": (
        "SR pair: HR 128^2 -> LR 32^2, MATLAB bicubic",
        {"size": 128, "mode": "image"},
        "sr_pair",
        {"hr_size": 128, "scale": 4},
    ),
    "hime_refs3_128": (
        "HIME: LR 32^2 target + 3 HR 128^2 references of the identity",
        {"size": 128, "mode": "identity_set", "set_size": 4},
        "reference_set",
        {"num_references": 3, "hr_size": 128, "scale": 4},
    ),
    "rotate_views_128": (
        "Deblur-and-rotate: two views 128^2 + relative pose, motion blur on the source",
        {"size": 128, "mode": "views", "num_views": 8},
        "multiview_pair",
        {"degradation": [("motion_blur", {"length": (5.0, 15.0), "size": 21})]},
    ),
    "bvr_quadruple_192": (
        "BVR contrastive: 2 clips x 5 frames 192^2, 6 degraded clips (aniso blur, x4, AWGN, scratches)",
        {"size": 192, "mode": "sequence", "num_frames": 5},
        "contrastive_quadruple",
        {"num_frames": 5, "hr_size": 192},
    ),
}


def _source(kwargs: dict):
    from input_pipelines.sources import make_source

    return make_source({"name": "synthetic_faces", "kwargs": {"num_identities": 50, "num_examples": 10_000, "seed": 0, **kwargs}}, split="train")


def _with_cpu_time(fn, sink: list[float]):
    """``fn`` that also appends the process CPU seconds of each call to ``sink`` (robust to a busy host)."""

    def wrapped():
        start = time.process_time()
        out = fn()
        sink.append(time.process_time() - start)
        return out

    return wrapped


def bench_row(name: str, examples: int, repeats: int) -> dict:
    from input_pipelines.builders import get_builder
    from input_pipelines.pipeline import GroupedSource

    desc, src_kwargs, builder, builder_kwargs = ROWS[name]
    spec = get_builder(builder)
    src = _source(src_kwargs)
    if spec.num_records > 1:
        src = GroupedSource(src, spec.num_records, seed=0)
    counter = iter(range(10**9))  # fresh indices every call: no cache effects

    def read_only():
        return [src[next(counter)] for _ in range(examples)]

    records = read_only()

    def build_only():
        return [spec.fn(r, np.random.default_rng(i), **builder_kwargs) for i, r in enumerate(records)]

    def full():
        out = []
        for _ in range(examples):
            i = next(counter)
            out.append(spec.fn(src[i], np.random.default_rng(i), **builder_kwargs))
        return out

    t_read = median(time_fn(read_only, warmup=1, repeats=repeats)) / examples
    t_build = median(time_fn(build_only, warmup=1, repeats=repeats)) / examples
    cpu: list[float] = []
    t_full = median(time_fn(_with_cpu_time(full, cpu), warmup=1, repeats=repeats)) / examples
    cpu_full = median(cpu[1:]) / examples  # first entry is the warm-up
    ex = build_only()[0]
    shapes = {k: list(v.shape) for k, v in ex.items() if v.ndim >= 2}
    nbytes = sum(v.nbytes for v in ex.values())
    return {
        "row": name,
        "builder": builder,
        "description": desc,
        "ms_source": 1e3 * t_read,
        "ms_builder": 1e3 * t_build,
        "ms_total": 1e3 * t_full,
        "examples_per_s_per_worker": 1.0 / t_full,
        "cpu_ms_total": 1e3 * cpu_full,
        "examples_per_cpu_s": 1.0 / cpu_full,
        "example_MiB": nbytes / 2**20,
        "shapes": shapes,
        "source_kwargs": src_kwargs,
        "builder_kwargs": {k: repr(v) for k, v in builder_kwargs.items()},
    }


def bench_grain(batches: int, repeats: int) -> dict:
    """Full pipeline (Grain, 0 workers, 2 read threads) for the SR row: framework overhead."""
    from input_pipelines.config import default_data_config
    from input_pipelines.pipeline import build

    cfg = default_data_config("sr_pair")
    cfg.source.kwargs.size = 128
    cfg.source.kwargs.num_examples = 100_000
    cfg.builder.kwargs.hr_size = 128
    cfg.num_workers = 0
    it = build(cfg, split="train", global_batch_size=16, seed=0, process_index=0, process_count=1)
    next(it)
    times = time_fn(lambda: [next(it) for _ in range(batches)], warmup=0, repeats=repeats)
    t = median(times) / (batches * 16)
    return {
        "row": "grain_sr_128_x4_b16",
        "builder": "sr_pair",
        "description": "input_pipelines.build: sr_pair 128->32, batch 16, 0 workers, 2 read threads",
        "ms_total": 1e3 * t,
        "examples_per_s_per_worker": 1.0 / t,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    p.add_argument("--examples", type=int, default=4, help="examples per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    p.add_argument("--quick", action="store_true", help="2 examples x 2 runs")
    p.add_argument("--no-grain", action="store_true", help="skip the full-pipeline row")
    p.add_argument("--out", default=None, help="write the JSON to this path instead of bench/results/pipeline_cpu.json")
    args = p.parse_args(argv)
    if args.quick:
        args.examples, args.repeats = 2, 2
    rows = []
    for name in [r for r in args.rows.split(",") if r]:
        if name not in ROWS:
            raise SystemExit(f"unknown row {name!r}; choose from {', '.join(ROWS)}")
        start = time.perf_counter()
        rows.append(bench_row(name, args.examples, args.repeats))
        print(f"  {name}: {time.perf_counter() - start:.1f}s", file=sys.stderr)
    if not args.no_grain:
        rows.append(bench_grain(batches=2, repeats=args.repeats))
    print_table(rows, ["row", "ms_source", "ms_builder", "ms_total", "examples_per_s_per_worker", "cpu_ms_total",
                       "examples_per_cpu_s", "example_MiB"])
    payload = {
        "benchmark": "pipeline_cpu",
        "machine": machine_info(),
        "config": {"examples_per_run": args.examples, "repeats": args.repeats, "source": "synthetic_faces",
                   "timing": "median over runs of (time for N examples) / N, single process; wall clock "
                             "(examples_per_s_per_worker) and process CPU time (examples_per_cpu_s, less "
                             "sensitive to other load on the host)"},
        "load_average": list(os.getloadavg()),
        "rows": rows,
    }
    path = write_results("pipeline_cpu", payload, path=args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
