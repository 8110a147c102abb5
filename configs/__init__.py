"""Method configs: ``get_config(arg)`` presets per method file (``configs/<id>.py``).

Installed as ``restore_jax.configs`` (``setup.py`` maps this folder), so ``--config <id>:<preset>``
works from any working directory; each file imports only ``restore_jax.config``.
"""
