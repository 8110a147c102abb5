"""Peak host memory (RSS) of ``restore-jax restore --tile`` on a large image, against its output size.

Each measurement is a fresh process running the real CLI (``restore_jax.cli.main``) on a synthetic
RGB image; the process reports its own peak resident set size (``ru_maxrss``) at exit, so the number
includes the Python / JAX runtime, the input, the model and the output. The table also lists what
the output alone weighs as uint8 and as float32, and the runtime's baseline (the same process
restoring a 64 x 64 image), so the growth with the image size is visible:

    python -m bench.restore_memory                       # 3000 x 2000 at x4 (the issue's case)
    python -m bench.restore_memory --sizes 1000x1000,3000x2000 --tile 256 --out /tmp/mem.json

The model is ``baseline_sr:ci`` at its initial weights (a checkpoint written here, no training):
memory does not depend on the weights. Writes ``bench/results/restore_memory.json`` by default.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

from bench.common import machine_info, print_table, write_results

_CHILD = """
import json, resource, sys
from restore_jax import cli
code = cli.main(sys.argv[1:])
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print("RESULT " + json.dumps({"code": code, "peak_rss_mib": peak_kib / 1024}))
sys.exit(code)
"""


def _checkpoint(workdir: pathlib.Path) -> None:
    """``baseline_sr:ci`` initial state saved as step 0 with its config (the engine's checkpointing)."""
    from restore_jax import api

    trainer = api.make_trainer(api.load_config("baseline_sr:ci"))
    ckpt = trainer.make_checkpointer(workdir)
    try:
        ckpt.save(0, trainer.init_state(), config=trainer.config.to_dict(), force=True)
    finally:
        ckpt.close()


def _image(path: pathlib.Path, height: int, width: int) -> None:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 7 + y * 3) % 256, (x * y // 97) % 256, (y * 5) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def _measure(workdir: pathlib.Path, src: pathlib.Path, dst: pathlib.Path, tile: int) -> dict:
    args = ["restore", "--checkpoint", str(workdir), str(src), str(dst)]
    if tile:
        args += ["--tile", str(tile)]
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"restore failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="3000x2000", help="comma-separated WIDTHxHEIGHT input sizes")
    p.add_argument("--tile", type=int, default=256, help="--tile of restore-jax restore (input pixels)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/restore_memory.json)")
    a = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",") if s.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        _checkpoint(tmp / "run")
        _image(tmp / "small.png", 64, 64)
        base = _measure(tmp / "run", tmp / "small.png", tmp / "small_x4.png", 0)
        rows.append({"input": "64x64", "output": "256x256", "peak RSS (MiB)": round(base["peak_rss_mib"], 1),
                     "output uint8 (MiB)": 0.2, "output float32 (MiB)": 0.8})
        for w, h in sizes:
            src, dst = tmp / f"in_{w}x{h}.png", tmp / f"out_{w}x{h}.png"
            _image(src, h, w)
            r = _measure(tmp / "run", src, dst, a.tile)
            out_px = (4 * w) * (4 * h) * 3
            rows.append({
                "input": f"{w}x{h}", "output": f"{4 * w}x{4 * h}", "peak RSS (MiB)": round(r["peak_rss_mib"], 1),
                "output uint8 (MiB)": round(out_px / 2**20, 1), "output float32 (MiB)": round(4 * out_px / 2**20, 1),
            })
    columns = ["input", "output", "peak RSS (MiB)", "output uint8 (MiB)", "output float32 (MiB)"]
    print_table(rows, columns)
    path = write_results(
        "restore_memory",
        {"machine": machine_info(), "config": {"model": "baseline_sr:ci (initial weights)", "tile": a.tile,
                                               "scale": 4, "command": "restore-jax restore --tile"}, "rows": rows},
        path=a.out,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
