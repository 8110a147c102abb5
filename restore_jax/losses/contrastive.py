"""InfoNCE with a queue of negatives (MoCo style), float32 throughout.

``q``, ``k``: ``[B, D]`` embeddings (L2-normalised here); ``queue``: ``[K, D]`` earlier keys.
Positive of query ``i`` is key ``i``; negatives are all queue entries. The queue is a ring buffer
that lives in ``TrainState.extras`` and is updated with :func:`enqueue` inside the jitted step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jnp.ndarray, eps: float = 1e-6) -> jnp.ndarray:
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def info_nce(q: jnp.ndarray, k: jnp.ndarray, queue: jnp.ndarray, temperature: float = 0.07) -> jnp.ndarray:
    """Mean InfoNCE loss: cross-entropy of the positive logit against ``[positive, queue]`` logits."""
    q = l2_normalize(q)
    k = jax.lax.stop_gradient(l2_normalize(k))
    queue = jax.lax.stop_gradient(queue.astype(jnp.float32))
    pos = jnp.sum(q * k, axis=-1, keepdims=True)  # [B, 1]
    neg = q @ queue.T  # [B, K]
    logits = jnp.concatenate([pos, neg], axis=-1) / temperature
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - logits[:, 0])


def enqueue(queue: jnp.ndarray, ptr: jnp.ndarray, keys: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Write ``keys`` ([B, D], normalised) into the ring buffer at ``ptr``; returns ``(queue, ptr)``.

    ``K`` must be a multiple of ``B`` (checked when the config is validated) so a write never wraps.
    """
    size, b = queue.shape[0], keys.shape[0]
    if size % b:
        raise ValueError(f"queue size {size} must be a multiple of the batch size {b}")
    keys = l2_normalize(jax.lax.stop_gradient(keys)).astype(queue.dtype)
    queue = jax.lax.dynamic_update_slice_in_dim(queue, keys, ptr, axis=0)
    return queue, (ptr + b) % size
