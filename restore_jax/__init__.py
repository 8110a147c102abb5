"""restore_jax: controllable face and video restoration in JAX / Flax NNX."""

__version__ = "0.1.0"
