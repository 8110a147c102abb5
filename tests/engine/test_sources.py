"""Tests for input_pipelines sources and image/video I/O.

References are independent: images are written with Pillow or a hand-written PNG encoder and the
expected floats computed directly (``v / 255``, ``v / 65535``, alpha compositing by formula);
video windows are compared with a full decode done here with PyAV; TFDS records with the
``tfds.data_source`` they come from.
"""

from __future__ import annotations

import pickle
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from input_pipelines import image_io
from input_pipelines.arrayrecord import decode_record, encode_record, write_arrayrecord
from input_pipelines.image_io import ImageReadError
from input_pipelines.sources import (
    ArrayRecordSource,
    FrameFolderSource,
    IdentityFolderSource,
    ImageFolderSource,
    TFDSSource,
    VideoSource,
    VimeoSeptupletSource,
    make_source,
    natural_key,
)

# ----------------------------------------------------------------------------- helpers


def _u8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _ref(v: np.ndarray, maxval: float) -> np.ndarray:
    return (v.astype(np.float64) / maxval).astype(np.float32)


def _write_png16(path, arr: np.ndarray, ftypes: np.ndarray) -> None:
    """Minimal 16-bit PNG encoder with explicit per-row filter types (0..4), written from the spec."""
    arr = np.asarray(arr, dtype=np.uint16)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w, ch = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    raw = np.stack([arr >> 8, arr & 255], -1).astype(np.int64).reshape(h, w * ch * 2)
    bpp = ch * 2
    rows = []
    for r in range(h):
        cur = raw[r]
        prev = raw[r - 1] if r else np.zeros_like(cur)
        out = bytearray([int(ftypes[r])])
        for i in range(cur.size):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            t = int(ftypes[r])
            if t == 0:
                pred = 0
            elif t == 1:
                pred = a
            elif t == 2:
                pred = b
            elif t == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
            out.append((int(cur[i]) - pred) % 256)
        rows.append(bytes(out))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


# ----------------------------------------------------------------------------- image conversion rules


def test_conversion_rules(tmp_path):
    rng = np.random.default_rng(0)
    rgb = _u8(rng, 6, 7, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "rgb.png"), _ref(rgb, 255))

    gray = _u8(rng, 6, 7)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = image_io.read_image(tmp_path / "gray.png")
    assert out.shape == (6, 7, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.repeat(_ref(gray, 255)[..., None], 3, -1))

    rgba = _u8(rng, 6, 7, 4)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    a = rgba[..., 3:].astype(np.float64) / 255
    c = rgba[..., :3].astype(np.float64) / 255
    for bg, bg_val in (("white", 1.0), ("black", 0.0), ((0.2, 0.4, 0.6), np.array([0.2, 0.4, 0.6]))):
        expect = (a * c + (1 - a) * bg_val).astype(np.float32)
        np.testing.assert_allclose(image_io.read_image(tmp_path / "rgba.png", background=bg), expect, atol=1e-7)
    # default background is white
    np.testing.assert_allclose(image_io.read_image(tmp_path / "rgba.png"), (a * c + (1 - a)).astype(np.float32), atol=1e-7)

    la = _u8(rng, 5, 4, 2)
    Image.fromarray(la).save(tmp_path / "la.png")
    g = la[..., :1].astype(np.float64) / 255
    al = la[..., 1:].astype(np.float64) / 255
    np.testing.assert_allclose(
        image_io.read_image(tmp_path / "la.png", background="black"), np.repeat(al * g, 3, -1).astype(np.float32), atol=1e-7
    )

    g16 = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "g16.png"), np.repeat(_ref(g16, 65535)[..., None], 3, -1))

    bits = rng.random((5, 6)) > 0.5
    Image.fromarray(bits).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "bits.png")[..., 0], bits.astype(np.float32))

    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "pal.png"), _ref(np.asarray(pal.convert("RGB")), 255))

    with pytest.raises(ValueError, match="0-255"):
        image_io.parse_background((255, 255, 255))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_exact(tmp_path, channels):
    rng = np.random.default_rng(channels)
    arr = rng.integers(0, 65536, (7, 9, channels), dtype=np.uint16)
    _write_png16(tmp_path / "x.png", arr, rng.integers(0, 5, 7))
    out = image_io.read_image(tmp_path / "x.png", background=(0.25, 0.5, 0.75))
    v = arr.astype(np.float64) / 65535
    if channels in (2, 4):
        colour = v[..., :-1] if channels == 4 else np.repeat(v[..., :1], 3, -1)
        expect = v[..., -1:] * colour + (1 - v[..., -1:]) * np.array([0.25, 0.5, 0.75])
    else:
        expect = v if channels == 3 else np.repeat(v, 3, -1)
    if channels in (1, 3):
        np.testing.assert_array_equal(out, expect.astype(np.float32))  # exact v / 65535
    else:
        np.testing.assert_allclose(out, expect.astype(np.float32), atol=1e-7)


def test_jpeg_webp_and_exif(tmp_path):
    rng = np.random.default_rng(1)
    rgb = _u8(rng, 8, 10, 3)
    Image.fromarray(rgb).save(tmp_path / "a.webp", lossless=True)
    np.testing.assert_array_equal(image_io.read_image(tmp_path / "a.webp"), _ref(rgb, 255))
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display upright
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = image_io.read_image(tmp_path / "rot.jpg")
    assert out.shape == (10, 8, 3)
    stored = np.asarray(Image.open(tmp_path / "rot.jpg").convert("RGB"))
    np.testing.assert_array_equal(out, _ref(np.rot90(stored, k=-1), 255))


# ----------------------------------------------------------------------------- image folder + on_error


@pytest.fixture()
def odd_folder(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "faces"
    (root / "sub").mkdir(parents=True)
    good = _u8(rng, 8, 8, 3)
    Image.fromarray(good).save(root / "a_good.png")
    png_bytes = (root / "a_good.png").read_bytes()
    (root / "b_truncated.png").write_bytes(png_bytes[: len(png_bytes) // 2])
    (root / "c_text.png").write_text("this is not an image")
    Image.fromarray(_u8(rng, 8, 8)).save(root / "d_gray.png")
    Image.fromarray(_u8(rng, 8, 8, 4)).save(root / "e_rgba.png")
    Image.fromarray(rng.integers(0, 65536, (8, 8), dtype=np.uint16)).save(root / "f_16bit.png")
    Image.fromarray(_u8(rng, 8, 8, 3)).save(root / "sub" / "g_nested.jpg", quality=90)
    Image.fromarray(_u8(rng, 16, 16, 3)).save(root / "h_trunc.jpg", quality=90)
    jpg = (root / "h_trunc.jpg").read_bytes()
    (root / "h_trunc.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_image_folder_skip(odd_folder):
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        src = ImageFolderSource(odd_folder, on_error="skip")
    assert src.files == ["a_good.png", "d_gray.png", "e_rgba.png", "f_16bit.png", "h_trunc.jpg", "sub/g_nested.jpg"]
    assert sorted(p for p, _ in src.skipped) == ["b_truncated.png", "c_text.png"]
    # The truncated JPEG passes the header check; reading it substitutes the next record, deterministically.
    j = src.files.index("h_trunc.jpg")
    with pytest.warns(UserWarning, match="replaced by the next record"):
        sub = src[j]
    for i in range(len(src)):
        rec = src[i]
        assert rec["image"].shape == (8, 8, 3) and rec["image"].dtype == np.float32
        assert 0.0 <= rec["image"].min() and rec["image"].max() <= 1.0
    np.testing.assert_array_equal(sub["image"], src[j + 1]["image"])
    assert int(sub["index"]) == j + 1 and j in src.read_failures
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[j]["image"], sub["image"])
    # Full validation leaves it out up front.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = ImageFolderSource(odd_folder, on_error="skip", validate="decode")
    assert "h_trunc.jpg" not in strict.files and len(strict) == 5
    # A file that vanishes after indexing is an I/O error: never silently replaced.
    (odd_folder / "d_gray.png").unlink()
    with pytest.raises(FileNotFoundError, match="d_gray.png"):
        src[src.files.index("d_gray.png")]


def test_image_folder_raise(odd_folder):
    with pytest.raises(ImageReadError, match=r"(?s)b_truncated\.png.*c_text\.png.*on_error='skip'"):
        ImageFolderSource(odd_folder, on_error="raise")
    good = odd_folder / "only_good"
    good.mkdir()
    (good / "x.png").write_bytes((odd_folder / "a_good.png").read_bytes())
    (good / "y.jpg").write_bytes((odd_folder / "h_trunc.jpg").read_bytes())
    src = ImageFolderSource(good, on_error="raise")
    with pytest.raises(ImageReadError, match="y.jpg"):
        src[1]
    with pytest.raises(FileNotFoundError):
        ImageFolderSource(odd_folder / "missing")


def test_identity_folder(tmp_path):
    rng = np.random.default_rng(3)
    for ident, n in (("alice", 3), ("bob", 2)):
        (tmp_path / ident).mkdir()
        for k in range(n):
            Image.fromarray(_u8(rng, 6, 6, 3)).save(tmp_path / ident / f"{k}.png")
    src = IdentityFolderSource(tmp_path, group_size=3)
    assert len(src) == 5
    rec = src[1]  # alice/1 -> alice/1, alice/2, alice/0
    expect = [image_io.read_image(tmp_path / "alice" / f"{k}.png") for k in (1, 2, 0)]
    np.testing.assert_array_equal(rec["images"], np.stack(expect))
    assert int(rec["identity_id"]) == 0 and int(src[3]["identity_id"]) == 1
    assert src[4]["images"].shape == (3, 6, 6, 3)  # bob has 2 images: cyclic


# ----------------------------------------------------------------------------- video


def _write_mp4(path, frames: np.ndarray, fps: int = 25) -> None:
    import av

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "6", "bf": "2", "crf": "20"}
        for f in frames:
            for p in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)


def _decode_all(path, limit: int | None = None) -> np.ndarray:
    """Decode from the start (no seeking), frames in display order; stop after ``limit``."""
    import av

    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append((f.pts, f.to_ndarray(format="rgb24")))
            if limit is not None and len(frames) >= limit + 8:  # margin for B-frame reordering
                break
    frames.sort(key=lambda t: t[0])
    return np.stack([f for _, f in frames[:limit]])


def test_video_source_windows(tmp_path):
    rng = np.random.default_rng(4)
    base = np.linspace(0, 255, 32 * 48 * 3).reshape(32, 48, 3)
    lengths = {"v1.mp4": 23, "v0.mp4": 11}
    for name, n in lengths.items():
        frames = np.stack([np.roll(base, 3 * t, axis=1) + rng.normal(0, 8, base.shape) for t in range(n)])
        _write_mp4(tmp_path / name, np.clip(frames, 0, 255).astype(np.uint8))
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.warns(UserWarning, match="broken.mp4"):
        src = VideoSource(tmp_path, window=5, stride=3)
    assert [i.num_frames for i in src.infos] == [11, 23]  # sorted by name: v0, v1
    assert len(src) == (11 - 5) // 3 + 1 + (23 - 5) // 3 + 1
    full = [_decode_all(tmp_path / "v0.mp4"), _decode_all(tmp_path / "v1.mp4")]
    order = np.random.default_rng(0).permutation(len(src))  # random access order
    for i in order:
        rec = src[int(i)]
        v, s = int(rec["video_index"]), int(rec["start"])
        assert rec["frames"].dtype == np.float32 and rec["frames"].shape == (5, 32, 48, 3)
        np.testing.assert_array_equal(rec["frames"], _ref(full[v][s : s + 5], 255))
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[len(src) - 1]["frames"], src[len(src) - 1]["frames"])
    with pytest.raises(ValueError, match="shorter window"):
        VideoSource(tmp_path / "v0.mp4", window=12)


# ----------------------------------------------------------------------------- frame folders


def _septuplet(root, rng, hw=(8, 12)):
    root.mkdir(parents=True, exist_ok=True)
    frames = [_u8(rng, *hw, 3) for _ in range(7)]
    for k, f in enumerate(frames, 1):
        Image.fromarray(f).save(root / f"im{k}.png")
    return np.stack([_ref(f, 255) for f in frames])


def test_vimeo_layout(tmp_path):
    rng = np.random.default_rng(5)
    seqs = {name: _septuplet(tmp_path / "sequences" / name, rng) for name in ("00001/0001", "00001/0002", "00002/0001")}
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n00002/0001\n")
    (tmp_path / "sep_testlist.txt").write_text("00001/0002\n\n")
    (tmp_path / "fast_testset.txt").write_text("00002/0001\n")
    train = VimeoSeptupletSource(tmp_path, split="train")
    assert len(train) == 2
    np.testing.assert_array_equal(train[1]["frames"], seqs["00002/0001"])
    test = make_source({"name": "vimeo_septuplet", "kwargs": {"root": str(tmp_path)}}, split="test")
    assert len(test) == 1
    np.testing.assert_array_equal(test[0]["frames"], seqs["00001/0002"])
    fast = VimeoSeptupletSource(tmp_path, split="test_fast")
    np.testing.assert_array_equal(fast[0]["frames"], seqs["00002/0001"])
    with pytest.raises(FileNotFoundError, match="test_slow"):
        VimeoSeptupletSource(tmp_path, split="test_slow")
    single = VimeoSeptupletSource(tmp_path / "sequences" / "00001" / "0001")
    np.testing.assert_array_equal(single[0]["frames"], seqs["00001/0001"])


def test_frame_folder_vid4_layout(tmp_path):
    rng = np.random.default_rng(6)
    clips = {}
    for clip, n in (("walk", 12), ("calendar", 4)):
        (tmp_path / clip).mkdir()
        frames = [_u8(rng, 6, 8, 3) for _ in range(n)]
        for k, f in enumerate(frames):
            Image.fromarray(f).save(tmp_path / clip / f"{k}.png")  # 0.png .. 11.png: natural order
        clips[clip] = np.stack([_ref(f, 255) for f in frames])
    src = FrameFolderSource(tmp_path, window=3, stride=2)
    assert src.clips == ["calendar", "walk"]
    assert len(src) == 1 + 5
    for i in range(len(src)):
        rec = src[i]
        c, s = src.clips[int(rec["clip_index"])], int(rec["start"])
        np.testing.assert_array_equal(rec["frames"], clips[c][s : s + 3])


# ----------------------------------------------------------------------------- TFDS, ArrayRecord


def test_tfds_source_offline():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        raw = tfds.data_source("mnist", split="train")
        src = make_source({"name": "tfds", "kwargs": {"name": "mnist", "keys": ["label"]}}, split="train")
        assert len(src) == len(raw) == 6
        for i in range(6):
            rec = src[i]
            gray = np.asarray(raw[i]["image"])  # [28, 28, 1] uint8
            np.testing.assert_array_equal(rec["image"], np.repeat(_ref(gray, 255), 3, -1))
            assert rec["label"] == raw[i]["label"]
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        TFDSSource("mnist", split="train", data_dir="/nonexistent/tfds")


def test_arrayrecord_round_trip(tmp_path, odd_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = ImageFolderSource(odd_folder, validate="decode")
    path = tmp_path / "faces.array_record"
    assert write_arrayrecord(folder, path) == len(folder)
    ar = make_source({"name": "arrayrecord", "kwargs": {"paths": str(path)}})
    assert len(ar) == len(folder)
    for i in range(len(folder)):
        a, b = folder[i], ar[i]
        assert sorted(a) == sorted(b)
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
            assert a[k].tobytes() == b[k].tobytes()
    # 16-bit images are stored as uint16, 8-bit as uint8 (compact and lossless)
    with np.load(__import__("io").BytesIO(ar._reader[folder.files.index("f_16bit.png")])) as z:
        assert z["image"].dtype == np.uint16
    rec = {"image": np.float32([[[0.1, 0.2, 0.3]]]), "deg/sigma": np.float32(1.5), "order": np.int32([2, 0, 1])}
    back = decode_record(encode_record(rec, compress=True))
    assert back["image"].dtype == np.float32 and back["image"].tobytes() == rec["image"].tobytes()
    assert back["deg/sigma"] == rec["deg/sigma"] and back["order"].tolist() == [2, 0, 1]
    clone = pickle.loads(pickle.dumps(ar))
    assert clone[0]["image"].tobytes() == ar[0]["image"].tobytes()
    assert len(ArrayRecordSource(tmp_path)) == len(folder)  # a folder of .array_record files


def test_natural_key_orders_digit_runs_as_numbers():
    names = ["frame10.png", "frame2.png", "frame1.png", "b1", "a10b2", "a10b10", "a9", "frame02.png"]
    expected = ["a9", "a10b2", "a10b10", "b1", "frame1.png", "frame2.png", "frame02.png", "frame10.png"]
    assert sorted(names, key=natural_key) == expected
    assert natural_key("x12y3") == ["x", 12, "y", 3, ""]


def test_make_source_registry(tmp_path):
    rng = np.random.default_rng(7)
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        for k in range(2 if split == "train" else 3):
            Image.fromarray(_u8(rng, 4, 4, 3)).save(tmp_path / split / f"{k}.png")
    cfg = {"name": "image_folder", "kwargs": {"root": str(tmp_path)}, "splits": {"train": {"subdir": "train"}, "val": {"subdir": "val"}}}
    assert len(make_source(cfg, split="train")) == 2 and len(make_source(cfg, split="val")) == 3
    with pytest.raises(ValueError, match="unknown source"):
        make_source({"name": "nope"})


# ----------------------------------------------------------------------------- synthetic faces


@pytest.mark.parametrize(
    "mode, key, shape",
    [("image", "image", (32, 32, 3)), ("sequence", "frames", (3, 32, 32, 3)), ("views", "views", (2, 32, 32, 3)),
     ("identity_set", "images", (3, 32, 32, 3))],
)
def test_synthetic_faces_source(mode, key, shape):
    kw = {"size": 32, "num_identities": 4, "num_examples": 70, "seed": 1, "mode": mode, "num_frames": 3, "set_size": 3}
    src = make_source({"name": "synthetic_faces", "kwargs": kw}, split="train")
    assert len(src) == 70  # more than the renderer's default 16 per identity x 4
    rec = src[69]
    assert rec[key].shape == shape and rec[key].dtype == np.float32
    assert 0.0 <= rec[key].min() and rec[key].max() <= 1.0
    assert int(rec["index"]) == 69 and all(isinstance(v, np.ndarray) for v in rec.values())
    clone = pickle.loads(pickle.dumps(src))  # what a worker process receives
    again = clone[69]
    assert sorted(again) == sorted(rec) and all(again[k].tobytes() == rec[k].tobytes() for k in rec)
    val = make_source({"name": "synthetic_faces", "kwargs": kw}, split="val")
    assert int(val[0]["identity_id"]) != int(src[0]["identity_id"])  # disjoint people per split


# ----------------------------------------------------------------------------- shared real data


def test_shared_faces128(shared_data):
    src = make_source({"name": "image_folder", "kwargs": {"root": str(shared_data / "faces128"), "subdir": "val"}})
    assert len(src) == 400  # labels.json is not an image
    rec = src[17]
    assert rec["image"].shape == (128, 128, 3) and rec["image"].dtype == np.float32
    np.testing.assert_array_equal(rec["image"], _ref(np.asarray(Image.open(src.path(17)).convert("RGB")), 255))


def test_shared_face_video_window(shared_data):
    path = shared_data / "face_video" / "d0.mp4"
    src = VideoSource(path, window=7, stride=7)
    assert src.infos[0].num_frames == 78 and len(src) == 11
    full = _decode_all(path, limit=42)
    for i in (0, 3, 5):
        rec = src[i]
        s = int(rec["start"])
        np.testing.assert_array_equal(rec["frames"], _ref(full[s : s + 7], 255))


def test_shared_vimeo_septuplet(shared_data):
    root = shared_data / "vimeo_septuplet"
    a = VimeoSeptupletSource(root)
    b = FrameFolderSource(root, window=7)
    assert len(a) == len(b) == 1
    assert a[0]["frames"].shape == (7, 64, 112, 3)
    np.testing.assert_array_equal(a[0]["frames"], b[0]["frames"])
    np.testing.assert_array_equal(a[0]["frames"][2], _ref(np.asarray(Image.open(root / "im3.png").convert("RGB")), 255))
