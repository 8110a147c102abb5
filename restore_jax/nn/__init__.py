"""restore_jax.nn."""
