"""Models: one module per method id; :mod:`restore_jax.models.registry` maps ids to them."""

from restore_jax.models.registry import get_method, make_recipe, method_names

__all__ = ["get_method", "make_recipe", "method_names"]
