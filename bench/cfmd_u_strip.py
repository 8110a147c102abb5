"""Does the moment control ``u`` move the restored face along the facial motion? (CFMD-GAN)

For held-out synthetic motion sequences (``N`` frames averaged, FMR order: the left eye moves
left -> right as ``u`` grows), a trained CFMD checkpoint restores the blurred frame at several
``u``. Two measurements per example, printed as a table and written to
``bench/results/cfmd_u_strip.json``:

* **matched moment**: the index ``i*`` of the GT re-ordered frame closest (MSE) to the output; its
  left-eye x position ``eye[i*]`` (the renderer's exact landmarks) is the output's eye position;
* **landmark-net eye position** (when the face-api weights exist): the left-eye x predicted by
  :class:`restore_jax.faces.FaceLandmarkNet` on the output itself (no GT involved); the same on the
  GT frames ``i = round(u N)`` shows what the net reports for the true motion.

A window is *monotone* when ``i*`` is non-decreasing over ``u = 0, .25, .5, .75`` and ends higher
than it starts; Spearman's rank correlation between ``u`` and each measurement is averaged over
windows. ``--plain-workdir`` adds the plain (non-controllable)
baseline, whose outputs cannot depend on ``u``. ``--figure`` writes a strip: per example, the blurred
input, the outputs at each ``u`` and the GT frames ``round(u N)`` below them (synthetic faces only).

    .venv/bin/python -m bench.cfmd_u_strip --workdir /tmp/cfmd_small --plain-workdir /tmp/cfmd_plain \\
        --figure docs/images/cfmd_u_strip.png
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from bench.common import machine_info, print_table, write_results

U_VALUES = (0.0, 0.25, 0.5, 0.75)


def load_model(spec: str, workdir: str):
    """``(config, predict(blurred [B,S,S,3], u [B]) -> [B,S,S,3], step)`` from the latest checkpoint."""
    import jax

    from restore_jax.api import load_config, make_trainer
    from restore_jax.train.checkpointing import CheckpointManager

    config = load_config(spec)
    config.data.num_workers = 0
    trainer = make_trainer(config)
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
    from restore_jax.methods.cfmd.eval import _eval_data_config, eval_sets

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


def landmark_eye_x(images: np.ndarray) -> np.ndarray | None:
    """Left-eye x (mean of iBUG points 42-47, 0-based pixel centres) from the face-api landmark net,
    or ``None`` when its weights are absent."""
    from restore_jax.methods.cfmd.data import face_api_available

    if not face_api_available():
        return None
    from restore_jax.faces.landmarks import FaceLandmarkNet

    net = FaceLandmarkNet.from_face_api()
    flat = images.reshape((-1,) + images.shape[-3:])
    pts = np.concatenate([net.predict(flat[i : i + 64]) for i in range(0, len(flat), 64)])
    return (pts[:, 42:48, 0].mean(axis=1) - 0.5).reshape(images.shape[:-3])


def _monotone(x: np.ndarray) -> np.ndarray:
    """Per row: non-decreasing and last > first."""
    return np.all(np.diff(x, axis=1) >= 0, axis=1) & (x[:, -1] > x[:, 0])


def _spearman(x: np.ndarray) -> np.ndarray:
    """Per row: rank correlation of the values with their position (ties get average ranks)."""
    from scipy.stats import spearmanr

    pos = np.arange(x.shape[1])
    return np.array([spearmanr(pos, row).statistic if np.ptp(row) > 0 else 0.0 for row in x])


def measure(predict, data: dict, n: int) -> dict:
    """Matched moments and left-eye positions of the outputs at every ``u``."""
    blurred, sharp, eye = data["blurred"], data["sharp"][:, :n], data["eye"][:, :n]
    k = len(blurred)
    outs = np.stack([predict(blurred, np.full(k, u)) for u in U_VALUES], axis=1)  # [K, U, S, S, 3]
    mse = ((outs[:, :, None] - sharp[:, None]) ** 2).mean(axis=(3, 4, 5))  # [K, U, N]
    matched = mse.argmin(axis=2)
    gt_idx = [min(n - 1, int(round(u * n))) for u in U_VALUES]
    out = {
        "outputs": outs,
        "matched": matched,
        "eye_x": np.take_along_axis(eye[..., 0], matched, axis=1),
        "gt_eye_x": eye[:, gt_idx, 0],
        "monotone_matched": float(np.mean(_monotone(matched))),
        "spearman_matched": float(np.mean(_spearman(matched.astype(float)))),
        "output_change": float(np.mean(np.abs(outs[:, -1] - outs[:, 0]))),
    }
    net_x = landmark_eye_x(outs)
    if net_x is not None:
        out["net_eye_x"] = net_x
        out["spearman_net_eye_x"] = float(np.mean(_spearman(net_x)))
        out["gt_net_eye_x"] = landmark_eye_x(sharp[:, gt_idx])
        out["gt_spearman_net_eye_x"] = float(np.mean(_spearman(out["gt_net_eye_x"])))
    return out


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
            row = {
                "model": name, "u": u,
                "matched i*": float(m["matched"][:, i].mean()),
                "eye x of i* (px)": float(m["eye_x"][:, i].mean()),
                "GT eye x, i=round(uN) (px)": float(m["gt_eye_x"][:, i].mean()),
            }
            if "net_eye_x" in m:
                row["landmark-net eye x of output (px)"] = float(m["net_eye_x"][:, i].mean())
                row["landmark-net eye x of GT (px)"] = float(m["gt_net_eye_x"][:, i].mean())
            rows.append(row)
    print(f"{len(data['blurred'])} held-out synthetic windows, N={args.frames}, FMR order; steps {steps}")
    print_table(rows, list(rows[0]))
    summary = {}
    for name, m in runs.items():
        summary[name] = {k: m[k] for k in ("monotone_matched", "spearman_matched", "output_change",
                                           "spearman_net_eye_x", "gt_spearman_net_eye_x") if k in m}
        line = (f"{name}: matched moment monotone in {m['monotone_matched']:.0%} of windows, mean Spearman(u, i*) "
                f"{m['spearman_matched']:.2f}; mean |out(u=.75) - out(u=0)| {m['output_change']:.4f}")
        if "spearman_net_eye_x" in m:
            line += (f"; Spearman(u, landmark-net eye x) {m['spearman_net_eye_x']:.2f} "
                     f"(GT frames: {m['gt_spearman_net_eye_x']:.2f})")
        print(line)
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
