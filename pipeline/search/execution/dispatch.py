"""A round's trials shared out to worker slots, and killed workers replaced.

`run_workers` runs a round's remaining trials in this process, or in `workers` processes of the
pool (`worker_pool`), each slot with its share; a slot's process is replaced after
`memory.trials_per_process` trials, and a worker killed by a signal (out of memory) has its
trial failed as interrupted and a fresh process takes its slot, up to `MAX_KILLED_WORKERS`
times a round. Failed workers end the round with one `SearchFailedError` naming their errors.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import sys
import time
from dataclasses import replace

import optuna

from pipeline.errors import SearchFailedError
from pipeline.search.execution import worker_pool
from pipeline.search.execution.budget import claimed
from pipeline.search.execution.concurrency import threads_for
from pipeline.search.execution.fork_server import preloaded
from pipeline.search.execution.job import RoundJob
from pipeline.search.execution.stale_trials import fail_interrupted
from pipeline.search.execution.worker import run_worker, warm_worker
from pipeline.search.storage import is_journal

MAX_KILLED_WORKERS = 3  # worker processes killed by a signal that a round replaces before the search fails


def run_workers(job: RoundJob, study: optuna.Study, remaining: int, timeout: float | None, workers: int,
                per_process: int, may_kill: int = MAX_KILLED_WORKERS) -> int:  # fmt: skip
    """Run `remaining` trials: in this process, or in spawned worker processes.

    `workers` processes share the study, each with its share of the trials; a worker slot
    runs its share in consecutive fresh processes of at most `per_process` trials (0: one
    process). With one worker and no limit reached, the trials run here. A `timeout` (seconds)
    covers the whole round: no new process starts after it. Every worker also stops once the
    study's budget is claimed, so launchers sharing a study (other machines) run it once.
    A worker killed by a signal (SIGKILL, out of memory) has its trial failed as interrupted
    (its configuration is retried) and a fresh process takes its slot, up to `may_kill` times.
    Workers announce storage and tracking outages through this process's board (one line per outage).

    Returns:
        How many worker processes were killed by a signal and replaced.

    Raises:
        SearchFailedError: a worker process failed (the study stays resumable); its error is in the message.
    """
    job = replace(job, threads=threads_for(workers))
    if workers <= 1 and (not per_process or remaining <= per_process):
        run_worker(job, per_process or None, timeout, 0)  # to the budget's end: pruned trials give some back
        return 0
    quotas = [remaining // workers + (i < remaining % workers) for i in range(workers)]
    per = per_process or max(quotas)
    deadline = None if timeout is None else time.monotonic() + timeout
    own = worker_pool.current() is None  # outside `keep_warm()`: this call's processes end with it
    workers_pool = worker_pool.WorkerPool(warm_worker) if own else worker_pool.current()
    workers_pool.preload(preloaded(job.bench.model))
    left = dict(enumerate(quotas))
    running: dict[int, tuple[worker_pool.Warm, int]] = {}
    bad: list[int] = []
    errors: list[str] = []
    killed = 0
    try:
        while True:
            for slot, quota in left.items():
                if quota <= 0 or slot in running or bad:
                    continue
                rest = None if deadline is None else deadline - time.monotonic()
                if (rest is not None and rest <= 0) or claimed(study) >= job.budget:
                    left[slot] = 0
                    continue
                n = min(quota, per)
                warm = workers_pool.submit(slot, (dict(os.environ), job, n, rest, slot), threads=job.threads, trials=n,
                                           per_process=per_process)  # fmt: skip
                running[slot] = (warm, n)
            if not running:
                break
            mp.connection.wait([x for w, _ in running.values() for x in (w.proc.sentinel, w.conn)])
            for slot, (warm, n) in list(running.items()):
                report = warm.report()
                if report is worker_pool.BUSY:
                    continue
                del running[slot]
                if report is None:  # the job ran to its end; the process waits for the next
                    left[slot] -= n
                    continue
                code = workers_pool.retire(slot)
                if isinstance(report, str):
                    errors.append(report)
                    bad.append(code or 1)
                    left[slot] = 0
                elif code is not None and code < 0 and killed < may_kill and not bad:
                    killed += 1
                    _replace_killed_worker(study, job, slot, code)
                elif code != 0:
                    bad.append(code)
                    left[slot] = 0
                else:
                    left[slot] -= n
    finally:
        if own:
            workers_pool.close()
    if bad:
        why = _dedupe(errors)
        why += [f"killed by signal {-c}" + (" (out of memory?)" if c == -9 else "") for c in bad if c < 0]
        said = why and all("rerun the same command" in w for w in why)  # an outage's line says what to do
        raise SearchFailedError(
            f"{study.study_name}: {len(bad)} search worker process(es) failed: {'; '.join(why) or f'exit codes {bad}'}"
            + ("" if said else "; the study is kept: fix the cause and rerun the same command to resume")
        )
    return killed


def _replace_killed_worker(study: optuna.Study, job: RoundJob, slot: int, exitcode: int) -> None:
    """Fail the trial of a worker killed by a signal as interrupted (retried), before a fresh process takes over."""
    oom = " (out of memory?)" if exitcode == -9 else ""
    print(f"{study.study_name}: worker {slot} killed by signal {-exitcode}{oom}; its trial is failed as interrupted "
          "and retried, and a fresh worker takes its place", file=sys.stderr)  # fmt: skip
    fail_interrupted(study, journal=is_journal(job.storage_url), tracking_uri=job.tracking_uri)


def _dedupe(lines: list[str]) -> list[str]:
    """`worker 0: X`, `worker 1: X` -> `workers 0, 1: X` (several workers giving up on one outage)."""
    by_text: dict[str, list[str]] = {}
    for line in lines:
        head, sep, text = line.partition(": ")
        if not sep or not head.startswith("worker "):
            head, text = "", line
        by_text.setdefault(text, []).append(head.removeprefix("worker "))
    return [text if not slots[0] else f"worker{'s' if len(slots) > 1 else ''} {', '.join(sorted(slots))}: {text}"
            for text, slots in by_text.items()]  # fmt: skip
