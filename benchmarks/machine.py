"""What the benchmark scripts record about the machine and the libraries they ran with."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

LIBRARIES = ("optuna", "mlflow", "dvc", "numpy", "scikit-learn", "keras", "tensorflow-cpu", "sqlalchemy", "psycopg2",
             "psycopg2-binary")  # fmt: skip


def machine_info(*, libraries: tuple[str, ...] = LIBRARIES, **extra) -> dict:
    """Python, platform, CPUs, load average and the installed versions of `libraries` (plus `extra`)."""
    versions = {}
    for name in libraries:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg_1_5_15m": load, "libraries": versions, **extra}  # fmt: skip
