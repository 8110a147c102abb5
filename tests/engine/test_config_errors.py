"""Ordinary config mistakes are one-line errors before training starts (issue 14, item 5).

``kwargs`` / ``splits`` sections take new keys from the command line (a source's or builder's
arguments), ``data`` is checked by the engine's validation (numbers, source / builder names and
arguments) and, for files, when the source is built before the first step.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from input_pipelines.pipeline import build
from restore_jax import api, cli
from restore_jax.config import apply_overrides
from restore_jax.errors import ConfigError

SPEC = "baseline_sr:ci"


def test_overrides_add_keys_inside_kwargs_and_splits():
    c = api.load_config(SPEC)
    out = apply_overrides(c, [
        "--config.data.source.kwargs.root=/x",
        "--config.data.builder.kwargs.foo=1",
        "--config.data.builder.kwargs.bar=(3, 4)",
        "--config.data.builder.kwargs.flag=True",
        "--config.data.source.splits.val.subdir=val",
        "--config.data.builder.kwargs.hr_size=16",  # an existing key keeps its type
    ])
    assert out.data.source.kwargs.root == "/x"
    assert out.data.builder.kwargs.foo == 1 and isinstance(out.data.builder.kwargs.foo, int)
    assert tuple(out.data.builder.kwargs.bar) == (3, 4) and out.data.builder.kwargs.flag is True
    assert out.data.source.splits.val.subdir == "val" and out.data.source.splits.val.num_examples == 16
    assert out.data.builder.kwargs.hr_size == 16
    assert "root" not in c.data.source.kwargs  # the input config is not modified
    with pytest.raises(ConfigError, match="expects an integer"):
        apply_overrides(c, ["--config.data.builder.kwargs.hr_size=big"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.data.num_worker=1", "did you mean --config.data.num_workers"),
        ("--config.data.source.kwarg.root=/x", "unknown config field --config.data.source.kwarg.root; did you mean"),
        ("--config.model.chanels=8", "did you mean --config.model.channels"),
        ("--config.optim.lrr=1", "did you mean --config.optim.lr"),
    ],
)
def test_unknown_fields_outside_kwargs_stay_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        apply_overrides(api.load_config(SPEC), [override])


@pytest.mark.parametrize("order", ["name_first", "name_last"])
def test_changing_the_source_name_starts_its_kwargs_empty(order):
    overrides = ["--config.data.source.name=image_folder", "--config.data.source.kwargs.root=/data/faces"]
    if order == "name_last":
        overrides.reverse()
    c = apply_overrides(api.load_config(SPEC), overrides)
    assert c.data.source.name == "image_folder"
    assert c.data.source.kwargs.to_dict() == {"root": "/data/faces"} and c.data.source.splits.to_dict() == {}
    # the same name is no change: the preset's arguments stay
    same = apply_overrides(api.load_config(SPEC), ["--config.data.source.name=synthetic_faces"])
    assert same.data.source.kwargs.size == 32 and same.data.source.splits.val.num_examples == 16


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--config.data.num_workers=-1"], "data.num_workers must be an integer >= 0, got -1"),
        (["--config.data.worker_buffer=0"], "data.worker_buffer must be an integer >= 1"),
        (["--config.data.on_error=ignore"], "data.on_error='ignore' is not one of"),
        (["--config.data.source.name=image_folder"], "data.source.kwargs.root is required by source 'image_folder'"),
        (["--config.data.source.name=images"], "data.source.name='images' is not a source; known sources:"),
        (["--config.data.builder.name=sr"], "data.builder.name='sr' is not a builder"),
        (["--config.data.source.kwargs.roott=/x"], "data.source.kwargs.roott: source 'synthetic_faces' takes no argument 'roott'"),
        (["--config.data.builder.kwargs.hr_sise=8"], "did you mean data.builder.kwargs.hr_size"),
        (["--config.data.source.splits.val.sizes=8"], "data.source.splits.val.sizes: source 'synthetic_faces' takes no argument"),
        (["--config.model.channels=0"], "model.channels must be an integer >= 1, got 0"),
        (["--config.model.num_blocks=-1"], "model.num_blocks must be an integer >= 0"),
    ],
)
def test_check_config_names_the_field(overrides, message):
    config = api.load_config(SPEC, overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        api.check_config(config)


def _images(folder, n=3, size=40):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_image_folder_from_the_command_line_builds_and_a_missing_one_names_the_field(tmp_path):
    root = _images(tmp_path / "faces")
    overrides = [
        "--config.data.source.name=image_folder",
        f"--config.data.source.kwargs.root={root}",
        "--config.data.builder.kwargs.hr_size=16",
    ]
    config = api.check_config(api.load_config(SPEC, overrides))
    batch = next(iter(build(config.data, split="train", global_batch_size=2, seed=0, num_epochs=1)))
    assert batch["hr"].shape == (2, 16, 16, 3) and batch["lr"].shape == (2, 4, 4, 3)

    missing = api.check_config(api.load_config(SPEC, overrides[:1] + [f"--config.data.source.kwargs.root={tmp_path}/nope"]))
    with pytest.raises(ConfigError, match=f"data.source.kwargs.root={tmp_path}/nope does not exist"):
        build(missing.data, split="train", global_batch_size=2, seed=0)
    (tmp_path / "empty").mkdir()
    empty = api.load_config(SPEC, overrides[:1] + [f"--config.data.source.kwargs.root={tmp_path}/empty"])
    with pytest.raises(ConfigError, match=r"data.source 'image_folder' \(split 'val'\) cannot be built: no images"):
        build(empty.data, split="val", global_batch_size=2, seed=0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--config.data.source.name=image_folder", "--config.data.source.kwargs.root={tmp}/nope"],
         "data.source.kwargs.root={tmp}/nope does not exist"),
        (["--config.data.source.name=image_folder"], "data.source.kwargs.root is required by source 'image_folder'"),
        (["--config.model.channels=0"], "model.channels must be an integer >= 1"),
        (["--config.data.num_workers=-1"], "data.num_workers must be an integer >= 0"),
        (["--workdir-is-a-file"], "is a file; give a folder"),
        (["--workdir-below-a-file"], "cannot be created: {tmp}/file is a file"),
    ],
)
def test_train_cli_reports_one_line_errors(overrides, message, tmp_path, capsys):
    workdir = tmp_path / "run"
    (tmp_path / "file").write_text("not a folder")
    if overrides == ["--workdir-is-a-file"]:
        workdir, overrides = tmp_path / "file", []
    elif overrides == ["--workdir-below-a-file"]:
        workdir, overrides = tmp_path / "file" / "run", []
    argv = ["train", "--config", SPEC, "--workdir", str(workdir)] + [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("restore-jax: error:") and message.replace("{tmp}", str(tmp_path)) in last, err
    assert not list(workdir.glob("checkpoints/[0-9]*"))  # stopped before the first step
