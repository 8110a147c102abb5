"""Config files, presets, command-line overrides and validation (no compilation)."""

from __future__ import annotations

import pytest

from restore_jax import config as common
from restore_jax.api import check_config, load_config
from restore_jax.errors import ConfigError



@pytest.mark.parametrize("preset", ["paper", "small", "demo", "ci"])
def test_presets_load_and_validate(preset):
    c = load_config(f"baseline_sr:{preset}")
    assert c.method == "baseline_sr" and c.preset == preset
    check_config(c, num_devices=c.train.global_batch_size, process_count=1)


def test_preset_knob_and_default():
    assert load_config("baseline_sr:ci,steps=3").train.num_steps == 3
    assert load_config("configs/baseline_sr.py").preset == "demo"
    assert load_config("baseline_sr:ci").preset == "ci"  # bare method id


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*paper, small, demo, ci"):
        load_config("baseline_sr:huge")


def test_unknown_config_file_lists_available():
    with pytest.raises(ConfigError, match=r"not found.*shipped with restore_jax \(baseline_sr, cfmd, zsm\)"):
        load_config("configs/no_such_method.py:ci")


def test_overrides_are_typed_like_defaults():
    c = load_config(
        "baseline_sr:ci",
        [
            "--config.optim.lr=5e-4",
            "--config.train.num_steps=12",
            "--config.train.compute_dtype=bfloat16",
            "--config.checkpoint.async_save=false",
            "--config.mesh.shape=(2,4)",
            "--config.optim.lr_multipliers=(('offset', 0.1),)",
            "--config.seed",
            "7",
        ],
    )
    assert c.optim.lr == 5e-4 and isinstance(c.optim.lr, float)
    assert c.train.num_steps == 12
    assert c.train.compute_dtype == "bfloat16"
    assert c.checkpoint.async_save is False
    assert tuple(c.mesh.shape) == (2, 4)
    assert tuple(c.optim.lr_multipliers) == (("offset", 0.1),)
    assert c.seed == 7


def test_unknown_override_key_errors_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config field --config.optim.lrr.*--config.optim.lr"):
        load_config("baseline_sr:ci", ["--config.optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"unknown config field --config.nosuch.x"):
        load_config("baseline_sr:ci", ["--config.nosuch.x=1"])


def test_override_type_errors():
    with pytest.raises(ConfigError, match=r"--config.train.num_steps expects an integer, got '1.5'"):
        load_config("baseline_sr:ci", ["--config.train.num_steps=1.5"])
    with pytest.raises(ConfigError, match=r"expects a boolean"):
        load_config("baseline_sr:ci", ["--config.checkpoint.async_save=maybe"])
    with pytest.raises(ConfigError, match=r"is a section"):
        load_config("baseline_sr:ci", ["--config.optim=1"])
    with pytest.raises(ConfigError, match=r"overrides look like --config"):
        common.parse_override_args(["--lr=1"])


def _ci():
    return load_config("baseline_sr:ci")


def test_validate_batch_divisible_by_data_parallel_size():
    c = _ci()
    c.train.global_batch_size = 6
    with pytest.raises(ConfigError, match=r"not divisible by the data-parallel size 8"):
        check_config(c, num_devices=8)
    check_config(c, num_devices=2)


def test_validate_grad_accum_and_processes():
    c = _ci()
    c.train.grad_accum_steps = 3
    with pytest.raises(ConfigError, match=r"not divisible by train.grad_accum_steps=3"):
        check_config(c, num_devices=1)
    c.train.grad_accum_steps = 2  # microbatch 4 on 8 devices
    with pytest.raises(ConfigError, match=r"\(micro\)batch of 4"):
        check_config(c, num_devices=8)
    c = _ci()
    with pytest.raises(ConfigError, match=r"not divisible by the 3 processes"):
        check_config(c, num_devices=3, process_count=3)


def test_validate_mesh():
    c = _ci()
    c.mesh.shape = (3, -1)
    with pytest.raises(ConfigError, match=r"does not fit 8 devices"):
        check_config(c, num_devices=8)
    c.mesh.shape = (2, 2)
    with pytest.raises(ConfigError, match=r"uses 4 devices but 8 are available"):
        check_config(c, num_devices=8)
    c.mesh.shape, c.mesh.axes = (-1,), ("model",)
    with pytest.raises(ConfigError, match=r"mesh.axes"):
        check_config(c, num_devices=8)
    assert common.mesh_sizes(_ci(), 8) == {"data": 8, "fsdp": 1}


def test_validate_choices_and_method_checks():
    for field, value, pattern in [
        ("train.nan_policy", "ignore", r"train.nan_policy='ignore'"),
        ("train.compute_dtype", "float16", r"train.compute_dtype"),
        ("optim.schedule", "linear", r"optim.schedule"),
        ("model.scale", 5, r"model.scale must be"),
        ("loss.kind", "l3", r"loss.kind"),
    ]:
        c = _ci()
        section, key = field.split(".")
        with c[section].ignore_type():
            c[section][key] = value
        with pytest.raises(ConfigError, match=pattern):
            check_config(c, num_devices=1)


def test_validate_unknown_fields_in_a_hand_edited_config():
    c = _ci()
    c.train.unlock()
    c.train.num_step = 5  # typo of num_steps
    with pytest.raises(ConfigError, match=r"unknown config field train.num_step .*train.num_steps"):
        check_config(c, num_devices=1)
    c = _ci()
    c.unlock()
    c.trian = 1
    with pytest.raises(ConfigError, match=r"unknown config field trian.*train"):
        check_config(c, num_devices=1)


def test_unknown_method_is_a_config_error():
    c = _ci()
    c.method = "nope"
    with pytest.raises(ConfigError, match=r"unknown method 'nope'.*baseline_sr"):
        check_config(c, num_devices=1)


def test_parse_arg_rejects_unknown_knobs():
    with pytest.raises(ConfigError, match=r"unknown config argument 'foo'"):
        common.parse_arg("ci,foo=1", presets=("ci",), default="ci", steps=0)
    a = common.parse_arg("preset=ci,steps=4", presets=("ci",), default="ci", steps=0)
    assert (a.preset, a.steps) == ("ci", 4)


def test_validate_sizes_divisible_by_the_model_factor():
    c = _ci()
    c.data.builder.kwargs.hr_size = 30
    with pytest.raises(ConfigError, match=r"hr_size=30 is not divisible by model.scale=4"):
        check_config(c, num_devices=1)
    c = _ci()
    c.eval.sr_psnr_ssim.batch_size = 6
    with pytest.raises(ConfigError, match=r"eval.sr_psnr_ssim.batch_size=6 must be divisible"):
        check_config(c, num_devices=4)


def test_warmup_longer_than_the_run_is_a_config_error():
    # a raw ValueError from the schedule builder before: now a fix-it message at config time
    c = load_config("baseline_sr:ci", ["--config.train.num_steps=2"])
    with pytest.raises(ConfigError, match=r"optim.warmup_steps=2 must be in \[0, train.num_steps=2\)"):
        check_config(c, num_devices=8)
    check_config(load_config("baseline_sr:ci", ["--config.train.num_steps=2", "--config.optim.warmup_steps=1"]), num_devices=8)


def test_config_by_path_or_id_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    by_id, by_path = load_config("zsm:ci"), load_config("configs/zsm.py:ci")
    assert by_id.method == by_path.method == "zsm" and by_id.to_dict() == by_path.to_dict()
    own = tmp_path / "mine.py"  # a user's own file, relative to the working directory
    own.write_text("from restore_jax import config as rc\n\ndef get_config(arg=None):\n    return rc.load_config_file('baseline_sr:ci')\n")
    assert load_config("mine.py").method == "baseline_sr"
    with pytest.raises(ConfigError, match="not found"):
        load_config("elsewhere/zsm.py:ci")  # a path that is neither here nor a shipped config folder
