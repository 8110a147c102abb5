"""Shared test set-up: 8 fake CPU devices for sharding tests, paths to the optional shared data."""

from __future__ import annotations

import os
import pathlib

# Must happen before JAX initialises its backends: tests see 8 CPU devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("RESTORE_JAX_SHARED", REPO_ROOT.parent / "shared"))


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most 4 (each worker holds its own JAX runtime and
    compiled functions, ~1-2 GB; more workers mostly add compile contention)."""
    return max(1, min(4, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """``../shared/data`` (real faces and videos); the test is skipped with a reason when absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set RESTORE_JAX_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def face_api_weights() -> pathlib.Path:
    """``../shared/weights/face-api``; the test is skipped with a reason when absent."""
    path = SHARED / "weights" / "face-api"
    if not path.is_dir():
        pytest.skip(f"face-api weights not found at {path} (set RESTORE_JAX_SHARED to the shared/ folder)")
    return path
