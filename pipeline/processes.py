"""Which process does a piece of work: an identity that survives pid reuse, and whether it still lives.

Trials (`worker` user attr), MLflow runs (owner tags), study rounds (their creator) and staging
folders all record `worker_id()`; a later process asks `worker_alive` before taking over or
cleaning up what an ended one left. Light: no Optuna, no MLflow.
"""

from __future__ import annotations

import os
import socket


def worker_id() -> dict:
    """This process as a trial's `worker` user attr: host, pid and start time (pids get reused)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())}


def process_start(pid: int) -> float | None:
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
    return started is None or process_start(int(worker["pid"])) in (None, started)
