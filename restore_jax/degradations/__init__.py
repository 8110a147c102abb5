"""Host-side (NumPy) degradation samplers; every sampler returns ``(degraded, params)``.

Contract: ``sampler(rng: numpy.random.Generator, x, **ranges) -> (y, params)`` with ``x`` a
float32 image ``[H, W, C]`` or sequence ``[T, H, W, C]`` in ``[0, 1]`` and ``params`` a flat
``dict[str, np.ndarray]`` (0-d / 1-d float32 / int32, fixed keys and shapes for a given input
shape and configuration). Ranges: a number (fixed), a ``(low, high)`` tuple (uniform) or a list
(uniform choice). Each family also has deterministic apply functions taking explicit parameters.
See ``docs/degradations.md``.
"""

from restore_jax.degradations.blur import (
    KERNEL_KINDS,
    convolve,
    gaussian_blur,
    generalized_gaussian_blur,
    motion_blur,
    random_blur,
    sample_kernel,
)
from restore_jax.degradations.multiframe import affine_warp, burst, render_burst
from restore_jax.degradations.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
)
from restore_jax.degradations.compose import SAMPLERS, Compose, register_sampler
from restore_jax.degradations.geometry import flip_rotate, random_flip_rotate
from restore_jax.degradations.compression import SUBSAMPLING, jpeg, jpeg_compress
from restore_jax.degradations.kernels import (
    delta_kernel,
    gaussian_kernel,
    generalized_gaussian_kernel,
    motion_kernel,
    pad_kernel,
)
from restore_jax.degradations.noise import (
    add_gaussian_noise,
    add_poisson_noise,
    add_salt_pepper_noise,
    gaussian_noise,
    mixed_noise,
    poisson_noise,
    salt_pepper_noise,
)
from restore_jax.degradations.resampling import RESIZE_METHODS, downsample, resize
from restore_jax.degradations.film import (
    ScratchGeometry,
    apply_scratches,
    sample_scratch_geometry,
    scratch_mask,
    scratches,
)
from restore_jax.degradations.temporal import (
    average_frames,
    frame_average,
    subsample_frames,
    temporal_subsample,
)

__all__ = [
    "KERNEL_KINDS",
    "RESIZE_METHODS",
    "SAMPLERS",
    "SUBSAMPLING",
    "Compose",
    "ScratchGeometry",
    "add_gaussian_noise",
    "add_poisson_noise",
    "add_salt_pepper_noise",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "affine_warp",
    "apply_scratches",
    "average_frames",
    "burst",
    "color_jitter",
    "convolve",
    "delta_kernel",
    "downsample",
    "flip_rotate",
    "frame_average",
    "gaussian_blur",
    "gaussian_kernel",
    "gaussian_noise",
    "generalized_gaussian_blur",
    "generalized_gaussian_kernel",
    "jpeg",
    "jpeg_compress",
    "mixed_noise",
    "motion_blur",
    "motion_kernel",
    "pad_kernel",
    "poisson_noise",
    "random_blur",
    "random_flip_rotate",
    "register_sampler",
    "render_burst",
    "resize",
    "salt_pepper_noise",
    "sample_kernel",
    "sample_scratch_geometry",
    "scratch_mask",
    "scratches",
    "subsample_frames",
    "temporal_subsample",
]
