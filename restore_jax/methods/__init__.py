"""Restoration methods, one package each (``restore_jax/methods/<id>/``), behind one typed contract.

- :mod:`restore_jax.methods.api`: :class:`~restore_jax.methods.api.Method` and
  :class:`~restore_jax.methods.api.InferenceSpec`, all the engine, inference and the CLI see;
- :mod:`restore_jax.methods.registry`: id -> module path (lazy; plug-ins through the
  ``restore_jax.methods`` entry point group or ``config.method_module``).

Nothing is imported here: ``import restore_jax.methods.api`` stays free of JAX and of every method.
See ``docs/adding_a_method.md``.
"""
