"""What a benchmark result records about the machine and the software it ran with."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks import ROOT

# every library a benchmark may measure or run against; the ones installed are recorded
LIBRARIES = ("tensorflow", "tensorflow-cpu", "keras", "optuna", "mlflow", "dvc", "numpy", "scipy", "scikit-learn",
             "sqlalchemy", "psycopg2", "psycopg2-binary", "keras-tuner", "ray", "smac")  # fmt: skip


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the system has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    """The processor's name (`/proc/cpuinfo` on Linux, else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    """Physical memory in GiB (None where `sysconf` cannot tell)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def machine(load_at_start: list[float] | None) -> dict:
    """Cores, processor, memory, platform and the load averages when the run began and now."""
    return {"cpus": os.cpu_count(), "cpu": cpu_model(), "memory_gb": memory_gb(), "platform": platform.platform(),
            "loadavg_1_5_15m_start": load_at_start, "loadavg_1_5_15m_end": loadavg()}  # fmt: skip


def commit() -> str | None:
    """tunebench's git commit (`-dirty` when tracked files differ from it), None outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict:
    """Python, tunebench's commit and the installed version of each of `LIBRARIES`."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "tunebench": commit(), **found}
