"""Render docs/images/degradations.png: a clean synthetic picture and each degradation family.

Run from the repository root: ``python docs/make_degradation_figure.py``. The input is a
deterministic procedural picture drawn here (no external data), every sampler gets a fixed seed,
so the figure is reproducible.
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image, ImageDraw

import restore_jax.degradations as D

SIZE = 128
OUT = pathlib.Path(__file__).resolve().parent / "images" / "degradations.png"


def synthetic_picture(size: int = SIZE, shift: float = 0.0) -> np.ndarray:
    """A face-like cartoon on a striped background (float32 [size, size, 3] in [0, 1])."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    xx = xx - shift / size
    img = np.stack([0.25 + 0.5 * yy, 0.35 + 0.2 * np.sin(12 * xx), 0.55 - 0.3 * yy], -1)
    img[(np.sin(40 * (xx + 0.3 * yy)) > 0.6) & (yy > 0.8)] = (0.9, 0.9, 0.85)
    face = ((xx - 0.5) / 0.28) ** 2 + ((yy - 0.52) / 0.36) ** 2 < 1
    img[face] = (0.92, 0.74, 0.6)
    hair = face & (yy < 0.3)
    img[hair] = (0.3, 0.18, 0.1)
    for ex in (0.4, 0.6):
        img[((xx - ex) / 0.05) ** 2 + ((yy - 0.45) / 0.03) ** 2 < 1] = (0.1, 0.1, 0.15)
    mouth = (np.abs(yy - 0.72 + 4 * (xx - 0.5) ** 2) < 0.015) & (np.abs(xx - 0.5) < 0.1)
    img[mouth] = (0.6, 0.1, 0.15)
    return np.clip(img, 0, 1).astype(np.float32)


def _panel(x: np.ndarray, label: str) -> Image.Image:
    u8 = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(u8).resize((SIZE, SIZE), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (SIZE, SIZE + 14), "white")
    canvas.paste(im, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), label, fill="black")
    return canvas


def main() -> None:
    x = synthetic_picture()
    seq = np.stack([synthetic_picture(shift=2.0 * t) for t in range(9)])
    rng = np.random.default_rng
    panels = [
        (x, "clean"),
        (D.gaussian_blur(rng(1), x, sigma1=3.0, sigma2=0.8, theta=0.5)[0], "aniso Gaussian"),
        (D.motion_blur(rng(2), x, length=14.0, curvature=1.0)[0], "motion kernel"),
        (D.frame_average(rng(3), seq, gamma=2.2)[0], "avg 9 frames"),
        (D.downsample(rng(4), x, factor=4)[0], "bicubic x4"),
        (D.gaussian_noise(rng(5), x, sigma=25.0)[0], "AWGN s=25"),
        (D.mixed_noise(rng(6), x)[0], "Gauss + 10% S&P"),
        (D.poisson_noise(rng(7), x, peak=30.0)[0], "Poisson peak 30"),
        (D.jpeg(rng(8), x, quality=10)[0], "JPEG q=10"),
        (D.scratches(rng(9), x, count=4)[0], "scratches"),
        (D.color_jitter(rng(10), x)[0], "colour jitter"),
        (D.burst(rng(11), x, num_frames=3, jpeg_quality=70)[0][0], "burst frame"),
    ]
    cols = 6
    rows = (len(panels) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (SIZE + 4), rows * (SIZE + 18)), "white")
    for i, (img, label) in enumerate(panels):
        sheet.paste(_panel(img, label), ((i % cols) * (SIZE + 4), (i // cols) * (SIZE + 18)))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(OUT, optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
