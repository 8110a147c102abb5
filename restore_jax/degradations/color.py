"""Colour jitter: brightness, contrast, saturation, hue (the augmentation of seed_002_003 Part B).

Apply functions (explicit factors, RGB ``[..., 3]`` float in ``[0, 1]``; brightness and contrast also
work on 1-channel images). Each result is clipped to ``[0, 1]``:

* ``adjust_brightness(x, b)``: ``b * x``;
* ``adjust_contrast(x, c)``: ``c * x + (1 - c) * mean(luma)``, the mean taken per frame;
* ``adjust_saturation(x, s)``: ``s * x + (1 - s) * luma`` (BT.601 luma ``0.299 R + 0.587 G + 0.114 B``);
* ``adjust_hue(x, h)``: rotate the HSV hue by ``h`` turns (``h`` in ``[-0.5, 0.5]``).

The sampler :func:`color_jitter` draws the four factors once and applies them, in a random order
(recorded), identically to every frame of a sequence.
"""

from __future__ import annotations

import numpy as np

from restore_jax.degradations._common import Params, Range, check_image, check_rng, draw_float, f32, i32

__all__ = [
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "color_jitter",
    "JITTER_OPS",
]

#: Operation codes recorded (in application order) in ``params["order"]``.
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _luma(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] == 1:
        return x
    return (x @ _LUMA)[..., None]


def _clip(y: np.ndarray) -> np.ndarray:
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def adjust_brightness(x: np.ndarray, factor: float) -> np.ndarray:
    """Scale intensities by ``factor`` (>= 0)."""
    x = check_image(x, "adjust_brightness")
    return _clip(x * np.float32(factor))


def adjust_contrast(x: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the frame's mean grey level: ``factor * x + (1 - factor) * mean``."""
    x = check_image(x, "adjust_contrast")
    mean = _luma(x).mean(axis=(-3, -2, -1), keepdims=True)
    return _clip(np.float32(factor) * x + np.float32(1.0 - factor) * mean)


def adjust_saturation(x: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the per-pixel luma (``factor = 0`` gives grey, ``1`` the input)."""
    x = check_image(x, "adjust_saturation", channels=(3,))
    return _clip(np.float32(factor) * x + np.float32(1.0 - factor) * _luma(x))


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """RGB -> HSV, all channels in ``[0, 1]`` (hue in turns)."""
    x = np.asarray(x, dtype=np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    delta = v - x.min(axis=-1)
    s = np.where(v > 0, delta / np.where(v > 0, v, 1.0), 0.0)
    d = np.where(delta > 0, delta, 1.0)
    h = np.where(v == r, (g - b) / d, np.where(v == g, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """HSV -> RGB (inverse of :func:`rgb_to_hsv`)."""
    hsv = np.asarray(hsv, dtype=np.float64)
    h, s, v = hsv[..., 0] % 1.0, hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def adjust_hue(x: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by ``shift`` turns (``[-0.5, 0.5]``); saturation and value are kept."""
    x = check_image(x, "adjust_hue", channels=(3,))
    if not -0.5 <= shift <= 0.5:
        raise ValueError(f"adjust_hue: shift must lie in [-0.5, 0.5] turns, got {shift!r}")
    hsv = rgb_to_hsv(x)
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    return _clip(hsv_to_rgb(hsv))


def color_jitter(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    brightness: Range = (0.8, 1.2),
    contrast: Range = (0.8, 1.2),
    saturation: Range = (0.8, 1.2),
    hue: Range = (-0.05, 0.05),
    random_order: bool = True,
) -> tuple[np.ndarray, Params]:
    """Random brightness/contrast/saturation/hue, identical for all frames of a sequence.

    Single-channel inputs need ``saturation=1`` and ``hue=0`` (no colour to change).
    Params: ``brightness``, ``contrast``, ``saturation``, ``hue`` (float32) and ``order`` (int32
    ``[4]``: indices into :data:`JITTER_OPS` in application order).
    """
    fn = "color_jitter"
    check_rng(rng, fn)
    x = check_image(x, fn)
    b = draw_float(rng, brightness, "brightness", fn, low=0.0)
    c = draw_float(rng, contrast, "contrast", fn, low=0.0)
    s = draw_float(rng, saturation, "saturation", fn, low=0.0)
    h = draw_float(rng, hue, "hue", fn, low=-0.5, high=0.5)
    order = rng.permutation(4) if random_order else np.arange(4)
    if x.shape[-1] != 3 and (s != 1.0 or h != 0.0):
        raise ValueError(
            f"{fn}: saturation/hue jitter needs RGB input (3 channels), got shape {x.shape}; "
            "pass saturation=1.0, hue=0.0 for grayscale"
        )
    ops = {0: lambda y: adjust_brightness(y, b), 1: lambda y: adjust_contrast(y, c),
           2: lambda y: adjust_saturation(y, s) if y.shape[-1] == 3 else y,
           3: lambda y: adjust_hue(y, h) if y.shape[-1] == 3 else y}
    y = x
    for k in order:
        y = ops[int(k)](y)
    return y, {"brightness": f32(b), "contrast": f32(c), "saturation": f32(s), "hue": f32(h), "order": i32(order)}
