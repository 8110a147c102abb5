"""Channel attention (RCAN / squeeze-and-excitation style), NHWC.

``ChannelAttention(features, reduction)`` computes per-channel weights

    a = sigmoid(W2 · act(W1 · [GAP(source), cond] + b1) + b2)   in [0, 1]^C

and returns ``x * a``. By default ``source`` is ``x`` itself (RCAN's channel attention). Two optional
external inputs make it a *conditional* attention:

- ``source``: a different feature map whose pooled statistics drive the weights applied to ``x``
  (CFMD-GAN's CACA: the weights come from the control-fused feature ``F_u`` and scale the output of
  the deformable conv);
- ``cond``: a vector ``[B, cond_features]`` concatenated to the pooled descriptor (for example an
  embedded degradation level); needs ``cond_features > 0`` at construction.

The two "1x1 convolutions" of RCAN act on a 1x1 map, so they are held as ``nnx.Linear`` layers (same
parameters: a PyTorch ``Conv2d(cin, cout, 1)`` weight ``[cout, cin, 1, 1]`` ports as
``w[:, :, 0, 0].T``). The pooling is accumulated in float32 whatever the activation dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


def _torch_linear(cin: int, cout: int, rngs: nnx.Rngs) -> nnx.Linear:
    """``nnx.Linear`` with PyTorch's default init: kernel and bias uniform(+-1/sqrt(fan_in))."""
    bound = 1.0 / cin**0.5
    uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)  # noqa: E731
    return nnx.Linear(cin, cout, kernel_init=uniform, bias_init=uniform, rngs=rngs)


class ChannelAttention(nnx.Module):
    """``x * sigmoid(excite(act(squeeze([GAP(source or x), cond]))))`` with hidden width ``features // reduction``.

    Args:
      features: channels ``C`` of ``x`` (and of ``source``).
      reduction: bottleneck ratio ``r``; the hidden width is ``max(1, C // r)``.
      cond_features: length of the optional conditioning vector (0: none).
      activation: bottleneck non-linearity (ReLU in RCAN).
    """

    def __init__(
        self,
        features: int,
        reduction: int = 16,
        *,
        cond_features: int = 0,
        activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
        rngs: nnx.Rngs,
    ):
        if features < 1 or reduction < 1 or cond_features < 0:
            raise ValueError(
                f"ChannelAttention needs features >= 1, reduction >= 1 and cond_features >= 0, got "
                f"features={features}, reduction={reduction}, cond_features={cond_features}"
            )
        self.features = features
        self.cond_features = cond_features
        self.hidden = max(1, features // reduction)
        self.activation = activation
        self.squeeze = _torch_linear(features + cond_features, self.hidden, rngs)
        self.excite = _torch_linear(self.hidden, features, rngs)

    def weights(self, source: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        """Attention weights ``[B, 1, 1, C]`` in ``[0, 1]`` from ``source [B, H, W, C]`` (and ``cond``)."""
        if source.ndim != 4 or source.shape[-1] != self.features:
            raise ValueError(
                f"ChannelAttention({self.features}) expects an NHWC source with {self.features} channels, "
                f"got shape {tuple(source.shape)}"
            )
        desc = jnp.mean(source, axis=(1, 2), dtype=jnp.float32).astype(source.dtype)  # [B, C]
        if self.cond_features:
            if cond is None or cond.shape != (source.shape[0], self.cond_features):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(
                    f"ChannelAttention was built with cond_features={self.cond_features}: pass cond of shape "
                    f"{(source.shape[0], self.cond_features)}, got {got}"
                )
            desc = jnp.concatenate([desc, cond.astype(desc.dtype)], axis=-1)
        elif cond is not None:
            raise ValueError("ChannelAttention got a cond vector but was built with cond_features=0")
        a = jax.nn.sigmoid(self.excite(self.activation(self.squeeze(desc))))
        return a[:, None, None, :]

    def __call__(self, x: jax.Array, source: jax.Array | None = None, cond: jax.Array | None = None) -> jax.Array:
        """``x * weights(source if given else x, cond)``; ``source`` must have ``x``'s batch and channels."""
        a = self.weights(x if source is None else source, cond)
        return x * a.astype(x.dtype)
