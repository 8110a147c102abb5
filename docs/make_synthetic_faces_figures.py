"""Regenerate the synthetic-face figures of docs/synthetic_faces.md.

    .venv/bin/python docs/make_synthetic_faces_figures.py [--landmarks]

Writes docs/images/synthetic_faces_grid.png (random dataset samples), synthetic_faces_motion.png
(a talking, blinking, moving sequence, plus its 8-frame average = motion blur) and
synthetic_faces_views.png (synchronised views of one moment, with landmarks).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from input_pipelines.synthetic_faces import (  # noqa: E402
    Expression,
    SyntheticFaces,
    render_sequence,
    render_views,
    sample_identity,
)

OUT = ROOT / "docs" / "images"


def _u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _draw_landmarks(img: np.ndarray, lms: np.ndarray, vis: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale and mark landmarks (green visible, red hidden)."""
    big = np.repeat(np.repeat(img, scale, 0), scale, 1)
    for (x, y), v in zip(lms, vis):
        cx, cy = int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5))
        color = (40, 255, 40) if v else (255, 40, 40)
        big[max(cy - 1, 0) : cy + 2, max(cx - 1, 0) : cx + 2] = color
    return big


def grid(landmarks: bool) -> None:
    ds = SyntheticFaces(128, num_identities=4000, seed=0, split="train")
    tiles = []
    for i in range(32):
        rec = ds[i * 37]
        tile = _u8(rec["image"])
        if landmarks:
            tile = _draw_landmarks(tile, rec["landmarks"], rec["visibility"], 1)
        tiles.append(tile)
    rows = [np.concatenate(tiles[r * 8 : (r + 1) * 8], 1) for r in range(4)]
    Image.fromarray(np.concatenate(rows, 0)).save(OUT / "synthetic_faces_grid.png")


def motion() -> None:
    idn = sample_identity(12)
    frames, lms, poses, exprs = render_sequence(idn, 64, 60.0, seed=3, size=128, motion_scale=1.0)
    picks = frames[::8][:8]
    fast, *_ = render_sequence(idn, 16, 480.0, seed=3, size=128, motion_scale=12.0, start_time=0.5)
    row1 = np.concatenate([_u8(f) for f in picks], 1)
    sharp = _u8(fast[0])
    blur = _u8(fast.mean(0))
    row2 = np.concatenate([sharp, blur] + [np.full_like(sharp, 255)] * 6, 1)
    Image.fromarray(np.concatenate([row1, row2], 0)).save(OUT / "synthetic_faces_motion.png")


def views() -> None:
    idn = sample_identity(7)
    poses = [(-70, 0, 0), (-35, 5, 0), (0, 0, 0), (35, -5, 0), (70, 0, 0), (0, 25, 0), (0, -25, 10), (20, 10, -20)]
    imgs, lms, vis = render_views(idn, poses, Expression(mouth_open=0.4, smile=0.4), 128)
    tiles = [_draw_landmarks(_u8(im), lm, v, 2) for im, lm, v in zip(imgs, lms, vis)]
    rows = [np.concatenate(tiles[:4], 1), np.concatenate(tiles[4:], 1)]
    Image.fromarray(np.concatenate(rows, 0)).save(OUT / "synthetic_faces_views.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landmarks", action="store_true", help="draw landmarks on the grid too")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    grid(args.landmarks)
    motion()
    views()
    print(f"wrote figures to {OUT}")


if __name__ == "__main__":
    main()
