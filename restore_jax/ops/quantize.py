"""8-bit quantisation of float images, as evaluation protocols do before computing metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def quantize_8bit(x):
    """``round(clip(x, 0, 1) * 255) / 255`` in float32: the value an 8-bit image file would hold.

    Rounding is half to even (``np.round`` / ``jnp.round``). A JAX array (or tracer, inside
    ``jit``) stays a JAX array; anything else (NumPy arrays, lists) is computed with NumPy on the
    host and returned as a float32 ``np.ndarray``. The input is cast to float32 first.
    """
    if isinstance(x, jax.Array):
        return jnp.round(jnp.clip(x.astype(jnp.float32), 0.0, 1.0) * 255.0) / 255.0
    return (np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
