"""Running a round's budget to the end through crashes: the trials of dead workers never hold it.

A launcher counts the budget only after failing, as interrupted, the RUNNING trials whose
worker is gone (`stale_trials.fail_interrupted`: at once for a dead process of this host, after the
heartbeat grace period for other hosts); their configurations are queued again. When the rest
of the budget is claimed by trials running elsewhere, it does not stop with "budget met": it
waits for those it cannot see alive (other hosts, or no worker named yet) to finish or go
stale, and then runs the retries. Trials of live processes of this host are theirs to finish.
Before the next round narrows from this one, `wait_round_finished` waits for the trials other
launchers still run.
"""

from __future__ import annotations

import math
import sys
import time

import optuna

from pipeline.processes import worker_alive, worker_id
from pipeline.search.execution.budget import SURPLUS_ATTR, claimed
from pipeline.search.execution.dispatch import MAX_KILLED_WORKERS, run_workers
from pipeline.search.execution.heartbeats import grace_period
from pipeline.search.execution.job import RoundJob
from pipeline.search.execution.stale_trials import WORKER_ATTR, fail_interrupted
from pipeline.search.storage import is_journal

POLL_S = 2.0  # seconds between looks at trials this launcher waits for


def awaited(study: optuna.Study, *, journal: bool) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials that hold the budget and that no live process of this host is known to run.

    With a journal file, trials of other hosts are left out (no heartbeats: nothing would end the wait).
    """
    me = worker_id()
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = t.user_attrs.get(WORKER_ATTR)
        if SURPLUS_ATTR in t.user_attrs or (worker is not None and worker == me):
            continue
        if (
            worker is None
            or (worker.get("host") != me["host"] and not journal)
            or (worker.get("host") == me["host"] and not worker_alive(worker))
        ):
            out.append(t)
    return out


def run_budget(job: RoundJob, study: optuna.Study, timeout: float | None, workers: int, per_process: int) -> bool:
    """Run the round until its budget is used: trials here, retries of interrupted ones, waits for others.

    Returns:
        Whether anything was run or waited for (False: the budget was met already).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    journal = is_journal(job.storage_url)
    did, waiting, may_kill = False, False, MAX_KILLED_WORKERS
    while True:
        n = fail_interrupted(study, journal=journal, tracking_uri=job.tracking_uri)
        if n:
            print(f"{study.study_name}: {n} trial(s) of workers that ended marked FAIL (interrupted) and queued "
                  "again", file=sys.stderr)  # fmt: skip
        rest = None if deadline is None else deadline - time.monotonic()
        if rest is not None and rest <= 0:
            return did
        remaining = math.ceil(job.budget - claimed(study))  # trials; pruned ones give back what they did not train
        if remaining > 0:
            may_kill -= run_workers(job, study, remaining, rest, workers, per_process, may_kill)
            did, waiting = True, False
            continue
        held = awaited(study, journal=journal)
        if not held:
            return did
        if not waiting:
            print(f"{study.study_name}: waiting for {len(held)} trial(s) running in other processes (their "
                  f"configurations are run here if their worker is found dead or silent for {grace_period()} s)",
                  file=sys.stderr)  # fmt: skip
            waiting = True
        did = True
        time.sleep(POLL_S)


def wait_round_finished(study: optuna.Study, storage_url: str | None, tracking_uri: str | None,
                        limit: float = 3600.0) -> None:  # fmt: skip
    """Wait until no trial of `study` runs any more (other launchers' last trials), before narrowing from it.

    Trials of crashed workers are failed on the way (`fail_interrupted`; with RDB storages once
    their heartbeat is older than the grace period). Gives up after `limit` seconds.
    """
    t0 = time.monotonic()
    running = optuna.trial.TrialState.RUNNING
    while study.get_trials(deepcopy=False, states=(running,)):
        if time.monotonic() - t0 > limit:
            print(f"{study.study_name}: trials still running after {limit:.0f} s; narrowing without them",
                  file=sys.stderr)  # fmt: skip
            return
        fail_interrupted(study, journal=is_journal(storage_url), tracking_uri=tracking_uri)
        time.sleep(1.0)
