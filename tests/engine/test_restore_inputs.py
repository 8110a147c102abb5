"""``restore`` never destroys or skips user files (issue 14, item 3) and bad inputs are one-line
errors before the model runs (item 5): output == input, name collisions in a folder, bad files in
a folder (the others are restored, exit code 4), alpha into a JPEG. On a ``baseline_sr`` ci run."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from restore_jax import api, cli
from restore_jax.inference import FolderRestoreError, Restorer, RestorerError, plan_folder

SPEC = "baseline_sr:ci"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
    c = api.load_config(SPEC)
    c.eval.protocols = ()
    c.log.image_every_steps = 0
    wd = tmp_path_factory.mktemp("restore_inputs") / "run"
    api.train(c, wd)
    return wd


@pytest.fixture(scope="module")
def restorer(workdir) -> Restorer:
    return api.load_restorer(workdir)


@pytest.fixture
def no_model(monkeypatch):
    """Running the model or loading the checkpoint fails the test: checks must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("the model ran / the checkpoint was loaded before the check")

    monkeypatch.setattr(Restorer, "__call__", boom)
    monkeypatch.setattr(Restorer, "from_checkpoint", classmethod(boom))


def _png(path: pathlib.Path, h=10, w=12, mode="RGB", seed=0) -> pathlib.Path:
    channels = {"RGB": 3, "RGBA": 4, "LA": 2, "L": 1}[mode]
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode).save(path)
    return path


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# -- output == input ----------------------------------------------------------------------------


def test_output_that_is_the_input_is_refused(restorer, tmp_path, no_model):
    src = _png(tmp_path / "a.png")
    before = src.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(src)
    for out in (src, tmp_path / "." / "a.png", link, tmp_path / "sub" / ".." / "a.png"):
        with pytest.raises(RestorerError, match="is the input file .* would overwrite it"):
            restorer.restore_file(src, out)
    with pytest.raises(RestorerError, match="is the input file"):
        restorer.restore_faces_file(src, src, crop_size=8)
    gif = tmp_path / "clip.gif"
    gif.write_bytes(b"GIF89a not decoded: refused before reading")
    with pytest.raises(RestorerError, match="is the input file"):
        restorer.video(gif, gif)
    seq = _png(tmp_path / "u_0.png")
    with pytest.raises(RestorerError, match="is the input file"):
        restorer.sweep_file(seq, tmp_path / "u_%d.png", num=2)
    assert src.read_bytes() == before


def test_restore_cli_refuses_output_equal_to_input(workdir, tmp_path, capsys, no_model):
    src = _png(tmp_path / "a.png")
    before = src.read_bytes()
    # the file itself, and its own folder (output = folder/<stem>.png = the input)
    for out in (src, tmp_path):
        assert cli.main(["restore", "--checkpoint", str(workdir), str(src), str(out)]) == 2
        assert "restore-jax: error: output" in _err(capsys) and src.read_bytes() == before
    assert cli.main(["restore", "--checkpoint", str(workdir), str(tmp_path), str(tmp_path / ".")]) == 2
    assert "is the input folder" in _err(capsys)


def test_folder_outputs_resolving_to_inputs_are_refused(restorer, tmp_path, no_model):
    src = tmp_path / "in"
    a = _png(src / "a.png")
    before = a.read_bytes()
    linked = tmp_path / "linked"
    linked.symlink_to(src)
    with pytest.raises(RestorerError, match="is the input folder"):
        restorer.restore_folder(src, linked)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").symlink_to(a)  # out/a.png would write through the link into the input
    with pytest.raises(RestorerError, match=r"output .*a.png \(for a.png\) is the input file"):
        restorer.restore_folder(src, out)
    assert a.read_bytes() == before


# -- name collisions ------------------------------------------------------------------------------


def test_folder_name_collision_is_refused_before_anything_runs(restorer, workdir, tmp_path, capsys, no_model):
    src = tmp_path / "in"
    _png(src / "x.png")
    Image.open(_png(src / "tmp.png", seed=1)).save(src / "x.bmp")
    (src / "tmp.png").unlink()
    _png(src / "y.png")
    out = tmp_path / "out"
    with pytest.raises(RestorerError, match=r"2 images .* same output name \(x.bmp and x.png -> x.png\); nothing was restored"):
        plan_folder(src, out)
    with pytest.raises(RestorerError, match="same output name"):
        restorer.restore_folder(src, out)
    assert cli.main(["restore", "--checkpoint", str(workdir), str(src), str(out)]) == 2
    assert "x.bmp and x.png -> x.png" in _err(capsys)
    assert not out.exists()


def test_folder_plan_names_and_formats(tmp_path):
    src = tmp_path / "in"  # nothing is read: names only
    src.mkdir()
    for name in ("b.png", "a.jpg", "c.webp", "d.tif", "notes.txt"):
        (src / name).write_bytes(b"")
    (src / "sub.png").mkdir()  # not a file
    pairs = plan_folder(src, tmp_path / "out")
    assert [(f.name, t.name) for f, t in pairs] == [("a.jpg", "a.jpg"), ("b.png", "b.png"), ("c.webp", "c.webp"), ("d.tif", "d.png")]


# -- bad files in a folder ------------------------------------------------------------------------


def _folder_with_bad_files(root: pathlib.Path) -> pathlib.Path:
    src = root / "in"
    _png(src / "a.png", seed=1)
    (src / "b.png").write_bytes(_png(root / "whole.png", 16, 16).read_bytes()[:60])  # truncated
    _png(src / "c.png", seed=2)
    (src / "d.jpg").write_bytes(b"")  # empty
    _png(src / "e.png", 8, 9, seed=3)
    return src


def test_restore_folder_continues_past_bad_files_and_reports_them(restorer, tmp_path):
    src = _folder_with_bad_files(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(FolderRestoreError) as info:
        restorer.restore_folder(src, out, progress=False)
    e = info.value
    assert [p.name for p, _ in e.failed] == ["b.png", "d.jpg"] and e.total == 5
    assert sorted(p.name for p in e.written) == ["a.png", "c.png", "e.png"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "e.png"]
    with Image.open(out / "e.png") as im:  # the last file, after the bad ones, was restored
        assert im.size == (9 * 4, 8 * 4)
    assert "2 of 5 image(s)" in str(e) and "d.jpg: empty file" in str(e)
    assert isinstance(e, RestorerError)


def test_restore_cli_folder_with_bad_files_exits_4(workdir, tmp_path, capsys):
    src = _folder_with_bad_files(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["restore", "--checkpoint", str(workdir), str(src), str(out)]) == 4
    captured = capsys.readouterr()
    assert f"wrote 3 image(s) to {out}" in captured.out
    err = captured.err
    assert "Traceback" not in err
    report = err[err.index("restore-jax: error:"):]  # after the progress bar
    assert report.startswith(f"restore-jax: error: 2 of 5 image(s) in {src} could not be restored")
    assert "\n  b.png: " in report and "\n  d.jpg: empty file" in report and report.count("\n") == 3
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "e.png"]


def test_bad_controls_are_a_user_error_not_per_file_failures(restorer, tmp_path, no_model):
    src = tmp_path / "in"
    _png(src / "a.png")
    with pytest.raises(RestorerError, match="accepted controls: none") as info:
        restorer.restore_folder(src, tmp_path / "out", strength=0.5)
    assert not isinstance(info.value, FolderRestoreError)


# -- alpha into a JPEG ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_to_jpeg_is_refused_before_the_model_runs(restorer, workdir, tmp_path, capsys, no_model, mode):
    src = _png(tmp_path / f"in_{mode}.png", mode=mode)
    out = tmp_path / "out.jpg"
    with pytest.raises(RestorerError, match="has an alpha channel .* JPEG cannot store one; write a .png or .webp"):
        restorer.restore_file(src, out)
    assert cli.main(["restore", "--checkpoint", str(workdir), str(src), str(out)]) == 2
    err = _err(capsys)
    assert err.startswith("restore-jax: error:") and "JPEG cannot store one" in err and err.count("\n") == 1
    assert not out.exists()


def test_rgb_to_jpeg_and_alpha_to_png_still_work(restorer, tmp_path):
    out = restorer.restore_file(_png(tmp_path / "rgb.png"), tmp_path / "rgb.jpg")
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (48, 40)
    out = restorer.restore_file(_png(tmp_path / "rgba.png", mode="RGBA"), tmp_path / "rgba.png.out.png")
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (48, 40)


def test_unwritable_output_extension_is_refused_before_the_model_runs(restorer, tmp_path, no_model):
    with pytest.raises(RestorerError, match="unsupported image format '.bmp'"):
        restorer.restore_file(_png(tmp_path / "a.png"), tmp_path / "a.bmp")
    assert not (tmp_path / "a.bmp").exists() and os.listdir(tmp_path) == ["a.png"]
