"""Shared fixtures: the project root, the shipped params, and a subprocess runner for the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture
def shipped_params() -> dict:
    """The shipped params.yaml as plain data (a fresh copy per test)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `python -m pipeline ARGS` in `cwd` and capture its output."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )
