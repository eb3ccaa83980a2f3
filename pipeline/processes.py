"""Which process does a piece of work: an identity that survives pid reuse, and whether it still lives.

Trials (`worker` user attr), MLflow runs (owner tags), study rounds (their creator) and staging
folders all record `worker_id()`; a later process asks `worker_alive` before taking over or
cleaning up what an ended one left. Light: no Optuna, no MLflow.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime


def worker_id() -> dict:
    """This process as a trial's `worker` user attr: host, pid and start time (pids get reused)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())}


def process_start(pid: int) -> str | None:
    """When process `pid` started, as an ISO 8601 UTC string (to 10 ms), or None when unknown."""
    t = _create_time(pid)
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _create_time(pid: int) -> float | None:
    try:
        import psutil  # noqa: PLC0415 - optional (installed with dvc)

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:  # noqa: BLE001 - no psutil, or no such process
        return None


def worker_alive(worker: dict | None) -> bool:
    """True when `worker` (a `worker_id()`) is a live process on this host other than this one."""
    if not worker or worker.get("host") != socket.gethostname() or worker.get("pid") == os.getpid():
        return False
    try:
        os.kill(int(worker["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    except (OSError, ValueError, TypeError):
        return False
    started = worker.get("started")
    return started is None or _same_start(started, int(worker["pid"]))


def _same_start(recorded: str | float, pid: int) -> bool:
    """Whether `pid` started at `recorded`: an ISO string, or epoch seconds as earlier versions recorded."""
    t = _create_time(pid)
    if t is None:
        return True
    try:
        return float(recorded) == t  # an older record: epoch seconds (a number, or its text in an MLflow tag)
    except (TypeError, ValueError):
        return recorded == process_start(pid)
