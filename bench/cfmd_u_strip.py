"""Does the moment control ``u`` move the restored face along the facial motion? (CFMD-GAN)

For held-out synthetic motion sequences (``N`` frames averaged, FMR order: the left eye moves
left -> right as ``u`` grows), a trained CFMD checkpoint restores the blurred frame at several
``u``. Two measurements per example, printed as a table and written to
``bench/results/cfmd_u_strip.json``:

* **matched moment**: the index ``i*`` of the GT re-ordered frame closest (MSE) to the output; its
  left-eye x position ``eye[i*]`` (the renderer's exact landmarks) is the output's eye position;
* **image shift**: the sub-pixel horizontal translation of the output relative to the ``u = 0.5``
  output in a 25x25 window around the left eye (iterative Lucas-Kanade on the grey image); the same
  estimator on the GT frames ``i = round(u N)`` vs ``N // 2`` gives the true motion for comparison.

An example is *monotone* when the measurement is non-decreasing over ``u = 0, .25, .5, .75``
(matched moment) or strictly increasing (shift). ``--plain-workdir`` adds the plain (non-controllable)
baseline, whose outputs cannot depend on ``u``. ``--figure`` writes a strip: per example, the blurred
input, the outputs at each ``u`` and the GT frames ``round(u N)`` below them (synthetic faces only).

    .venv/bin/python bench/cfmd_u_strip.py --workdir /tmp/cfmd_small --plain-workdir /tmp/cfmd_plain \\
        --figure docs/images/cfmd_u_strip.png
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench.common import machine_info, print_table, write_results  # noqa: E402

U_VALUES = (0.0, 0.25, 0.5, 0.75)


def load_model(spec: str, workdir: str):
    """``(config, predict(blurred [B,S,S,3], u [B]) -> [B,S,S,3], step)`` from the latest checkpoint."""
    import jax

    from restore_jax.train.checkpointing import CheckpointManager
    from restore_jax.train.config_loading import load_config
    from restore_jax.train.loop import Trainer

    config = load_config(spec)
    config.data.num_workers = 0
    trainer = Trainer(config)
    ckpt = CheckpointManager(pathlib.Path(workdir) / "checkpoints", every_steps=1, async_save=False)
    try:
        restored = ckpt.restore(trainer.abstract_restore_target())
    finally:
        ckpt.close()
    if restored is None:
        raise SystemExit(f"no checkpoint in {workdir}/checkpoints; train first")
    params = trainer.eval_params(restored.state)
    fn = trainer.predict_fn

    def predict(blurred: np.ndarray, u: np.ndarray) -> np.ndarray:
        from restore_jax.train.mesh import make_global_batch

        batch = make_global_batch({"blurred": blurred.astype(np.float32), "u": u.astype(np.float32)}, trainer.mesh)
        return np.asarray(jax.device_get(fn(params, batch)))

    return config, predict, int(restored.step)


def held_out_windows(config, n: int, count: int, batch: int = 8):
    """``count`` held-out synthetic windows of ``n`` frames (FMR order, whole face box, eval seed)."""
    from input_pipelines.pipeline import build_eval
    from restore_jax.models.cfmd_eval import _eval_data_config, eval_sets

    settings = config.eval.cfmd_s2v
    sources = dict(eval_sets(config, settings))
    if "synthetic_faces" not in sources:
        raise SystemExit("the config's data has no synthetic_faces part")
    out = {"blurred": [], "sharp": [], "eye": []}
    for b in build_eval(_eval_data_config(config, sources["synthetic_faces"], settings, n), "val", batch):
        keep = b["mask"] > 0
        for k in out:
            out[k].append(b[k][keep])
        if sum(len(x) for x in out["blurred"]) >= count:
            break
    return {k: np.concatenate(v)[:count] for k, v in out.items()}


def _grey(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def estimate_shift(img: np.ndarray, ref: np.ndarray, centre: np.ndarray, *, radius: int = 12, iters: int = 20) -> np.ndarray:
    """``(dx, dy)`` with ``img(p) ~ ref(p - d)`` in the window of ``radius`` px around ``centre`` (x, y).

    Iterative Lucas-Kanade on grey images with bilinear warps; the window around the left eye keeps
    the static background and the non-rigid mouth out of the estimate.
    """
    from scipy import ndimage

    a, r = _grey(img), _grey(ref)
    h, w = a.shape
    cx, cy = int(round(float(centre[0]))), int(round(float(centre[1])))
    sl = (slice(max(1, cy - radius), min(h - 1, cy + radius + 1)), slice(max(1, cx - radius), min(w - 1, cx + radius + 1)))
    d = np.zeros(2)
    for _ in range(iters):
        warped = ndimage.shift(r, (d[1], d[0]), order=1, mode="nearest")
        gy, gx = np.gradient(warped)
        jac = np.stack([-gx[sl].ravel(), -gy[sl].ravel()], axis=1)
        res = (a - warped)[sl].ravel()
        step = np.linalg.lstsq(jac, res, rcond=None)[0]
        d += step
        if np.max(np.abs(step)) < 1e-4:
            break
    return d


def measure(predict, data: dict, n: int) -> dict:
    """Matched moments, eye positions and shifts of the outputs at every ``u``."""
    blurred, sharp, eye = data["blurred"], data["sharp"][:, :n], data["eye"][:, :n]
    k = len(blurred)
    outs = np.stack([predict(blurred, np.full(k, u)) for u in U_VALUES], axis=1)  # [K, U, S, S, 3]
    mse = ((outs[:, :, None] - sharp[:, None]) ** 2).mean(axis=(3, 4, 5))  # [K, U, N]
    matched = mse.argmin(axis=2)
    eye_x = np.take_along_axis(eye[..., 0], matched, axis=1)
    ref = U_VALUES.index(0.5)
    centre = eye[:, n // 2]  # the left eye of the middle GT frame
    shift = np.array([[estimate_shift(outs[j, i], outs[j, ref], centre[j])[0] for i in range(len(U_VALUES))] for j in range(k)])
    gt_idx = [min(n - 1, int(round(u * n))) for u in U_VALUES]
    gt_shift = np.array([[estimate_shift(sharp[j, i], sharp[j, n // 2], centre[j])[0] for i in gt_idx] for j in range(k)])
    gt_eye = eye[:, gt_idx, 0]
    return {
        "outputs": outs,
        "matched": matched,
        "eye_x": eye_x,
        "shift": shift,
        "gt_shift": gt_shift,
        "gt_eye_x": gt_eye,
        "monotone_matched": float(np.mean(np.all(np.diff(matched, axis=1) >= 0, axis=1) & (matched[:, -1] > matched[:, 0]))),
        "monotone_shift": float(np.mean(np.all(np.diff(shift, axis=1) > 0, axis=1))),
        "gt_monotone_shift": float(np.mean(np.all(np.diff(gt_shift, axis=1) > 0, axis=1))),
    }


def save_figure(path: pathlib.Path, data: dict, m: dict, n: int, rows: int, plain: dict | None, zoom: int = 3) -> None:
    """Per example: blurred | outputs at each u (| plain output); below: the GT frames round(u N)."""
    from PIL import Image, ImageDraw

    s = data["blurred"].shape[1]
    cols = 1 + len(U_VALUES) + (1 if plain is not None else 0)
    pad, label_h = 4, 14
    w = cols * (s * zoom + pad) + pad
    h = rows * 2 * (s * zoom + pad) + rows * label_h + pad
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)

    def put(img, r, c, y0):
        arr = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        tile = Image.fromarray(arr).resize((s * zoom, s * zoom), Image.NEAREST)
        canvas.paste(tile, (pad + c * (s * zoom + pad), y0 + r * (s * zoom + pad)))

    gt_idx = [min(n - 1, int(round(u * n))) for u in U_VALUES]
    for j in range(rows):
        y0 = pad + j * (2 * (s * zoom + pad) + label_h)
        labels = ["blurred"] + [f"u={u:g}" for u in U_VALUES] + (["plain"] if plain is not None else [])
        for c, text in enumerate(labels):
            draw.text((pad + c * (s * zoom + pad) + 2, y0), text, fill=(0, 0, 0))
        y1 = y0 + label_h
        put(data["blurred"][j], 0, 0, y1)
        for i in range(len(U_VALUES)):
            put(m["outputs"][j, i], 0, 1 + i, y1)
            put(data["sharp"][j, gt_idx[i]], 1, 1 + i, y1)
        if plain is not None:
            put(plain["outputs"][j, 0], 0, cols - 1, y1)
        draw.text((pad + 2, y1 + s * zoom + pad + 2), f"GT i=round(uN), N={n}", fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="the CFMD run (checkpoints/)")
    p.add_argument("--config", default="configs/cfmd.py:small")
    p.add_argument("--plain-workdir", default="", help="the plain baseline run (optional)")
    p.add_argument("--plain-config", default="configs/cfmd.py:small,plain=True")
    p.add_argument("--frames", type=int, default=13, help="N frames averaged")
    p.add_argument("--examples", type=int, default=24)
    p.add_argument("--figure", default="", help="PNG strip to write (e.g. docs/images/cfmd_u_strip.png)")
    p.add_argument("--figure-rows", type=int, default=3)
    p.add_argument("--name", default="cfmd_u_strip")
    args = p.parse_args()

    config, predict, step = load_model(args.config, args.workdir)
    data = held_out_windows(config, args.frames, args.examples)
    runs = {"cfmd": measure(predict, data, args.frames)}
    steps = {"cfmd": step}
    if args.plain_workdir:
        _, plain_predict, steps["plain"] = load_model(args.plain_config, args.plain_workdir)
        runs["plain"] = measure(plain_predict, data, args.frames)
    rows = []
    for name, m in runs.items():
        for i, u in enumerate(U_VALUES):
            rows.append({
                "model": name, "u": u,
                "matched i* (mean)": float(m["matched"][:, i].mean()),
                "eye x of i* (px)": float(m["eye_x"][:, i].mean()),
                "shift vs u=.5 (px)": float(m["shift"][:, i].mean()),
                "GT shift (px)": float(m["gt_shift"][:, i].mean()),
                "GT eye x (px)": float(m["gt_eye_x"][:, i].mean()),
            })
    print(f"{len(data['blurred'])} held-out synthetic windows, N={args.frames}, FMR order; steps {steps}")
    print_table(rows, list(rows[0]))
    summary = {
        name: {
            "monotone_matched_fraction": m["monotone_matched"],
            "monotone_shift_fraction": m["monotone_shift"],
            "gt_monotone_shift_fraction": m["gt_monotone_shift"],
        }
        for name, m in runs.items()
    }
    for name, srow in summary.items():
        print(f"{name}: monotone matched moment {srow['monotone_matched_fraction']:.2f}, monotone shift "
              f"{srow['monotone_shift_fraction']:.2f} (GT frames: {srow['gt_monotone_shift_fraction']:.2f})")
    path = write_results(args.name, {
        "benchmark": "cfmd_u_strip", "machine": machine_info(),
        "config": {"config": args.config, "workdir": args.workdir, "plain": args.plain_workdir, "frames": args.frames,
                   "examples": len(data["blurred"]), "u": U_VALUES, "steps": steps},
        "rows": rows, "summary": summary,
    })
    print(f"results: {path}")
    if args.figure:
        save_figure(pathlib.Path(args.figure), data, runs["cfmd"], args.frames, args.figure_rows, runs.get("plain"))
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
