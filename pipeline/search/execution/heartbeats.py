"""Heartbeats of running trials, and how long one may stay silent before its trial counts as cut off.

RDB storages keep a heartbeat per running trial (`Heartbeat`, a thread beside the trial, every
`heartbeat_interval()` seconds); a RUNNING trial whose heartbeat is older than `grace_period()`
is failed as interrupted (`stale_trials`). The grace period outlasts a database outage ridden out
(`search.retry_s`), so a trial whose worker waited through one is not taken for dead.
"""

from __future__ import annotations

import os
import threading

from pipeline import compat, retry

HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats (RDB storages)
GRACE_PERIOD = 120  # seconds without a heartbeat before a RUNNING trial counts as crashed (at least: `grace_period`)
GRACE_MARGIN = 30  # seconds the grace period keeps beyond a heartbeat interval plus an outage ridden out


def heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats: `TUNEBENCH_HEARTBEAT_S`, else `HEARTBEAT_INTERVAL`."""
    return max(1, int(float(os.environ.get("TUNEBENCH_HEARTBEAT_S") or HEARTBEAT_INTERVAL)))


def grace_period() -> int:
    """Seconds without a heartbeat (or worker) before a RUNNING trial of another host counts as crashed.

    `TUNEBENCH_GRACE_S` if set; else `GRACE_PERIOD`, raised to a heartbeat interval plus `search.retry_s`
    plus `GRACE_MARGIN`, so that a trial whose worker rode out a database outage is not taken for dead
    (180 s by default).
    """
    env = os.environ.get("TUNEBENCH_GRACE_S")
    if env:
        return max(1, int(float(env)))
    return int(max(GRACE_PERIOD, heartbeat_interval() + retry.retry_limit() + GRACE_MARGIN))


class Heartbeat:
    """Record a running trial's heartbeat every interval in a thread (storages that keep heartbeats)."""

    def __init__(self, storage, trial_id: int):
        interval = storage.get_heartbeat_interval() if isinstance(storage, compat.heartbeat_base()) else None
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = None

    def beat_once(self) -> None:
        """Record one heartbeat now (storages that keep heartbeats)."""
        if self.interval:
            self.storage.record_heartbeat(self.trial_id)  # never raises (`RetryingStorage`)

    def __enter__(self):
        if self.interval:
            self.thread = threading.Thread(target=self._beat, name="trial-heartbeat", daemon=True)
            self.thread.start()
        return self

    def _beat(self) -> None:  # the first beat was `beat_once`, before the trial's worker was named
        while not self.stop.wait(self.interval):
            self.storage.record_heartbeat(self.trial_id)  # never raises (`RetryingStorage`)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
