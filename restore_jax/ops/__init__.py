"""Pure array primitives (NHWC, jittable, differentiable)."""

from restore_jax.ops.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from restore_jax.ops.deform_conv import deform_conv2d
from restore_jax.ops.pixel import pixel_shuffle, pixel_unshuffle
from restore_jax.ops.quantize import quantize_8bit
from restore_jax.ops.resize import imresize, imresize_np
from restore_jax.ops.sampling import bilinear_sample, warp

__all__ = [
    "bilinear_sample",
    "deform_conv2d",
    "imresize",
    "imresize_np",
    "pixel_shuffle",
    "pixel_unshuffle",
    "quantize_8bit",
    "rgb_to_y",
    "rgb_to_ycbcr",
    "warp",
    "ycbcr_to_rgb",
]
