"""Render docs/images/builder_<name>.png: what each sample builder produces, from synthetic faces.

Run from the repository root: ``python docs/make_builder_figures.py``. Inputs are procedural
synthetic faces (``input_pipelines.synthetic_faces``; no files, nothing from ``../shared``) and
every builder gets a fixed seed, so the figures are reproducible.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from input_pipelines.builders import get_builder  # noqa: E402
from input_pipelines.pipeline import GroupedSource  # noqa: E402
from input_pipelines.sources import make_source  # noqa: E402

OUT = ROOT / "docs" / "images"
PANEL = 112
LABEL_H = 28


def _panel(x: np.ndarray, label: str) -> Image.Image:
    u8 = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = u8.shape[:2]
    scale = PANEL / max(h, w)
    im = Image.fromarray(u8).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (PANEL, PANEL + LABEL_H), (255, 255, 255))
    canvas.paste(im, ((PANEL - im.width) // 2, (PANEL - im.height) // 2))
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(label.split("\n")[:2]):
        draw.text((3, PANEL + 2 + 12 * k), line, fill=(0, 0, 0))
    return canvas


def _figure(title: str, rows: list[list[tuple[np.ndarray, str]]]) -> Image.Image:
    cols = max(len(r) for r in rows)
    title_w = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title)) + 8
    width = max(cols * (PANEL + 4) + 4, title_w)
    fig = Image.new("RGB", (width, 20 + len(rows) * (PANEL + LABEL_H + 4)), (255, 255, 255))
    ImageDraw.Draw(fig).text((4, 4), title, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, (img, label) in enumerate(row):
            fig.paste(_panel(img, label), (4 + c * (PANEL + 4), 20 + r * (PANEL + LABEL_H + 4)))
    return fig


def _example(builder: str, source_kwargs: dict, builder_kwargs: dict, index: int = 3, seed: int = 1):
    spec = get_builder(builder)
    src = make_source(
        {"name": "synthetic_faces", "kwargs": {"num_identities": 20, "num_examples": 100, "seed": 0, "mode": spec.synthetic_mode, **source_kwargs}},
        split="train",
    )
    if spec.num_records > 1:
        src = GroupedSource(src, spec.num_records, seed=0)
    return spec.fn(src[index], np.random.default_rng(seed), **builder_kwargs)


def fig_sr_pair() -> Image.Image:
    ex = _example("sr_pair", {"size": 128}, {"hr_size": 96, "scale": 4})
    chain = [("blur", {"kinds": ["isotropic"], "sigma1": (1.0, 2.0), "size": 11}), ("downsample", {"factor": 4}),
             ("noise", {"sigma": (5.0, 15.0)}), ("jpeg", {"quality": (30, 60)})]
    ex2 = _example("sr_pair", {"size": 128}, {"hr_size": 96, "scale": 4, "degradation": chain})
    return _figure(
        "sr_pair: HR crop and LR (default MATLAB bicubic x4; second row a blur+x4+noise+JPEG chain)",
        [
            [(ex["hr"], "hr 96x96"), (ex["lr"], "lr 24x24\nbicubic x4")],
            [(ex2["hr"], "hr"), (ex2["lr"], f"lr: blur s={float(ex2['deg/blur/sigma1']):.2f}\n"
                                            f"noise {float(ex2['deg/noise/sigma']):.1f}, q={int(ex2['deg/jpeg/quality'])}")],
        ],
    )


def fig_burst() -> Image.Image:
    ex = _example("burst", {"size": 128}, {"hr_size": 128, "num_frames": 7, "scale": 4, "burst_kwargs": {"jpeg_quality": (30, 70)}})
    row = [(ex["hr"], "hr 128x128")]
    for i in range(7):
        dy, dx = ex["deg/shifts"][i]
        row.append((ex["lr"][i], f"lr[{i}] q={int(ex['deg/quality'][i])}\nshift {dy:+.2f},{dx:+.2f}"))
    return _figure("burst: 7 warped, downsampled, JPEG'd LR frames of one HR face (frame 3 = reference)", [row])


def fig_frame_average_blur() -> Image.Image:
    ex = _example("frame_average_blur", {"size": 160, "num_frames": 13, "fps": 60.0, "motion_scale": 4.0},
                  {"num_frames": 9, "crop_size": 96, "scale_range": (1.0, 1.2)})
    n = int(ex["num_frames"])
    sharp = [(ex["sharp"][i], f"u={float(ex['u'][i]):.2f} t={int(ex['order'][i])}\neye x={ex['eye'][i][0]:.1f}") for i in range(n)]
    top = [(ex["blurred"], f"blurred: mean of {n}"), (ex["target"], f"target u={float(ex['u_target']):.2f}")]
    return _figure("frame_average_blur: blurred frame = mean of N sharp frames, re-ordered by the left eye (FMR)", [top, sharp[:5], sharp[5:]])


def fig_septuplet() -> Image.Image:
    ex = _example("septuplet", {"size": 128, "num_frames": 7}, {"hr_size": 96, "scale": 4})
    aug = f"hflip={int(ex['aug/hflip'])} vflip={int(ex['aug/vflip'])} rot90={int(ex['aug/rot90_k'])} reversed={int(ex['aug/reversed'])}"
    return _figure(
        "septuplet: HR frames 1..7 and LR frames 1,3,5,7 (x4); " + aug,
        [[(ex["hr"][i], f"hr {i + 1}") for i in range(7)], [(ex["lr"][i], f"lr {2 * i + 1}") for i in range(4)]],
    )


def fig_reference_set() -> Image.Image:
    ex = _example("reference_set", {"size": 128, "set_size": 5}, {"num_references": 3, "hr_size": 128, "scale": 4})
    row = [(ex["lr"], "lr 32x32"), (ex["hr"], "hr (target)")]
    row += [(ex["references"][k], f"reference {k + 1}") for k in range(3)]
    return _figure("reference_set: LR target + 3 HR references of the same identity (flipped together)", [row])


def fig_multiview_pair() -> Image.Image:
    ex = _example("multiview_pair", {"size": 128, "num_views": 8},
                  {"degradation": [("motion_blur", {"length": (9.0, 15.0), "size": 21})]})
    rel = ", ".join(f"{v:+.0f}" for v in ex["relative_pose"])
    s, t = (int(v) for v in ex["view_ids"])
    return _figure(
        "multiview_pair: blurred source view, clean source, target view; relative pose = (yaw, pitch, roll) degrees",
        [[(ex["source"], f"source (view {s})\nblurred"), (ex["source_clean"], "source clean"),
          (ex["target"], f"target (view {t})\nrel. pose {rel}")]],
    )


def fig_contrastive_quadruple() -> Image.Image:
    ex = _example("contrastive_quadruple", {"size": 96, "num_frames": 5}, {"num_frames": 5, "hr_size": 96})
    mid = 2
    sig = ex["deg/noise/sigma"]
    sig_n = ex["deg_negative/noise/sigma"]
    rows = [
        [(ex["hr_center"][0], "p (hr)"), (ex["lq"][0, 0, mid], f"p, d_i\nnoise {sig[0]:.1f}"), (ex["lq"][0, 1, mid], f"p, d_j\nnoise {sig[1]:.1f}"),
         (ex["lq_negative"][0, mid], f"p, d_k (hard neg)\nnoise {sig_n[0]:.1f}"), (ex["lq_negative"][1, mid], f"p, d_l (hard neg)\nnoise {sig_n[1]:.1f}")],
        [(ex["hr_center"][1], "q (hr)"), (ex["lq"][1, 0, mid], "q, d_i (same draw)"), (ex["lq"][1, 1, mid], "q, d_j (same draw)"),
         (ex["lr_clean"][0, 0], "clean target\np, d_i blur+x4")],
    ]
    return _figure("contrastive_quadruple: two contents x two degradations + hard negatives (middle frames)", rows)


FIGURES = {
    "sr_pair": fig_sr_pair,
    "burst": fig_burst,
    "frame_average_blur": fig_frame_average_blur,
    "septuplet": fig_septuplet,
    "reference_set": fig_reference_set,
    "multiview_pair": fig_multiview_pair,
    "contrastive_quadruple": fig_contrastive_quadruple,
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, fn in FIGURES.items():
        path = OUT / f"builder_{name}.png"
        fn().save(path, optimize=True)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
