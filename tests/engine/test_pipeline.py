"""Tests for the Grain pipelines: determinism (seed, workers, resume), sharding, evaluation padding.

The reference for every determinism check is the same pipeline run without interruption in one
process; equality is byte-for-byte.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from input_pipelines.config import default_data_config
from input_pipelines.pipeline import build, build_eval, restore_iterator_state, save_iterator_state

N_IMAGES = 12


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("pipeline_faces")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root


def _config(root: pathlib.Path, *, workers: int = 0, builder: str = "sr_pair"):
    cfg = default_data_config(builder)
    cfg.source.name = "image_folder"
    cfg.source.kwargs = {"root": str(root)}
    cfg.source.splits = {}
    if builder == "sr_pair":
        cfg.builder.kwargs = {"hr_size": 16, "scale": 4, "hflip_prob": 0.5,
                              "degradation": [("downsample", {"factor": 4}), ("noise", {"sigma": (0.0, 10.0)})]}
    cfg.num_workers = workers
    cfg.read_threads = 0  # build examples on demand (no background work beyond what a test reads)
    return cfg


def _take(it, k: int) -> list[dict]:
    return [next(it) for _ in range(k)]


def _same(a: list[dict], b: list[dict]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if sorted(x) != sorted(y):
            return False
        for k in x:
            if x[k].dtype != y[k].dtype or x[k].shape != y[k].shape or x[k].tobytes() != y[k].tobytes():
                return False
    return True


def _kw(**extra):
    return dict(split="train", global_batch_size=4, seed=3, process_index=0, process_count=1, **extra)


def test_batches_and_seed(folder):
    cfg = _config(folder)
    ref = _take(build(cfg, **_kw()), 4)
    b = ref[0]
    assert b["hr"].shape == (4, 16, 16, 3) and b["lr"].shape == (4, 4, 4, 3)
    assert b["deg/noise/sigma"].shape == (4,) and b["deg/order"].shape == (4, 2)
    assert _same(ref, _take(build(cfg, **_kw()), 4))  # same seed -> byte-identical
    threaded = _config(folder)
    threaded.read_threads, threaded.prefetch_buffer = 3, 2
    assert _same(ref, _take(build(threaded, **_kw()), 4))  # independent of reader threads
    other = _take(build(cfg, **{**_kw(), "seed": 4}), 4)
    assert not _same(ref, other)
    # 3 batches of 4 = one epoch of 12; the 4th batch starts the next (re-shuffled, re-degraded) epoch
    first_epoch = np.concatenate([x["meta/index"] for x in ref[:3]])
    assert sorted(first_epoch.tolist()) == list(range(N_IMAGES))
    unshuffled = _take(build(cfg, **_kw(shuffle=False)), 3)
    assert np.concatenate([x["meta/index"] for x in unshuffled]).tolist() == list(range(N_IMAGES))


def test_workers_resume_and_checkpoint(folder, tmp_path):
    ref = _take(build(_config(folder), **_kw()), 6)
    # 2 worker processes give the same batches as 0 workers.
    it = build(_config(folder, workers=2), **_kw())
    try:
        head = _take(it, 3)
        state = it.get_state()
        assert _same(head, ref[:3])
        json.dumps(state)  # small and JSON-able: it goes into the checkpoint as text
        assert _same(_take(it, 2), ref[3:5])
        it.set_state(state)  # rewind the worker pipeline to the saved position
        assert _same(_take(it, 3), ref[3:6])
    finally:
        it.close()
    # Rebuild, restore the state, continue == never stopped (the state layout depends on
    # num_workers, so a run resumes with the worker count it saved with).
    it = build(_config(folder), **_kw())
    _take(it, 3)
    resumed = build(_config(folder), **_kw())
    resumed.set_state(it.get_state())
    assert _same(_take(resumed, 3), ref[3:6])
    # Through files in Grain's Orbax layout (process_<i>-of-<n>.json) ...
    it = build(_config(folder), **_kw())
    _take(it, 2)
    save_iterator_state(it, tmp_path / "plain")
    fresh = restore_iterator_state(build(_config(folder), **_kw()), tmp_path / "plain")
    assert _same(_take(fresh, 4), ref[2:6])
    # ... and through Grain's own checkpoint handler (what Orbax Composite calls for data_iter).
    import grain
    from etils import epath

    handler = grain.checkpoint.CheckpointHandler()
    (tmp_path / "orbax").mkdir()
    handler.save(epath.Path(tmp_path / "orbax"), args=grain.checkpoint.CheckpointSave(it))
    again = handler.restore(epath.Path(tmp_path / "orbax"), args=grain.checkpoint.CheckpointRestore(build(_config(folder), **_kw())))
    assert _same(_take(again, 2), _take(it, 2))


def test_process_sharding(folder):
    cfg = _config(folder)
    seen = []
    for pi in range(2):
        it = build(cfg, split="train", global_batch_size=4, seed=1, process_index=pi, process_count=2, num_epochs=1)
        batches = list(it)
        assert len(batches) == 3 and all(b["hr"].shape[0] == 2 for b in batches)  # local batch = 4 // 2
        seen.append(np.concatenate([b["meta/index"] for b in batches]).tolist())
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(N_IMAGES))
    with pytest.raises(ValueError, match="multiple of process_count"):
        build(cfg, split="train", global_batch_size=3, seed=1, process_index=0, process_count=2)


def test_eval_padding_and_order(folder):
    cfg = _config(folder)
    batches = list(build_eval(cfg, "val", 5, process_index=0, process_count=1))
    assert len(batches) == 3
    idx = np.concatenate([b["meta/index"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    assert idx[:N_IMAGES].tolist() == list(range(N_IMAGES)) and mask.tolist() == [1.0] * 12 + [0.0] * 3
    again = list(build_eval(cfg, "val", 5, process_index=0, process_count=1))
    assert _same(batches, again)
    # Two processes: same number of batches, disjoint real examples, identical to the 1-process set.
    per = [list(build_eval(cfg, "val", 4, process_index=pi, process_count=2)) for pi in range(2)]
    assert len(per[0]) == len(per[1]) == 2
    lr_by_index = {int(i): lr for b in batches for i, lr, m in zip(b["meta/index"], b["lr"], b["mask"]) if m}
    for p in per:
        for b in p:
            for i, lr, m in zip(b["meta/index"], b["lr"], b["mask"]):
                if m:
                    assert lr.tobytes() == lr_by_index[int(i)].tobytes()
    real = [int(i) for p in per for b in p for i, m in zip(b["meta/index"], b["mask"]) if m]
    assert sorted(real) == list(range(N_IMAGES))
    cfg.eval.pad_remainder = False
    dropped = list(build_eval(cfg, "val", 5, process_index=0, process_count=1))
    assert len(dropped) == 2 and "mask" not in dropped[0]


EXPECTED_KEYS = {
    "sr_pair": {"hr": (64, 64, 3), "lr": (16, 16, 3)},
    "burst": {"hr": (64, 64, 3), "lr": (7, 16, 16, 3), "deg/shifts": (7, 2)},
    "frame_average_blur": {"blurred": (64, 64, 3), "sharp": (13, 64, 64, 3), "u": (13,), "order": (13,), "target": (64, 64, 3)},
    "septuplet": {"hr": (7, 64, 64, 3), "lr": (4, 16, 16, 3), "aug/rot90_k": ()},
    "reference_set": {"hr": (64, 64, 3), "lr": (16, 16, 3), "references": (3, 64, 64, 3)},
    "multiview_pair": {"source": (64, 64, 3), "target": (64, 64, 3), "relative_pose": (3,)},
    "contrastive_quadruple": {"lq": (2, 2, 5, 12, 12, 3), "lq_negative": (2, 5, 12, 12, 3), "hr": (2, 5, 48, 48, 3)},
}


@pytest.mark.parametrize("builder", sorted(EXPECTED_KEYS))
def test_default_config_every_builder(builder):
    """default_data_config(builder) runs as is on synthetic faces and gives the documented shapes."""
    cfg = default_data_config(builder)
    cfg.num_workers, cfg.read_threads = 0, 0
    it = build(cfg, split="train", global_batch_size=2, seed=0, process_index=0, process_count=1)
    batch = next(it)
    for key, shape in EXPECTED_KEYS[builder].items():
        assert batch[key].shape == (2,) + shape, key
    assert all(isinstance(v, np.ndarray) and v.shape[0] == 2 for v in batch.values())
    assert any(k.startswith("deg/") for k in batch) or builder == "multiview_pair"
    assert "meta/identity_id" in batch
    ev = next(build_eval(cfg, "val", 2, process_index=0, process_count=1))
    assert sorted(ev) == sorted([*batch, "mask"])
