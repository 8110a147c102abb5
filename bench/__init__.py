"""Benchmarks (not part of the package or the test suite): run them from the repository root as
``python -m bench.<name>`` (see bench/README.md)."""
