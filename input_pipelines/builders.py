"""Sample builders: pure functions ``(record(s), rng, **config) -> dict[str, np.ndarray]``.

A builder turns source records into one training example: it crops, augments and degrades with
the given ``numpy.random.Generator`` only (Grain's ``random_map`` seeds it from the pipeline seed
and the element index), so an example is a pure function of ``(seed, index)``. For a given config
every builder returns the same keys with the same shapes and dtypes, so examples batch. The
degradation parameters travel with the example under ``deg/`` (``deg/<step label>/<param>`` for a
:class:`restore_jax.degradations.Compose` chain, plus ``deg/order``); augmentation choices under
``aug/``; provenance (source index, identity, video, start frame) under ``meta/``.

Degradation chains are lists of ``(sampler name, kwargs[, label])`` steps understood by
:class:`restore_jax.degradations.Compose` (e.g. ``[("blur", {...}), ("downsample", {"factor": 4})]``).
Ranges follow the degradation package: a number is fixed, a ``(low, high)`` tuple is uniform, a
list is a uniform choice.

Builders and their records (keys and shapes are listed in ``docs/data.md``):

* :func:`sr_pair` - ``image`` -> random HR crop + degraded LR (default: MATLAB bicubic x scale).
* :func:`burst` - ``image`` -> N shifted/rotated LR frames + HR (or ``frames`` -> per-frame LR + HR middle).
* :func:`frame_average_blur` - ``frames`` (+ ``landmarks``) -> blurred mean of N frames + the N sharp
  frames, optionally re-ordered by facial motion (CFMD's FMR rule).
* :func:`septuplet` - ``frames [7]`` -> LR frames 1, 3, 5, 7 + HR 1..7 (Zooming Slow-Mo).
* :func:`reference_set` - ``images [G]`` of one identity -> LR target + K HR references (HIME).
* :func:`multiview_pair` - ``views`` + ``poses`` (or a still + pose, mirrored) -> source/target + relative pose.
* :func:`contrastive_quadruple` - two records -> two contents x two degradations + a hard negative
  (the contrastive degradation encoder of seed_000 ch. 6).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np

__all__ = [
    "BUILDERS",
    "BuilderSpec",
    "sr_pair",
    "burst",
    "frame_average_blur",
    "septuplet",
    "reference_set",
    "multiview_pair",
    "contrastive_quadruple",
    "fmr_order",
    "DEFAULT_SR_CHAIN",
    "DEFAULT_CONTRASTIVE_CHAIN",
]

Record = Mapping[str, np.ndarray]
Example = dict[str, np.ndarray]
Steps = Sequence[Sequence[Any]]
Size = Union[int, Sequence[int], None]

#: Frame counts averaged by CFMD (seed_002_003 §A2, Table 1).
CFMD_FRAME_COUNTS = (5, 7, 9, 11, 13)

#: Indices of the subject's left eye in the iBUG 68-point scheme (0-based 42..47 = 1-based 43..48).
LEFT_EYE = tuple(range(42, 48))

_META_KEYS = ("index", "identity_id", "video_index", "clip_index", "start")


def _as_arrays(fn: Callable[..., Example]) -> Callable[..., Example]:
    """Builders return plain ``np.ndarray`` values (0-d for scalars), never NumPy scalars."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Example:
        return {k: np.asarray(v) for k, v in fn(*args, **kwargs).items()}

    return wrapper


def _deg():
    """The degradation package, imported lazily (it pulls in JAX through the MATLAB resize)."""
    from restore_jax import degradations

    return degradations


def DEFAULT_SR_CHAIN(scale: float) -> list[tuple[str, dict[str, Any]]]:  # noqa: N802 - constant-like
    """MATLAB bicubic downsampling by ``scale`` (the usual SR degradation)."""
    return [("downsample", {"factor": float(scale), "method": "bicubic"})]


#: Default chain for :func:`contrastive_quadruple` (seed_000 §4.2, DASR-style ranges):
#: anisotropic Gaussian 21x21, bicubic x4, AWGN up to 25, film scratches.
DEFAULT_CONTRASTIVE_CHAIN: list[tuple[str, dict[str, Any]]] = [
    ("gaussian_blur", {"sigma1": (0.2, 4.0), "sigma2": (0.2, 4.0), "theta": (0.0, math.pi), "size": 21}, "blur"),
    ("downsample", {"factor": 4.0, "method": "bicubic"}),
    ("noise", {"sigma": (0.0, 25.0)}),
    ("scratches", {}),
]


# ----------------------------------------------------------------------------------------------
# helpers


def _pair(size: Size, name: str) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    size = tuple(int(v) for v in size)
    if len(size) != 2:
        raise ValueError(f"{name} must be an int or (height, width), got {size!r}")
    return size


def _draw_int(rng: np.random.Generator, spec: Any, name: str) -> int:
    """Number -> fixed; (low, high) -> inclusive uniform int; list -> uniform choice. One draw."""
    u = rng.random()
    if isinstance(spec, (int, np.integer)):
        return int(spec)
    if isinstance(spec, tuple) and len(spec) == 2:
        lo, hi = int(spec[0]), int(spec[1])
        return lo + min(int(u * (hi - lo + 1)), hi - lo)
    if isinstance(spec, list) and spec:
        return int(spec[min(int(u * len(spec)), len(spec) - 1)])
    raise ValueError(f"{name} must be an int, an inclusive (low, high) tuple or a list of choices, got {spec!r}")


def _max_int(spec: Any) -> int:
    if isinstance(spec, (int, np.integer)):
        return int(spec)
    return int(max(spec))


def _draw_float(rng: np.random.Generator, spec: Any, name: str) -> float:
    u = rng.random()
    if isinstance(spec, (int, float, np.number)):
        return float(spec)
    if isinstance(spec, tuple) and len(spec) == 2:
        return float(spec[0] + (spec[1] - spec[0]) * u)
    if isinstance(spec, list) and spec:
        return float(spec[min(int(u * len(spec)), len(spec) - 1)])
    raise ValueError(f"{name} must be a number, a (low, high) tuple or a list, got {spec!r}")


def _crop_offset(rng: np.random.Generator, hw: tuple[int, int], size: tuple[int, int], what: str) -> tuple[int, int]:
    h, w = hw
    ch, cw = size
    if ch > h or cw > w:
        raise ValueError(
            f"{what}: crop {ch}x{cw} is larger than the input {h}x{w}; use a smaller crop size "
            "or a source with larger images"
        )
    u = rng.random(2)
    return min(int(u[0] * (h - ch + 1)), h - ch), min(int(u[1] * (w - cw + 1)), w - cw)


def _crop(x: np.ndarray, y0: int, x0: int, size: tuple[int, int]) -> np.ndarray:
    return np.ascontiguousarray(x[..., y0 : y0 + size[0], x0 : x0 + size[1], :])


def _frames_of(record: Record, what: str) -> np.ndarray:
    if "frames" in record:
        return np.asarray(record["frames"], dtype=np.float32)
    if "image" in record:
        return np.asarray(record["image"], dtype=np.float32)[None]
    raise KeyError(f"{what}: the record needs 'frames' or 'image', it has {sorted(record)}")


def _image_of(record: Record, what: str) -> np.ndarray:
    if "image" in record:
        return np.asarray(record["image"], dtype=np.float32)
    if "frames" in record:
        f = np.asarray(record["frames"], dtype=np.float32)
        return f[f.shape[0] // 2]
    raise KeyError(f"{what}: the record needs 'image' (or 'frames'), it has {sorted(record)}")


def _steps(chain: Steps | None, default: list) -> list[tuple]:
    chain = default if chain is None else chain
    out = []
    for step in chain:
        step = tuple(step)
        kwargs = step[1]
        if hasattr(kwargs, "to_dict"):
            kwargs = kwargs.to_dict()
        out.append((step[0], dict(kwargs)) + tuple(step[2:]))
    return out


def _degrade(chain: list[tuple], rng: np.random.Generator, x: np.ndarray, prefix: str = "deg") -> tuple[np.ndarray, Example]:
    if not chain:
        return x.astype(np.float32), {f"{prefix}/order": np.zeros((0,), np.int32)}
    y, params = _deg().Compose(chain)(rng, x)
    return np.asarray(y, dtype=np.float32), {f"{prefix}/{k}": np.asarray(v) for k, v in params.items()}


def _meta(record: Record) -> Example:
    return {f"meta/{k}": np.asarray(record[k]) for k in _META_KEYS if k in record}


def _expect_shape(x: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    if x.shape != shape:
        raise ValueError(
            f"{what}: the degradation chain produced shape {x.shape}, expected {shape}. A batch needs fixed "
            "shapes: use a fixed downsampling factor that divides the crop size"
        )


def _lr_hw(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    return int(math.ceil(hw[0] / scale)), int(math.ceil(hw[1] / scale))


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """MATLAB-bicubic resize of an image or sequence to ``size`` (no-op when already that size)."""
    if x.shape[-3:-1] == tuple(size):
        return x
    return np.asarray(_deg().resize(x, size=tuple(size), method="bicubic"), dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# builders


@_as_arrays
def sr_pair(
    record: Record,
    rng: np.random.Generator,
    *,
    hr_size: Size = 128,
    scale: float = 4,
    degradation: Steps | None = None,
    hflip_prob: float = 0.0,
) -> Example:
    """Random HR crop and its degraded LR (single-image SR, JPEG+SR, blind SR).

    ``hr_size``: crop size (int or (h, w); ``None`` = whole image, which then must have the same size
    for every record). ``degradation``: a Compose chain (default: MATLAB bicubic ``1 / scale``); its
    output must be ``ceil(hr / scale)``. Keys: ``hr [H, W, 3]``, ``lr [h, w, 3]``, ``deg/*``,
    ``aug/crop [2]`` (y, x), ``aug/hflip``, ``meta/*``.
    """
    img = _image_of(record, "sr_pair")
    size = _pair(hr_size, "hr_size") or img.shape[:2]
    y0, x0 = _crop_offset(rng, img.shape[:2], size, "sr_pair")
    hr = _crop(img, y0, x0, size)
    flip = bool(rng.random() < hflip_prob)
    if flip:
        hr = np.ascontiguousarray(hr[:, ::-1])
    lr, params = _degrade(_steps(degradation, DEFAULT_SR_CHAIN(scale)), rng, hr)
    _expect_shape(lr, _lr_hw(size, scale) + (3,), "sr_pair")
    return {
        "hr": hr,
        "lr": lr,
        **params,
        "aug/crop": np.asarray([y0, x0], np.int32),
        "aug/hflip": np.int32(flip),
        **_meta(record),
    }


@_as_arrays
def burst(
    record: Record,
    rng: np.random.Generator,
    *,
    hr_size: Size = 128,
    num_frames: int = 7,
    scale: float = 4,
    burst_kwargs: Mapping[str, Any] | None = None,
    degradation: Steps | None = None,
) -> Example:
    """Multi-frame SR example: ``lr [N, h, w, 3]`` and ``hr [H, W, 3]`` (aligned with frame ``N // 2``).

    From a still (``image``): :func:`restore_jax.degradations.burst` draws per-frame sub-pixel shift,
    rotation, zoom, gain and JPEG (``burst_kwargs``; params under ``deg/``). From a clip (``frames``
    with at least ``num_frames`` frames): a random window, one crop for all frames, each frame
    degraded by ``degradation`` (default bicubic ``1 / scale``; one draw for the whole window) and
    the middle frame as HR.
    """
    size = _pair(hr_size, "hr_size")
    if "frames" in record:
        frames = np.asarray(record["frames"], dtype=np.float32)
        t = frames.shape[0]
        if t < num_frames:
            raise ValueError(f"burst: the record has {t} frames, need num_frames={num_frames}")
        start = min(int(rng.random() * (t - num_frames + 1)), t - num_frames)
        clip = frames[start : start + num_frames]
        size = size or clip.shape[1:3]
        y0, x0 = _crop_offset(rng, clip.shape[1:3], size, "burst")
        clip = _crop(clip, y0, x0, size)
        lr, params = _degrade(_steps(degradation, DEFAULT_SR_CHAIN(scale)), rng, clip)
        hr = clip[num_frames // 2]
        params["deg/start"] = np.int32(start)
    else:
        img = _image_of(record, "burst")
        size = size or img.shape[:2]
        y0, x0 = _crop_offset(rng, img.shape[:2], size, "burst")
        hr = _crop(img, y0, x0, size)
        kw = dict(burst_kwargs or {})
        kw.setdefault("factor", float(scale))
        lr, p = _deg().burst(rng, hr, num_frames=int(num_frames), **kw)
        lr = np.asarray(lr, np.float32)
        params = {f"deg/{k}": np.asarray(v) for k, v in p.items()}
    _expect_shape(lr, (int(num_frames),) + _lr_hw(size, scale) + (3,), "burst")
    return {"lr": lr, "hr": hr, **params, "aug/crop": np.asarray([y0, x0], np.int32), **_meta(record)}


def fmr_order(eye_xy: np.ndarray) -> np.ndarray:
    """CFMD facial-motion re-ordering (seed_002_003 §A2): indices sorting frames by the left-eye
    position rounded to integer pixels, **x ascending, then y ascending, then time ascending**.

    ``eye_xy``: ``[N, 2]`` (x, y) eye centres in time order. Returns int ``[N]``: ``order[i]`` is the
    time index of the ``i``-th frame of the re-ordered sequence (whose control value is ``i / N``).
    """
    eye_xy = np.asarray(eye_xy, dtype=np.float64)
    xr, yr = np.round(eye_xy[:, 0]), np.round(eye_xy[:, 1])
    t = np.arange(eye_xy.shape[0])
    return np.lexsort((t, yr, xr))


def _box_to_pixels(box_y0: float, box_x0: float, bh: int, bw: int, nh: int, nw: int, xy: np.ndarray) -> np.ndarray:
    """Map (x, y) pixel coordinates through "crop box, then resize to (nh, nw)" (pixel centres)."""
    sx, sy = nw / bw, nh / bh
    out = np.empty_like(xy, dtype=np.float64)
    out[..., 0] = (xy[..., 0] - box_x0 + 0.5) * sx - 0.5
    out[..., 1] = (xy[..., 1] - box_y0 + 0.5) * sy - 0.5
    return out


@_as_arrays
def frame_average_blur(
    record: Record,
    rng: np.random.Generator,
    *,
    num_frames: Any = None,
    crop_size: Size = 256,
    scale_range: Any = (1.0, 1.5),
    gamma: float = 1.0,
    reorder: str = "fmr",
    face_crop: bool = True,
    face_margin: float = 0.3,
) -> Example:
    """Motion blur by frame averaging (CFMD, VFB, deblur-and-rotate) with the sharp frames.

    ``num_frames``: ``N`` per example - int, inclusive ``(low, high)``, or a list; ``None`` = CFMD's
    odd counts ``[5, 7, 9, 11, 13]`` (a tuple ``(5, 13)`` would include even counts).
    A random window of ``N`` consecutive frames is taken; the **same** crop box is used for all its
    frames: a square around the union of the window's landmarks (``face_margin`` on each side) when
    ``face_crop`` and landmarks are present, else the whole frame; it is resized (MATLAB bicubic) by
    a random factor so its short side is ``crop_size * s``, ``s ~ U(scale_range)`` (CFMD's 1.0-1.5
    random scaling), and a random ``crop_size`` crop is taken. The blurred frame is
    ``(mean_i sharp_i ** gamma) ** (1 / gamma)`` of the processed sharp frames (``gamma = 1``: their
    exact mean, CFMD eq. 5 with g = identity).

    ``reorder='fmr'`` sorts the sharp frames by :func:`fmr_order` of the subject's left eye (mean of
    iBUG landmarks 42-47, 0-based, in the output crop's pixel coordinates) and gives the ``i``-th
    re-ordered frame (0-based) the control value ``u = i / N``; ``'none'`` keeps time order.

    Keys (``M`` = largest possible ``N``): ``blurred [S, S, 3]``; ``sharp [M, S, S, 3]`` (re-ordered,
    zero-padded after ``N``); ``sharp_mask [M]`` (1 for real frames); ``u [M]``; ``order [M]`` (time
    index within the window of each re-ordered frame, -1 padding); ``eye [M, 2]`` (left-eye x, y in
    the crop; zeros without landmarks); ``target [S, S, 3]`` and ``u_target`` (one re-ordered frame
    drawn uniformly, CFMD's training target); ``num_frames``; ``deg/num_frames``, ``deg/start``,
    ``deg/gamma``, ``deg/scale``, ``deg/box [4]`` (y0, x0, h, w of the crop box in the source frame);
    ``aug/crop [2]``; ``meta/*``.
    """
    if reorder not in ("fmr", "none"):
        raise ValueError(f"frame_average_blur: reorder must be 'fmr' or 'none', got {reorder!r}")
    frames = _frames_of(record, "frame_average_blur")
    lms = record.get("landmarks")
    if lms is not None:
        lms = np.asarray(lms, dtype=np.float64)
        if lms.ndim != 3 or lms.shape[0] != frames.shape[0] or lms.shape[-1] != 2 or lms.shape[1] <= max(LEFT_EYE):
            raise ValueError(f"frame_average_blur: landmarks must be [T, 68, 2] (x, y) per frame, got {lms.shape}")
    if reorder == "fmr" and lms is None:
        raise ValueError(
            "frame_average_blur: reorder='fmr' needs per-frame 'landmarks' [T, 68, 2] in the record "
            "(e.g. synthetic_faces mode='sequence'); use reorder='none' for sources without landmarks"
        )
    t_total = frames.shape[0]
    if num_frames is None:
        num_frames = list(CFMD_FRAME_COUNTS)
    m = _max_int(num_frames)
    n = _draw_int(rng, num_frames, "num_frames")
    if n < 1 or m > t_total:
        raise ValueError(f"frame_average_blur: need up to {m} frames per record, the record has {t_total}")
    start = min(int(rng.random() * (t_total - n + 1)), t_total - n)
    window = frames[start : start + n]
    wlm = None if lms is None else lms[start : start + n]
    h, w = window.shape[1:3]
    if face_crop and wlm is not None:
        pts = wlm.reshape(-1, 2)
        (x_lo, y_lo), (x_hi, y_hi) = pts.min(0), pts.max(0)
        side = max(x_hi - x_lo, y_hi - y_lo) * (1.0 + 2.0 * face_margin)
        side = int(min(max(round(side), 1), h, w))
        cy, cx = (y_lo + y_hi) / 2.0, (x_lo + x_hi) / 2.0
        by0 = int(np.clip(round(cy - side / 2.0), 0, h - side))
        bx0 = int(np.clip(round(cx - side / 2.0), 0, w - side))
        bh = bw = side
    else:
        by0 = bx0 = 0
        bh, bw = h, w
    csize = _pair(crop_size, "crop_size") or (bh, bw)
    s = _draw_float(rng, scale_range, "scale_range")
    r = max(csize[0] / bh, csize[1] / bw) * s
    nh, nw = max(csize[0], int(round(bh * r))), max(csize[1], int(round(bw * r)))
    boxed = window[:, by0 : by0 + bh, bx0 : bx0 + bw]
    resized = _resize(boxed, (nh, nw))
    y0, x0 = _crop_offset(rng, (nh, nw), csize, "frame_average_blur")
    sharp = _crop(resized, y0, x0, csize)
    eye = np.zeros((n, 2), np.float64)
    if wlm is not None:
        eye = _box_to_pixels(by0, bx0, bh, bw, nh, nw, wlm[:, list(LEFT_EYE)].mean(axis=1))
        eye = eye - np.array([x0, y0], dtype=np.float64)
    order = fmr_order(eye) if reorder == "fmr" else np.arange(n)
    sharp = sharp[order]
    eye = eye[order]
    blurred = np.asarray(_deg().average_frames(sharp, gamma), np.float32)
    i_target = min(int(rng.random() * n), n - 1)
    pad = m - n
    out = {
        "blurred": blurred,
        "sharp": np.concatenate([sharp, np.zeros((pad,) + sharp.shape[1:], np.float32)]),
        "sharp_mask": np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]),
        "u": np.concatenate([np.arange(n) / n, np.zeros(pad)]).astype(np.float32),
        "order": np.concatenate([order, -np.ones(pad, np.int64)]).astype(np.int32),
        "eye": np.concatenate([eye, np.zeros((pad, 2))]).astype(np.float32),
        "target": np.ascontiguousarray(sharp[i_target]),
        "u_target": np.float32(i_target / n),
        "num_frames": np.int32(n),
        "deg/num_frames": np.int32(n),
        "deg/start": np.int32(start),
        "deg/gamma": np.float32(gamma),
        "deg/scale": np.float32(s),
        "deg/box": np.asarray([by0, bx0, bh, bw], np.int32),
        "aug/crop": np.asarray([y0, x0], np.int32),
        **_meta(record),
    }
    return out


@_as_arrays
def septuplet(
    record: Record,
    rng: np.random.Generator,
    *,
    hr_size: Size = None,
    scale: float = 4,
    lr_indices: Sequence[int] = (0, 2, 4, 6),
    hflip_prob: float = 0.5,
    vflip_prob: float = 0.5,
    rot90_prob: float = 0.5,
    reverse_prob: float = 0.5,
    degradation: Steps | None = None,
) -> Example:
    """Space-time SR example (Zooming Slow-Mo): LR frames 1, 3, 5, 7 and HR frames 1..7.

    One random crop (``hr_size``; ``None`` = full frames, e.g. Vimeo 256x448 -> LR 64x112) and one
    random flip / quarter turn / time reversal for all frames, then ``degradation`` (default MATLAB
    bicubic ``1 / scale``; one draw for all frames) on the frames ``lr_indices`` (0-based).
    Quarter turns change the frame shape unless the crop is square, so ``rot90_prob`` must be 0
    for non-square crops. Keys: ``lr [4, h, w, 3]``, ``hr [7, H, W, 3]``, ``aug/hflip|vflip|rot90_k|
    reversed``, ``aug/crop``, ``deg/*``, ``meta/*``.
    """
    frames = _frames_of(record, "septuplet")
    size = _pair(hr_size, "hr_size") or frames.shape[1:3]
    if rot90_prob > 0 and size[0] != size[1]:
        raise ValueError(
            f"septuplet: rot90_prob={rot90_prob} needs a square crop (got {size[0]}x{size[1]}); "
            "set hr_size to a square size or rot90_prob=0"
        )
    y0, x0 = _crop_offset(rng, frames.shape[1:3], size, "septuplet")
    hr = _crop(frames, y0, x0, size)
    hr, aug = _deg().random_flip_rotate(
        rng, hr, hflip_prob=hflip_prob, vflip_prob=vflip_prob, rot90_prob=rot90_prob, reverse_prob=reverse_prob
    )
    hr = np.asarray(hr, np.float32)
    idx = [int(i) for i in lr_indices]
    lr, params = _degrade(_steps(degradation, DEFAULT_SR_CHAIN(scale)), rng, np.ascontiguousarray(hr[idx]))
    _expect_shape(lr, (len(idx),) + _lr_hw(size, scale) + (3,), "septuplet")
    return {
        "lr": lr,
        "hr": hr,
        **{f"aug/{k}": np.asarray(v) for k, v in aug.items()},
        "aug/crop": np.asarray([y0, x0], np.int32),
        **params,
        **_meta(record),
    }


@_as_arrays
def reference_set(
    record: Record,
    rng: np.random.Generator,
    *,
    num_references: int = 3,
    hr_size: Size = 128,
    scale: float = 4,
    degradation: Steps | None = None,
    hflip_prob: float = 0.5,
) -> Example:
    """Reference-based face SR example (HIME): LR target + ``num_references`` HR images of the same identity.

    Record: ``images [G, H, W, 3]`` (target first; from ``identity_folder`` or synthetic faces
    ``mode='identity_set'``). References are drawn without replacement from the others. All
    images are resized (MATLAB bicubic) to ``hr_size`` when needed (aligned faces: no crop), then
    flipped **together** with probability ``hflip_prob`` (HIME Table 5.6), then the target is
    degraded (default bicubic ``1 / scale``). Keys: ``lr``, ``hr``, ``references [K, H, W, 3]``,
    ``aug/hflip``, ``deg/*``, ``meta/*``.
    """
    if "images" not in record:
        raise KeyError(f"reference_set: the record needs 'images' [G, H, W, 3], it has {sorted(record)}")
    images = np.asarray(record["images"], np.float32)
    g = images.shape[0]
    k = int(num_references)
    if g - 1 < k:
        raise ValueError(f"reference_set: the record has {g - 1} other images, need num_references={k}")
    pick = rng.permutation(g - 1)[:k] + 1
    size = _pair(hr_size, "hr_size") or images.shape[1:3]
    chosen = _resize(np.concatenate([images[:1], images[pick]]), size)
    flip = bool(rng.random() < hflip_prob)
    if flip:
        chosen = np.ascontiguousarray(chosen[:, :, ::-1])
    hr = chosen[0]
    lr, params = _degrade(_steps(degradation, DEFAULT_SR_CHAIN(scale)), rng, hr)
    _expect_shape(lr, _lr_hw(size, scale) + (3,), "reference_set")
    return {
        "lr": lr,
        "hr": hr,
        "references": np.ascontiguousarray(chosen[1:]),
        "aug/hflip": np.int32(flip),
        "aug/reference_slots": pick.astype(np.int32),
        **params,
        **_meta(record),
    }


def _mirror_pose(pose: np.ndarray) -> np.ndarray:
    """Pose (yaw, pitch, roll) of the horizontally mirrored face: yaw and roll negated."""
    pose = np.asarray(pose, np.float64)
    return np.array([-pose[0], pose[1], -pose[2]])


@_as_arrays
def multiview_pair(
    record: Record,
    rng: np.random.Generator,
    *,
    size: Size = None,
    source_view: int | None = None,
    target_view: int | None = None,
    degradation: Steps | None = (),
) -> Example:
    """Two views of one face and their relative pose (deblur-and-rotate, view synthesis).

    Record: ``views [V, H, W, 3]`` + ``poses [V, 3]`` (yaw, pitch, roll; degrees for synthetic faces
    ``mode='views'``), or a still ``image`` + ``pose [3]``, for which the second view is the mirrored
    image with yaw and roll negated (the pseudo multi-view of seed_002_003 §B2). Views are drawn at
    random unless fixed; ``degradation`` (default none) is applied to the source only. Keys:
    ``source`` (degraded), ``source_clean``, ``target``, ``source_pose``, ``target_pose``,
    ``relative_pose`` (target - source), ``view_ids [2]``, ``deg/*``, ``meta/*``.
    """
    if "views" in record:
        views = np.asarray(record["views"], np.float32)
        poses = np.asarray(record["poses"], np.float64)
        v = views.shape[0]
        if v < 2:
            raise ValueError("multiview_pair: need at least 2 views")
        u = rng.random(2)
        s_id = int(source_view) if source_view is not None else min(int(u[0] * v), v - 1)
        if target_view is not None:
            t_id = int(target_view)
        else:
            t_id = (s_id + 1 + min(int(u[1] * (v - 1)), v - 2)) % v
        src, tgt = views[s_id], views[t_id]
        p_src, p_tgt = poses[s_id], poses[t_id]
    elif "image" in record and "pose" in record:
        rng.random(2)  # keep the stream aligned with the multi-view branch
        src = np.asarray(record["image"], np.float32)
        tgt = np.ascontiguousarray(src[:, ::-1])
        p_src = np.asarray(record["pose"], np.float64)
        p_tgt = _mirror_pose(p_src)
        s_id, t_id = 0, 1
    else:
        raise KeyError(f"multiview_pair: the record needs 'views' + 'poses' or 'image' + 'pose', it has {sorted(record)}")
    sz = _pair(size, "size")
    if sz is not None:
        src, tgt = _resize(src, sz), _resize(tgt, sz)
    degraded, params = _degrade(_steps(degradation, []), rng, src)
    _expect_shape(degraded, src.shape, "multiview_pair")
    return {
        "source": degraded,
        "source_clean": np.ascontiguousarray(src),
        "target": np.ascontiguousarray(tgt),
        "source_pose": p_src.astype(np.float32),
        "target_pose": p_tgt.astype(np.float32),
        "relative_pose": (p_tgt - p_src).astype(np.float32),
        "view_ids": np.asarray([s_id, t_id], np.int32),
        **params,
        **_meta(record),
    }


@_as_arrays
def contrastive_quadruple(
    records: Sequence[Record],
    rng: np.random.Generator,
    *,
    num_frames: int = 5,
    hr_size: Size = 64,
    degradation: Steps | None = None,
    clean_steps: int = 2,
    scale: float = 4,
) -> Example:
    """Two contents x two degradations, plus a hard negative (seed_000 §4.4).

    ``records``: two records ``(p, q)`` (the pipeline pairs each element with a partner drawn from
    the dataset). From each a random window of ``num_frames`` frames (a still is repeated) and a
    random ``hr_size`` crop are taken. Four degradations ``d_i, d_j, d_k, d_l`` are drawn from the
    chain (default :data:`DEFAULT_CONTRASTIVE_CHAIN`): ``d_i`` and ``d_j`` are applied to **both**
    contents with identical draws (the positive pair: same relative degradation, different
    content); ``d_k`` and ``d_l`` to ``p`` only (the hard negative: same content, other
    degradations). ``lr_clean`` is the first ``clean_steps`` steps of the chain (blur + downsample)
    of the middle frame under ``d_i`` / ``d_j``: the denoising branch's target.

    Keys: ``hr [2, T, H, W, 3]`` (p, q); ``lq [2, 2, T, h, w, 3]`` (content p/q x degradation i/j);
    ``lq_negative [2, T, h, w, 3]`` (p under k, l); ``lr_clean [2, 2, h, w, 3]``; ``hr_center
    [2, H, W, 3]``; ``deg/* [2, ...]`` (params of d_i, d_j); ``deg_negative/* [2, ...]`` (d_k, d_l);
    ``meta/* [2]``.
    """
    if len(records) != 2:
        raise ValueError(f"contrastive_quadruple: needs 2 records (p, q), got {len(records)}")
    size = _pair(hr_size, "hr_size")
    chain = _steps(degradation, DEFAULT_CONTRASTIVE_CHAIN)
    clips = []
    for rec in records:
        frames = _frames_of(rec, "contrastive_quadruple")
        t = frames.shape[0]
        if t == 1:
            frames = np.repeat(frames, num_frames, axis=0)
            t = num_frames
        if t < num_frames:
            raise ValueError(f"contrastive_quadruple: the record has {t} frames, need num_frames={num_frames}")
        start = min(int(rng.random() * (t - num_frames + 1)), t - num_frames)
        clip = frames[start : start + num_frames]
        sz = size or clip.shape[1:3]
        y0, x0 = _crop_offset(rng, clip.shape[1:3], sz, "contrastive_quadruple")
        clips.append(_crop(clip, y0, x0, sz))
    if clips[0].shape != clips[1].shape:
        raise ValueError(f"contrastive_quadruple: clip shapes differ {clips[0].shape} vs {clips[1].shape}; set hr_size")
    seeds = rng.integers(0, 2**63 - 1, size=4, dtype=np.int64)
    mid = num_frames // 2

    def run(clip: np.ndarray, seed: np.int64, steps: list) -> tuple[np.ndarray, Example]:
        return _degrade(steps, np.random.default_rng(int(seed)), clip)

    lq, lr_clean, params = [], [], []
    for c in range(2):
        row, clean_row = [], []
        for d in range(2):
            y, p = run(clips[c], seeds[d], chain)
            row.append(y)
            clean_row.append(run(clips[c][mid : mid + 1], seeds[d], chain[:clean_steps])[0][0])
            if c == 0:
                params.append(p)
        lq.append(np.stack(row))
        lr_clean.append(np.stack(clean_row))
    neg, neg_params = [], []
    for d in (2, 3):
        y, p = run(clips[0], seeds[d], chain)
        neg.append(y)
        neg_params.append(p)
    lq_arr = np.stack(lq)
    lr_hw = lq_arr.shape[-3:-1]
    out = {
        "hr": np.stack(clips),
        "hr_center": np.stack([c[mid] for c in clips]),
        "lq": lq_arr,
        "lq_negative": np.stack(neg),
        "lr_clean": np.stack(lr_clean),
    }
    if np.stack(lr_clean).shape[-3:-1] != lr_hw:
        raise ValueError("contrastive_quadruple: clean_steps must cover the resize steps of the chain")
    for key in params[0]:
        out[key] = np.stack([p[key] for p in params])
    for key in neg_params[0]:
        out["deg_negative/" + key.split("/", 1)[1]] = np.stack([p[key] for p in neg_params])
    for k in _META_KEYS:
        if all(k in r for r in records):
            out[f"meta/{k}"] = np.stack([np.asarray(r[k]) for r in records])
    return out


# ----------------------------------------------------------------------------------------------
# registry


@dataclasses.dataclass(frozen=True)
class BuilderSpec:
    """A registered builder: the function and how many source records it takes per example."""

    fn: Callable[..., Example]
    num_records: int = 1
    #: The synthetic-faces ``mode`` that provides the records this builder expects.
    synthetic_mode: str = "image"


BUILDERS: dict[str, BuilderSpec] = {
    "sr_pair": BuilderSpec(sr_pair, 1, "image"),
    "burst": BuilderSpec(burst, 1, "image"),
    "frame_average_blur": BuilderSpec(frame_average_blur, 1, "sequence"),
    "septuplet": BuilderSpec(septuplet, 1, "sequence"),
    "reference_set": BuilderSpec(reference_set, 1, "identity_set"),
    "multiview_pair": BuilderSpec(multiview_pair, 1, "views"),
    "contrastive_quadruple": BuilderSpec(contrastive_quadruple, 2, "sequence"),
}


def get_builder(name: str, builders: Mapping[str, BuilderSpec] | None = None) -> BuilderSpec:
    """``name`` from ``builders`` (a method's own, ``Method.builders``), else the generic :data:`BUILDERS`.

    A builder is a module-level function, so pipelines stay picklable for worker processes."""
    table = {**BUILDERS, **(builders or {})}
    if name not in table:
        raise ValueError(
            f"unknown builder {name!r}; known builders: {sorted(table)} (a method adds its own through Method.builders)"
        )
    return table[name]
