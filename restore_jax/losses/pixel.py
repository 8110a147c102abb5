"""Pixel losses (L1, Charbonnier, MSE), reduced in float32 whatever the compute dtype.

Inputs may be bfloat16 (mixed-precision compute); the difference is taken after a cast to float32 so
the reduction over many pixels does not lose precision.
"""

from __future__ import annotations

import jax.numpy as jnp


def _diff(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    return pred.astype(jnp.float32) - target.astype(jnp.float32)


def l1_loss(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """Mean absolute error (float32 scalar)."""
    return jnp.mean(jnp.abs(_diff(pred, target)))


def mse_loss(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """Mean squared error (float32 scalar)."""
    return jnp.mean(jnp.square(_diff(pred, target)))


REDUCTIONS = ("sum", "mean")


def charbonnier_loss(pred: jnp.ndarray, target: jnp.ndarray, eps: float = 1e-3, *, reduction: str = "mean") -> jnp.ndarray:
    """``sqrt((pred - target)^2 + eps^2)`` (a smooth L1, the Charbonnier penalty) averaged over every
    element (``reduction='mean'``) or summed (``'sum'``); float32 scalar.

    ``eps^2`` is formed in Python (double) precision and enters the float32 sum rounded once:
    ``eps = 1e-3`` adds exactly ``float32(1e-6)``, the constant of the PyTorch references.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {REDUCTIONS}")
    d = _diff(pred, target)
    per_element = jnp.sqrt(jnp.square(d) + eps * eps)
    return jnp.sum(per_element) if reduction == "sum" else jnp.mean(per_element)


PIXEL_LOSSES = {"l1": l1_loss, "mse": mse_loss, "charbonnier": charbonnier_loss}


def pixel_loss(kind: str, pred: jnp.ndarray, target: jnp.ndarray, **kwargs) -> jnp.ndarray:
    """Pixel loss selected by name (``'l1' | 'mse' | 'charbonnier'``)."""
    try:
        fn = PIXEL_LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown pixel loss {kind!r}; choose one of {sorted(PIXEL_LOSSES)}") from None
    return fn(pred, target, **kwargs)
