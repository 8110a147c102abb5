"""Errors the engine raises for people: each message says what was wrong and what to do."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config problem a person can fix (bad preset, unknown key, inconsistent sizes)."""


class NonFiniteError(FloatingPointError):
    """Training produced a NaN/Inf loss or gradient (``train.nan_policy='stop'``)."""


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was required."""


class WorkdirLockedError(RuntimeError):
    """Another training run holds the workdir's lock (``<workdir>/.lock``)."""
