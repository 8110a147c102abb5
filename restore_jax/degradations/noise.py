"""Additive and impulse noise: Gaussian, Poisson, salt-and-pepper, and the Gaussian + S&P mixture.

Apply functions take explicit parameters plus the generator that supplies the noise
(``add_gaussian_noise(x, sigma, rng)``); samplers draw the parameters first, then the noise, from
the same generator. All results are clipped to ``[0, 1]`` (the degraded image is what a sensor /
8-bit file would hold; pass ``clip=False`` to the apply functions to keep the raw sum).

Images and sequences are accepted. For a sequence the *parameters* are shared by all frames and
the noise realisation is independent per pixel and frame (temporally white noise).

Scales: Gaussian ``sigma`` is on the 0-255 scale (``sigma=25`` adds N(0, (25/255)^2)), as in the
papers' "sigma in {0, 5, 10, 15, 25}" (seed_000 §4.2). Poisson ``peak`` is the expected photon
count of a pixel of value 1 (``y = Poisson(x * peak) / peak``; smaller peak = stronger noise).
Salt-and-pepper ``amount`` is the fraction of pixels replaced, of which ``salt_ratio`` become 1
(salt) and the rest 0 (pepper); by default a whole pixel (all channels) is replaced, with
``per_channel=True`` each channel value is hit independently (MATLAB ``imnoise`` style).
"""

from __future__ import annotations

import numpy as np

from restore_jax.degradations._common import (
    Params,
    Range,
    check_image,
    check_prob,
    check_rng,
    draw_float,
    draw_log_float,
    f32,
)

__all__ = [
    "add_gaussian_noise",
    "add_poisson_noise",
    "add_salt_pepper_noise",
    "gaussian_noise",
    "poisson_noise",
    "salt_pepper_noise",
    "mixed_noise",
]


def _finish(y: np.ndarray, clip: bool) -> np.ndarray:
    y = y.astype(np.float32, copy=False)
    return np.clip(y, 0.0, 1.0) if clip else y


def add_gaussian_noise(x: np.ndarray, sigma: float, rng: np.random.Generator, *, clip: bool = True) -> np.ndarray:
    """``x + N(0, (sigma / 255)^2)`` per value; ``sigma`` on the 0-255 scale."""
    x = check_image(x, "add_gaussian_noise")
    check_rng(rng, "add_gaussian_noise")
    if not sigma >= 0:
        raise ValueError(f"add_gaussian_noise: sigma must be >= 0, got {sigma!r}")
    n = rng.standard_normal(x.shape, dtype=np.float32)
    return _finish(x + n * np.float32(sigma / 255.0), clip)


def add_poisson_noise(x: np.ndarray, peak: float, rng: np.random.Generator, *, clip: bool = True) -> np.ndarray:
    """Shot noise ``Poisson(x * peak) / peak`` per value (``peak`` photons at intensity 1)."""
    x = check_image(x, "add_poisson_noise")
    check_rng(rng, "add_poisson_noise")
    if not peak > 0:
        raise ValueError(f"add_poisson_noise: peak must be > 0, got {peak!r}")
    lam = np.clip(x, 0.0, None).astype(np.float64) * float(peak)
    return _finish(rng.poisson(lam) / float(peak), clip)


def add_salt_pepper_noise(
    x: np.ndarray,
    amount: float,
    rng: np.random.Generator,
    *,
    salt_ratio: float = 0.5,
    per_channel: bool = False,
) -> np.ndarray:
    """Replace a fraction ``amount`` of pixels by 1 (``salt_ratio`` of them) or 0 (the rest)."""
    x = check_image(x, "add_salt_pepper_noise")
    check_rng(rng, "add_salt_pepper_noise")
    amount = check_prob(amount, "amount", "add_salt_pepper_noise")
    salt_ratio = check_prob(salt_ratio, "salt_ratio", "add_salt_pepper_noise")
    shape = x.shape if per_channel else x.shape[:-1] + (1,)
    u = rng.random(shape)
    pepper_cut = amount * (1.0 - salt_ratio)
    pepper = u < pepper_cut
    salt = (u >= pepper_cut) & (u < amount)
    y = np.where(pepper, np.float32(0.0), x)
    return np.where(salt, np.float32(1.0), y).astype(np.float32)


def gaussian_noise(rng: np.random.Generator, x: np.ndarray, *, sigma: Range = (0.0, 25.0)) -> tuple[np.ndarray, Params]:
    """AWGN with ``sigma`` (0-255 scale) drawn from the range (default: up to 25, seed_000 §4.2).

    Params: ``sigma`` (float32, 0-255 scale).
    """
    check_rng(rng, "gaussian_noise")
    x = check_image(x, "gaussian_noise")
    s = draw_float(rng, sigma, "sigma", "gaussian_noise", low=0.0)
    return add_gaussian_noise(x, s, rng), {"sigma": f32(s)}


def poisson_noise(rng: np.random.Generator, x: np.ndarray, *, peak: Range = (10.0, 1000.0)) -> tuple[np.ndarray, Params]:
    """Poisson shot noise; a ``(low, high)`` ``peak`` range is drawn **log-uniformly**.

    Params: ``peak`` (float32).
    """
    check_rng(rng, "poisson_noise")
    x = check_image(x, "poisson_noise")
    p = draw_log_float(rng, peak, "peak", "poisson_noise", low=1e-6)
    return add_poisson_noise(x, p, rng), {"peak": f32(p)}


def salt_pepper_noise(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    amount: Range = (0.0, 0.1),
    salt_ratio: Range = 0.5,
    per_channel: bool = False,
) -> tuple[np.ndarray, Params]:
    """Salt-and-pepper impulse noise. Params: ``amount``, ``salt_ratio`` (float32)."""
    fn = "salt_pepper_noise"
    check_rng(rng, fn)
    x = check_image(x, fn)
    a = draw_float(rng, amount, "amount", fn, low=0.0, high=1.0)
    r = draw_float(rng, salt_ratio, "salt_ratio", fn, low=0.0, high=1.0)
    y = add_salt_pepper_noise(x, a, rng, salt_ratio=r, per_channel=per_channel)
    return y, {"amount": f32(a), "salt_ratio": f32(r)}


def mixed_noise(
    rng: np.random.Generator,
    x: np.ndarray,
    *,
    sigma: Range = 25.5,
    amount: Range = 0.1,
    salt_ratio: Range = 0.5,
    per_channel: bool = False,
) -> tuple[np.ndarray, Params]:
    """Gaussian noise followed by salt-and-pepper: the "noisy STVSR" input of Zooming Slow-Mo.

    seed_001 §A.2: "a mixture of Gaussian noise and 10% salt-and-pepper noise ... as in ToFlow";
    the thesis gives no sigma. Default ``sigma=25.5`` (0.1 on the [0, 1] scale) is an
    **assumption** standing in for ToFlow's mixed-noise protocol; override it when the exact value
    is known. Params: ``sigma`` (0-255 scale), ``amount``, ``salt_ratio`` (float32).
    """
    fn = "mixed_noise"
    check_rng(rng, fn)
    x = check_image(x, fn)
    s = draw_float(rng, sigma, "sigma", fn, low=0.0)
    a = draw_float(rng, amount, "amount", fn, low=0.0, high=1.0)
    r = draw_float(rng, salt_ratio, "salt_ratio", fn, low=0.0, high=1.0)
    y = add_gaussian_noise(x, s, rng)
    y = add_salt_pepper_noise(y, a, rng, salt_ratio=r, per_channel=per_channel)
    return y, {"sigma": f32(s), "amount": f32(a), "salt_ratio": f32(r)}
