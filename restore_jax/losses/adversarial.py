"""Adversarial losses on discriminator logits (float32 reductions).

- non-saturating (NS) GAN: D minimises ``softplus(-D(real)) + softplus(D(fake))``, G minimises
  ``softplus(-D(fake))``;
- hinge: D minimises ``relu(1 - D(real)) + relu(1 + D(fake))``, G minimises ``-D(fake)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _f32(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.asarray(x).astype(jnp.float32)


def ns_d_loss(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
    """Non-saturating discriminator loss (mean over the batch)."""
    return jnp.mean(jax.nn.softplus(-_f32(real_logits))) + jnp.mean(jax.nn.softplus(_f32(fake_logits)))


def ns_g_loss(fake_logits: jnp.ndarray) -> jnp.ndarray:
    """Non-saturating generator loss."""
    return jnp.mean(jax.nn.softplus(-_f32(fake_logits)))


def hinge_d_loss(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
    """Hinge discriminator loss."""
    return jnp.mean(jax.nn.relu(1.0 - _f32(real_logits))) + jnp.mean(jax.nn.relu(1.0 + _f32(fake_logits)))


def hinge_g_loss(fake_logits: jnp.ndarray) -> jnp.ndarray:
    """Hinge generator loss."""
    return -jnp.mean(_f32(fake_logits))


GAN_LOSSES = {"ns": (ns_d_loss, ns_g_loss), "hinge": (hinge_d_loss, hinge_g_loss)}


def gan_losses(kind: str):
    """``(d_loss, g_loss)`` pair by name (``'ns' | 'hinge'``)."""
    try:
        return GAN_LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {sorted(GAN_LOSSES)}") from None
