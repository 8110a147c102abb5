"""Image / frame I/O for restoration (restore_jax.inference.image_io).

Independent references: Pillow (decoding, luma conversion, bicubic resize), the training reader's
16-bit PNG decoder in ``input_pipelines.image_io``, PyAV decoding via ``input_pipelines.video_io``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from input_pipelines.image_io import decode_png16
from restore_jax.inference.image_io import (
    ImageReadError,
    encode_png16,
    read_image_for_restore,
    resize_alpha,
    restore_output,
    write_frames,
    write_image,
    write_restored,
)

RNG = np.random.default_rng(0)


def _u8(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _u16(*shape):
    return RNG.integers(0, 65536, shape, dtype=np.uint16)


def test_png16_rgb_round_trip(tmp_path):
    a = _u16(7, 9, 3)
    (tmp_path / "in.png").write_bytes(encode_png16(a))
    # The encoder, checked by two independent decoders: Pillow keeps the high byte of each sample.
    assert np.array_equal(np.asarray(Image.open(tmp_path / "in.png").convert("RGB")), (a >> 8).astype(np.uint8))
    rgb, info = read_image_for_restore(tmp_path / "in.png")
    assert info.bit_depth == 16 and not info.grayscale and info.alpha is None and info.format == "PNG"
    np.testing.assert_array_equal(rgb, (a / 65535.0).astype(np.float32))
    out = write_restored(tmp_path / "out.png", rgb, info)  # identity "model": 16 bits back
    np.testing.assert_array_equal(decode_png16(out.read_bytes()), a)


def test_png16_grey_and_rgba(tmp_path):
    g = _u16(6, 5)
    Image.fromarray(g).save(tmp_path / "g16.png")  # Pillow writes 16-bit grey ("I;16")
    rgb, info = read_image_for_restore(tmp_path / "g16.png")
    assert info.bit_depth == 16 and info.grayscale and info.channels == 1
    np.testing.assert_array_equal(rgb, np.repeat((g / 65535.0).astype(np.float32)[..., None], 3, -1))
    write_restored(tmp_path / "g16_out.png", rgb, info)
    back = Image.open(tmp_path / "g16_out.png")
    assert back.mode.startswith("I")
    np.testing.assert_array_equal(np.asarray(back).astype(np.uint16), g)

    rgba = _u16(4, 6, 4)
    (tmp_path / "rgba16.png").write_bytes(encode_png16(rgba))
    rgb, info = read_image_for_restore(tmp_path / "rgba16.png")
    assert info.bit_depth == 16 and info.channels == 4
    np.testing.assert_array_equal(info.alpha, (rgba[..., 3] / 65535.0).astype(np.float32))
    out = write_restored(tmp_path / "rgba16_out.png", rgb, info)
    np.testing.assert_array_equal(decode_png16(out.read_bytes()), rgba)


def test_grey_8bit_back_to_grey_with_luma(tmp_path):
    g = _u8(8, 10)
    Image.fromarray(g).save(tmp_path / "g.png")
    rgb, info = read_image_for_restore(tmp_path / "g.png")
    assert info.grayscale and info.bit_depth == 8 and rgb.shape == (8, 10, 3)
    assert np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])
    # A "model" that tints the image: the output goes back to one channel by BT.601 luma.
    tinted = np.clip(rgb * np.array([1.0, 0.8, 0.6], np.float32), 0, 1)
    write_restored(tmp_path / "g_out.png", tinted, info)
    out = Image.open(tmp_path / "g_out.png")
    assert out.mode == "L"
    ref = np.asarray(Image.fromarray(np.round(tinted * 255).astype(np.uint8)).convert("L"))
    assert np.abs(np.asarray(out).astype(int) - ref.astype(int)).max() <= 1


def test_rgba_alpha_carried_and_not_composited(tmp_path):
    a = _u8(6, 7, 4)
    a[0, 0, 3] = 0  # fully transparent pixel: its stored colour must reach the model unchanged
    Image.fromarray(a).save(tmp_path / "rgba.png")
    rgb, info = read_image_for_restore(tmp_path / "rgba.png")
    np.testing.assert_array_equal(rgb, (a[..., :3] / 255.0).astype(np.float32))
    np.testing.assert_array_equal(info.alpha, (a[..., 3] / 255.0).astype(np.float32))
    write_restored(tmp_path / "rgba_out.png", rgb, info)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "rgba_out.png")), a)

    la = _u8(5, 6, 2)
    Image.fromarray(la).save(tmp_path / "la.png")
    rgb, info = read_image_for_restore(tmp_path / "la.png")
    assert info.grayscale and info.channels == 2
    write_restored(tmp_path / "la_out.png", rgb, info)
    out = Image.open(tmp_path / "la_out.png")
    assert out.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out), la)


def test_alpha_resized_with_sr_output(tmp_path):
    a = _u8(10, 12, 4)
    Image.fromarray(a).save(tmp_path / "rgba.png")
    rgb, info = read_image_for_restore(tmp_path / "rgba.png")
    up = np.repeat(np.repeat(rgb, 2, 0), 2, 1)  # a x2 "model"
    near = restore_output(up, info, alpha_resize="nearest")
    assert near.shape == (20, 24, 4)
    np.testing.assert_array_equal(near[..., 3], np.repeat(np.repeat(info.alpha, 2, 0), 2, 1))
    cubic = restore_output(up, info, alpha_resize="bicubic")[..., 3]
    assert cubic.min() >= 0.0 and cubic.max() <= 1.0
    # Pillow's bicubic (Keys a = -0.5, same pixel centres for upscaling) away from the border.
    ref = np.asarray(Image.fromarray(info.alpha.astype(np.float32), mode="F").resize((24, 20), Image.BICUBIC))
    np.testing.assert_allclose(cubic[4:-4, 4:-4], np.clip(ref, 0, 1)[4:-4, 4:-4], atol=1e-4)
    with pytest.raises(ValueError, match="alpha_resize"):
        resize_alpha(info.alpha, (20, 24), "lanczos")


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(ImageReadError, match="cannot open"):
        read_image_for_restore(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"text\.png: not a readable image"):
        read_image_for_restore(tmp_path / "text.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image_for_restore(tmp_path / "empty.jpg")
    buf = io.BytesIO()
    Image.fromarray(_u8(32, 32, 3)).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:60])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image_for_restore(tmp_path / "cut.png")


def test_unsupported_outputs(tmp_path):
    img = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(ValueError, match="unsupported image format '.bmp'"):
        write_image(tmp_path / "x.bmp", img)
    with pytest.raises(ValueError, match="JPEG has no alpha"):
        write_image(tmp_path / "x.jpg", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="16-bit output needs PNG"):
        write_image(tmp_path / "x.jpg", img, bit_depth=16)
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "x.png", np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"unsupported frame-sequence output '\.avi'"):
        write_frames(tmp_path / "x.avi", np.zeros((2, 4, 4, 3), np.float32))


def test_jpeg_and_webp_8bit(tmp_path):
    img = np.linspace(0, 1, 8 * 9 * 3, dtype=np.float32).reshape(8, 9, 3)
    write_image(tmp_path / "x.jpg", img, quality=100)
    assert np.abs(np.asarray(Image.open(tmp_path / "x.jpg")) / 255.0 - img).max() < 0.1
    write_image(tmp_path / "x.webp", img, quality=100)  # lossless
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.webp")), np.round(img * 255).astype(np.uint8))
    rgb, info = read_image_for_restore(tmp_path / "x.jpg")
    assert info.format == "JPEG" and info.bit_depth == 8 and info.alpha is None


def test_write_frames_gif_mp4_and_folder(tmp_path):
    from input_pipelines.video_io import decode_all

    t, h, w = 4, 9, 13  # odd sizes: the MP4 gets one repeated row / column
    levels = np.linspace(0.2, 0.8, t, dtype=np.float32)
    frames = levels[:, None, None, None] * np.ones((t, h, w, 3), np.float32)
    write_frames(tmp_path / "v.gif", frames, fps=10)
    gif = Image.open(tmp_path / "v.gif")
    assert gif.n_frames == t and gif.size == (w, h)
    write_frames(tmp_path / "v.mp4", frames, fps=10, crf=0)
    video = decode_all(tmp_path / "v.mp4")
    assert video.shape == (t, h + 1, w + 1, 3)
    np.testing.assert_allclose(video.reshape(t, -1).mean(1) / 255.0, levels, atol=0.02)
    write_frames(tmp_path / "frames", frames[..., :1], bit_depth=16)
    files = sorted((tmp_path / "frames").iterdir())
    assert [f.name for f in files] == [f"frame_{i:06d}.png" for i in range(t)]
    np.testing.assert_array_equal(np.asarray(Image.open(files[2])), np.round(levels[2] * 65535).astype(np.uint16))


def test_frame_sequence_outputs_and_patterns(tmp_path):
    from restore_jax.inference.image_io import check_frames_output, sequence_path

    assert [check_frames_output(p) for p in ("a.mp4", "a.GIF", "frames", "out/u_%03d.png")] == ["video", "video", "folder", "pattern"]
    assert sequence_path(tmp_path / "u_%03d.png", 7) == tmp_path / "u_007.png"
    assert sequence_path(tmp_path / "seq", 7) == tmp_path / "seq" / "frame_000007.png"
    for bad, message in (("u_%03d.jpg", "must name PNG files"), ("u_%s_%d.png", "exactly one integer field"), ("x.webm", "unsupported")):
        with pytest.raises(ValueError, match=message):
            check_frames_output(tmp_path / bad)
    frames = np.linspace(0, 1, 3 * 4 * 5 * 3, dtype=np.float32).reshape(3, 4, 5, 3)
    write_frames(tmp_path / "p" / "u_%02d.png", frames)
    files = sorted((tmp_path / "p").iterdir())
    assert [f.name for f in files] == ["u_00.png", "u_01.png", "u_02.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(files[1])), np.round(frames[1] * 255).astype(np.uint8))
