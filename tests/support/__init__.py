"""Helpers shared by the test files (imported as ``support``: pyproject sets pythonpath = tests)."""
