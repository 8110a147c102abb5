"""Packaging detail pyproject.toml cannot state: the top-level ``configs/`` folder ships inside the
package as ``restore_jax.configs`` (so ``--config zsm:paper`` works from a wheel)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["restore_jax", "restore_jax.*", "input_pipelines", "input_pipelines.*"])
    + ["restore_jax.configs"],
    package_dir={"restore_jax.configs": "configs"},
)
