"""Geometric augmentation: flips, 90-degree rotations and time reversal, identical for all frames.

:func:`flip_rotate` applies, in this order: vertical flip (rows), horizontal flip (columns),
``np.rot90`` by ``k`` quarter turns counter-clockwise in the image plane (axes ``(H, W)``), and, for
sequences, reversal of the frame order. The same transform hits every frame, so a paired target
can be transformed with the recorded params (call :func:`flip_rotate` with them).

ZSM's augmentation (seed_001 §A.2 code: flips, rotation, ``random_reverse``) is
``random_flip_rotate(rng, x, hflip_prob=.5, vflip_prob=.5, rot90_prob=.5, reverse_prob=.5)``;
the defaults only flip horizontally, which is the safe choice for upright faces.
"""

from __future__ import annotations

import numpy as np

from restore_jax.degradations._common import Params, check_image, check_prob, check_rng, i32

__all__ = ["flip_rotate", "random_flip_rotate"]


def flip_rotate(x: np.ndarray, hflip: bool = False, vflip: bool = False, rot90_k: int = 0, reverse: bool = False) -> np.ndarray:
    """Deterministic flips / rotation / time reversal of an image or sequence (see module doc)."""
    x = check_image(x, "flip_rotate")
    if reverse and x.ndim != 4:
        raise ValueError("flip_rotate: time reversal needs a sequence [T, H, W, C]")
    y = x
    if vflip:
        y = y[..., ::-1, :, :]
    if hflip:
        y = y[..., :, ::-1, :]
    if int(rot90_k) % 4:
        y = np.rot90(y, k=int(rot90_k) % 4, axes=(y.ndim - 3, y.ndim - 2))
    if reverse:
        y = y[::-1]
    return y.copy() if y is x else np.ascontiguousarray(y)


def random_flip_rotate(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    hflip_prob: float = 0.5,
    vflip_prob: float = 0.0,
    rot90_prob: float = 0.0,
    reverse_prob: float = 0.0,
) -> tuple[np.ndarray, Params]:
    """Random flips, quarter turns (``k`` uniform in 1..3 when triggered) and, for sequences,
    time reversal. Params (int32): ``hflip``, ``vflip``, ``rot90_k``, ``reversed`` (always 0 for
    single images)."""
    fn = "random_flip_rotate"
    check_rng(rng, fn)
    x = check_image(x, fn)
    u = rng.random(5)
    h = bool(u[0] < check_prob(hflip_prob, "hflip_prob", fn))
    v = bool(u[1] < check_prob(vflip_prob, "vflip_prob", fn))
    k = 1 + min(int(u[3] * 3), 2) if u[2] < check_prob(rot90_prob, "rot90_prob", fn) else 0
    r = bool(u[4] < check_prob(reverse_prob, "reverse_prob", fn)) and x.ndim == 4
    y = flip_rotate(x, hflip=h, vflip=v, rot90_k=k, reverse=r)
    return y, {"hflip": i32(h), "vflip": i32(v), "rot90_k": i32(k), "reversed": i32(r)}
