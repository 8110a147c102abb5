"""Image-quality metrics, each named after the protocol it reproduces."""

from restore_jax.metrics.face import (
    identity_distance,
    landmark_nme,
    landmark_sdd,
    landmark_std,
    outer_ocular_distance,
)
from restore_jax.metrics.lpips import LPIPS, lpips_distance
from restore_jax.metrics.psnr_ssim import mean_over_clips, psnr, ssim

__all__ = [
    "LPIPS",
    "identity_distance",
    "landmark_nme",
    "landmark_sdd",
    "landmark_std",
    "lpips_distance",
    "mean_over_clips",
    "outer_ocular_distance",
    "psnr",
    "ssim",
]
