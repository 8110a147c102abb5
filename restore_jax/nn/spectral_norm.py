"""Spectral normalisation (Miyato et al. 2018) for NNX layers that hold a ``kernel`` parameter.

``SpectralNorm(layer)`` wraps an ``nnx.Conv``, ``nnx.ConvTranspose`` or ``nnx.Linear`` (any module
whose ``__call__`` reads ``self.kernel``) and runs it with ``kernel / sigma``, where ``sigma`` estimates
the largest singular value of the kernel viewed as a matrix ``W [out, everything else]`` (an HWIO
kernel ``[kh, kw, in, out]`` is reshaped to ``[kh*kw*in, out]`` and transposed; singular values do
not depend on the order of the flattened axes, so this is the same ``sigma`` as PyTorch's
``weight.reshape(out, -1)``).

Power iteration
    ``u`` (length ``out``, unit norm) is stored in a :class:`SpectralState` variable -- an
    ``nnx.Variable`` subclass, so it is *not* an ``nnx.Param``: optimisers built on
    ``nnx.state(model, nnx.Param)`` never see it. Each call does ``n_power_iterations`` steps of
    ``v = normalize(W^T u); u = normalize(W v)`` and then ``sigma = u^T W v`` with ``u`` and ``v``
    held constant (``stop_gradient``): gradients flow through ``W`` only. This is the computation of
    PyTorch's ``torch.nn.utils.spectral_norm`` in training mode (verified in the tests).

Training vs evaluation
    In training mode the new ``u`` is written back to the ``SpectralState`` (so the estimate
    sharpens over steps; one iteration per step is the usual choice). In evaluation mode no
    iteration is run and nothing is written: ``v = normalize(W^T u)``, ``sigma = ||W^T u||`` from the
    stored ``u``, so inference is deterministic. (PyTorch also stores ``v`` and uses
    ``u^T W v_stored`` in eval mode; after training both estimates agree to the power iteration's
    error.) The mode follows NNX's convention for running
    statistics: ``module.train()`` / ``module.eval()`` set the ``use_running_average`` attribute
    (False = update, like BatchNorm's batch statistics); a call can override it with
    ``update_stats=``. A freshly built wrapper is in training mode (as ``torch.nn.Module``).

    The write-back is a mutation of NNX state: under ``nnx.jit`` it propagates automatically; in a
    functional ``nnx.split`` / ``nnx.merge`` step, the ``SpectralState`` leaves must be split out
    (``nnx.split(model, nnx.Param, SpectralState, ...)``) and carried from step to step by the caller.

The iteration and ``sigma`` are computed in float32 (``u`` is stored in float32); the normalised
kernel is cast back to the kernel's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class SpectralState(nnx.Variable):
    """Non-trainable power-iteration state of :class:`SpectralNorm` (the left singular vector ``u``)."""


def _normalize(x: jax.Array, eps: float) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


def kernel_matrix(kernel: jax.Array) -> jax.Array:
    """``W [out, fan_in]``: the kernel with its last (output) axis first and the rest flattened."""
    return jnp.reshape(kernel, (-1, kernel.shape[-1])).T


def spectral_normalize(
    kernel: jax.Array, u: jax.Array, *, n_power_iterations: int = 1, eps: float = 1e-12
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(kernel / sigma, new_u, sigma)`` after ``n_power_iterations`` steps from ``u``.

    Pure function. Each step is ``v = normalize(W^T u); u = normalize(W v)``, and
    ``sigma = u^T W v`` with the last step's ``u`` and ``v`` (the order of PyTorch's
    ``torch.nn.utils.spectral_norm``, so a training-mode call matches it given the same ``u``). With
    ``n_power_iterations == 0`` ``u`` is returned unchanged, ``v = normalize(W^T u)`` and so
    ``sigma = ||W^T u||`` (the evaluation-mode estimate). Gradients flow through ``kernel`` only.
    """
    if n_power_iterations < 0:
        raise ValueError(f"n_power_iterations must be >= 0, got {n_power_iterations}")
    w = kernel_matrix(kernel.astype(jnp.float32))
    u = jax.lax.stop_gradient(u.astype(jnp.float32))
    w_const = jax.lax.stop_gradient(w)
    v = None
    for _ in range(n_power_iterations):
        v = _normalize(w_const.T @ u, eps)
        u = _normalize(w_const @ v, eps)
    if v is None:  # evaluation: v from the stored u
        v = _normalize(w_const.T @ u, eps)
    sigma = u @ (w @ jax.lax.stop_gradient(v))
    normalized = (kernel.astype(jnp.float32) / jnp.maximum(sigma, eps)).astype(kernel.dtype)
    return normalized, u, sigma


class SpectralNorm(nnx.Module):
    """Run ``layer`` with its ``kernel`` divided by a power-iteration estimate of its spectral norm.

    Args:
      layer: module with an ``nnx.Param`` attribute ``kernel`` whose last axis is the output axis
        (``nnx.Conv``, ``nnx.ConvTranspose``, ``nnx.Linear``). Its bias is not normalised.
      n_power_iterations: iterations per training-mode call (>= 1).
      eps: floor of the norms in the iteration and of ``sigma``.
      rngs: draws the initial random unit vector ``u``.
    """

    def __init__(self, layer: nnx.Module, *, n_power_iterations: int = 1, eps: float = 1e-12, rngs: nnx.Rngs):
        kernel = getattr(layer, "kernel", None)
        if not isinstance(kernel, nnx.Param) or kernel[...].ndim < 2:
            raise ValueError(
                f"SpectralNorm wraps a layer with a >=2-D nnx.Param 'kernel' (Conv, ConvTranspose, Linear); "
                f"{type(layer).__name__} has {type(kernel).__name__}"
            )
        if n_power_iterations < 1:
            raise ValueError(f"SpectralNorm needs n_power_iterations >= 1, got {n_power_iterations}")
        self.layer = layer
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.use_running_average = False  # training mode; .eval() sets True (no update of u)
        out = kernel[...].shape[-1]
        self.u = SpectralState(_normalize(jax.random.normal(rngs.params(), (out,), jnp.float32), eps))

    def normalized_kernel(self, update_stats: bool | None = None) -> jax.Array:
        """The normalised kernel; in training mode (or ``update_stats=True``) also updates ``u``."""
        update = (not self.use_running_average) if update_stats is None else bool(update_stats)
        kernel, u, _ = spectral_normalize(
            self.layer.kernel[...], self.u[...],
            n_power_iterations=self.n_power_iterations if update else 0, eps=self.eps,
        )
        if update:
            self.u[...] = u
        return kernel

    def __call__(self, x: jax.Array, *, update_stats: bool | None = None) -> jax.Array:
        kernel_var = self.layer.kernel
        original = kernel_var[...]
        kernel_var[...] = self.normalized_kernel(update_stats)
        try:
            return self.layer(x)
        finally:  # the Param keeps the raw kernel: only this call sees the normalised one
            kernel_var[...] = original
