"""Rendering speed of the synthetic faces on one CPU core.

    .venv/bin/python -m input_pipelines.synthetic_faces.benchmark [--size 128] [--n 400]

Renders dataset-style still images (a new identity, pose, expression and lighting every time, so
no per-identity cache helps), frames of one sequence (identity geometry and background reused),
and shuffled records of the default dataset (1000 identities, so the per-identity memo caches
are warm after a while, as in a long training run). Prints faces per second of wall time and of process CPU time; the best of
several rounds is reported because shared machines add noise. Pin to one core for a clean
number, e.g. ``taskset -c 0``; NumPy here runs single-threaded either way (no BLAS-sized work).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _rounds(fn, n: int, rounds: int) -> tuple[float, float]:
    best_wall = best_cpu = float("inf")
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(n)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return n / best_wall, n / best_cpu


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from . import SyntheticFaces, render_sequence, sample_identity

    parser = argparse.ArgumentParser(description="synthetic face rendering speed")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=400, help="images per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    ds = SyntheticFaces(args.size, num_identities=100_000, seed=123, samples_per_identity=1)
    offset = [0]

    def stills(n: int) -> None:
        for i in range(n):  # never the same identity twice
            ds[offset[0] + i]
        offset[0] += n

    default = SyntheticFaces(args.size, seed=123)  # 1000 identities x 16 samples
    rng = np.random.default_rng(0)
    order = rng.permutation(len(default))
    for i in order[:2000]:  # warm the per-identity caches (as a long-running loader would)
        default.identity(default.identity_id(int(i)))
    pos = [0]

    def shuffled(n: int) -> None:
        for i in order[pos[0] : pos[0] + n]:
            default[int(i)]
        pos[0] += n

    idn = sample_identity(5)

    def frames(n: int) -> None:
        render_sequence(idn, n, 30.0, seed=1, size=args.size)

    ds[0]  # warm-up (imports, caches of constant tables)
    still_wall, still_cpu = _rounds(stills, args.n, args.rounds)
    seq_wall, seq_cpu = _rounds(frames, args.n, args.rounds)
    shuf_wall, shuf_cpu = _rounds(shuffled, args.n, args.rounds)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, numpy {np.__version__}")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    rows = [
        ("dataset stills (new identity each)", still_wall, still_cpu),
        ("sequence frames (one identity)", seq_wall, seq_cpu),
        ("default dataset, shuffled", shuf_wall, shuf_cpu),
    ]
    for name, wall, cpu in rows:
        print(f"{args.size}x{args.size} {name:36s} {wall:7.1f} faces/s wall, {cpu:7.1f} faces/s CPU")


if __name__ == "__main__":
    main()
