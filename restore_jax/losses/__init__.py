"""Losses: pixel (L1/Charbonnier/MSE), adversarial (NS, hinge), contrastive (InfoNCE + queue)."""

from restore_jax.losses.adversarial import gan_losses, hinge_d_loss, hinge_g_loss, ns_d_loss, ns_g_loss
from restore_jax.losses.contrastive import enqueue, info_nce, l2_normalize
from restore_jax.losses.pixel import charbonnier_loss, l1_loss, mse_loss, pixel_loss

__all__ = [
    "charbonnier_loss",
    "enqueue",
    "gan_losses",
    "hinge_d_loss",
    "hinge_g_loss",
    "info_nce",
    "l1_loss",
    "l2_normalize",
    "mse_loss",
    "ns_d_loss",
    "ns_g_loss",
    "pixel_loss",
]
