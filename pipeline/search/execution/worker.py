"""The processes that run a round's trials: worker pool, recycling, memory release, progress.

A round's trials run in this process, or in `workers` spawned processes sharing the study,
each given the typed round and the processed-data folder (`RoundJob`), never re-reading
`params.yaml`. After every trial the Keras session is cleared and garbage collected. That
does not stop TensorFlow from keeping ~5 MB of every model built in a process
(`benchmarks/trial_memory.py` measures it), so Keras trials run in spawned worker processes
of at most `TRIALS_PER_PROCESS` trials each when a round has more than that.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from pipeline import compat, retry, tracking
from pipeline.search.execution import worker_pool
from pipeline.config import BenchmarkConfig, ParamRange, RoundConfig
from pipeline.errors import SearchFailedError, TunebenchError
from pipeline.redaction import redact
from pipeline.search.execution.budget import SURPLUS_ATTR, claimed, one_line
from pipeline.search.objective import TrialContext, run_trial
from pipeline.search.progress import SEP, ProgressBar
from pipeline.search.execution.concurrency import threads_for
from pipeline.search.samplers import make_pruner, make_sampler
from pipeline.processes import worker_id
from pipeline.search.storage import WORKER_ATTR, fail_interrupted, is_journal, open_storage
from pipeline.search.execution.trial_loop import run_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials instead
TRIALS_PER_PROCESS = 50  # Keras families: trials per worker process before a fresh one (see trials_per_process)
MAX_KILLED_WORKERS = 3  # worker processes killed by a signal that a round replaces before the search fails


class _OneLineTrialFailures(logging.Filter):
    """Optuna's report of a failed trial as one line, without the traceback.

    The traceback is kept where it can be read later: the trial's MLflow run (artifact
    `error.txt`) and the trial's `fail_reason` user attr hold the error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if compat.FAILED_VALUE_LINE in message:  # Optuna's second line about the same failure
            return False
        record.msg, record.args, record.exc_info, record.exc_text = one_line(message), (), None, None
        return True


compat.optimize_logger().addFilter(_OneLineTrialFailures())


@dataclass(frozen=True)
class RoundJob:
    """What every worker process of one round needs (picklable: it is the spawned processes' argument).

    `data_dir` is the data handle: the benchmark's processed-data folder, loaded by each worker.
    """

    key: str  # the benchmark (names its default journal file)
    study: str  # the round's study name
    storage_url: str | None
    bench: BenchmarkConfig
    rnd: RoundConfig
    sampler: str
    sampler_seed: int
    space: dict[str, ParamRange]
    data_dir: Path
    tracking_uri: str
    log_models: bool
    experiment_id: str
    parent_run_id: str
    tags: dict[str, Any]
    budget: int
    threads: int = 1
    release_memory: bool = True  # clear the Keras session and collect garbage after every trial (off only to measure)
    retry_s: float = retry.DEFAULT_RETRY_S  # `search.retry_s`: how long storage and tracking outages are ridden out
    warm: tuple = ()  # the previous round's trials its sampler learns from (`warm_start`)


def trials_per_process(model: str) -> int:
    """How many trials one worker process runs before a fresh one takes over (0: no limit).

    TensorFlow keeps about 5 MB of every model built in a process, `clear_session` or not
    (tensorflow#36465; measured by `benchmarks/trial_memory.py`), so the Keras families run
    at most `TRIALS_PER_PROCESS` trials a process; other families never need a fresh one.
    `TUNEBENCH_TRIALS_PER_PROCESS` overrides it (0 turns it off).
    """
    env = os.environ.get("TUNEBENCH_TRIALS_PER_PROCESS")
    if env not in (None, ""):
        return max(0, int(env))
    return TRIALS_PER_PROCESS if model.startswith("keras_") else 0


def run_worker(job: RoundJob, n_trials: int, timeout: float | None, slot: int) -> None:
    """Run `n_trials` of the round in this process (also the body of every spawned worker).

    The sampler draws from a seed and each trial's number (`samplers.per_trial_seed`), so
    parallel workers, launchers and every resumed or recycled process sample new points.
    """
    os.environ["TUNEBENCH_THREADS"] = str(job.threads)
    retry.configure(job.retry_s)
    from pipeline.search.execution.data_cache import load_processed  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415

    storage = open_storage(job.storage_url, job.key, tracking_uri=job.tracking_uri)
    data = load_processed(job.data_dir)
    study = optuna.load_study(
        study_name=job.study, storage=storage,
        sampler=make_sampler(job.sampler, job.sampler_seed, job.space, salt=job.key, warm=job.warm),  # salt: own draws
        pruner=make_pruner(job.rnd, steps=len(data.folds) if data.folds else job.rnd.epochs),
    )  # fmt: skip
    ctx = TrialContext(
        family=get_family(job.bench.model), data=data, space=job.space, fixed=job.bench.hparams,
        epochs=job.rnd.epochs, seed=job.bench.seed, mlc=tracking.client(job.tracking_uri),
        experiment_id=job.experiment_id, parent_run_id=job.parent_run_id, tags=job.tags, log_models=job.log_models,
        reinvest_pruned=job.rnd.reinvest_pruned,
    )  # fmt: skip
    if claimed(study) >= job.budget:  # other workers or launchers took the rest meanwhile
        return
    bar = ProgressBar(study, job.budget, f"{job.key}{SEP}{job.rnd.name}") if slot == 0 else None
    journal = is_journal(job.storage_url)

    def fail_dead_workers_trials() -> None:
        fail_interrupted(study, journal=journal, tracking_uri=job.tracking_uri)

    try:
        optimize(study, ctx, n_trials=n_trials, timeout=timeout, budget=job.budget, release_memory=job.release_memory,
                 callbacks=[bar] if bar else [], before_trial=fail_dead_workers_trials)  # fmt: skip
    finally:
        if bar is not None:
            bar.close(study)


def optimize(study: optuna.Study, ctx: TrialContext, *, n_trials: int | None, timeout: float | None,
             budget: int | None = None, callbacks: list | None = None, release_memory: bool = True,
             before_trial=None) -> None:  # fmt: skip
    """Run trials of `study` in this process: the loop of every worker (`trial_loop.run_trials`).

    Each trial first records its worker (so a later resume can tell it from a crashed one);
    after each, the Keras session is cleared and garbage collected (unless `release_memory`
    is off, to measure what it saves). Stops after `n_trials`, once `timeout` seconds have
    passed (the running trial finishes), or once the study's `budget` is claimed by any
    process. Trial numbers decide who gets the last places: a trial asked while trials of
    lower numbers already claim the whole budget (two launchers finishing at the same
    moment) stops at once, PRUNED with user attr `surplus`, before it samples or trains; it
    counts nowhere. `before_trial` runs before each trial is asked.
    """
    me = worker_id()

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, me)
        if budget is not None and claimed(study, before=trial.number) >= budget:
            trial.set_user_attr(SURPLUS_ATTR, True)
            trial.set_user_attr("pruned_reason", "surplus: the budget was already claimed by other workers")
            raise optuna.TrialPruned("surplus: the budget was already claimed by other workers")
        try:
            return run_trial(trial, ctx)
        except (optuna.TrialPruned, TunebenchError):
            raise  # an outage that did not end: the trial stays RUNNING, retried once its worker is found dead
        except Exception as exc:  # failed before `run_trial` could record why (bad hyperparameters, tracking...)
            if (cut := tracking.outage_error(ctx.mlc, exc)) is not None:
                raise cut from None  # the tracking server went away in a call that is not retried: an outage too
            if "fail_reason" not in trial.user_attrs:
                trial.set_user_attr("fail_reason", redact(f"{type(exc).__name__}: {exc}")[:2000])
            raise

    def stop(frozen: optuna.trial.FrozenTrial) -> bool:
        return SURPLUS_ATTR in frozen.user_attrs or (budget is not None and claimed(study) >= budget)

    release = _ReleaseMemory() if release_memory else None
    run_trials(study, objective, n_trials=n_trials, timeout=timeout, before_trial=before_trial, stop=stop,
               callbacks=[*([release] if release else []), *(callbacks or [])])  # fmt: skip


class _ReleaseMemory:
    """Trial callback: clear the Keras session (if Keras is loaded) and collect garbage.

    What survives that collection stays for good (TensorFlow, MLflow, the data, and the
    ~9,000 objects of graph state TensorFlow keeps from every model): it is moved out of the
    collector's sight (`gc.freeze`), so each collection only walks what the next trial makes.
    A full collection with TensorFlow loaded took 0.25 s and grew with every trial; frozen,
    0.01 s (a trial pays two: here and in the Keras family's `clear_session`). The first freeze comes
    before the first trial, and the process stays frozen after the loop: unfrozen, the next loop's (the
    next round's) first two collections walked everything again (0.8-1.2 s each).
    """

    def __init__(self) -> None:
        if not gc.get_freeze_count():
            self(None, None)

    def __call__(self, study: optuna.Study | None, trial: optuna.trial.FrozenTrial | None) -> None:
        release_memory()
        gc.freeze()


def release_memory() -> None:
    """Drop what a finished trial left behind: the Keras session (if Keras is loaded) and garbage."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        keras.backend.clear_session()  # also runs gc.collect()
    else:
        gc.collect()


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
    workers_pool = worker_pool.WorkerPool(_warm_worker) if own else worker_pool.current()
    workers_pool.preload(_preloaded(job.bench.model))
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


def keep_warm():
    """A context (a whole search) in which each worker slot's process stays up across rounds (`pool`)."""
    return worker_pool.warm_workers(_warm_worker)


def _preloaded(model: str) -> list[str]:
    """What the fork server of a search of `model` imports once for all its workers (TensorFlow for Keras)."""
    keras = ["pipeline.search.execution.preload_keras"] if model.startswith("keras_") else []
    return ["pipeline.search.execution.preload_worker", *keras]


def start_early(model: str) -> None:
    """Within `keep_warm()`, start the fork server of a search that will use worker processes now, so
    that its imports run while this process sets up the stores and the first round."""
    if worker_pool.current() is not None:
        worker_pool.current().preload(_preloaded(model), start=True)


def _warm_worker(conn, board=None) -> None:
    """The body of a worker process: jobs `(environ, job, n_trials, timeout, slot)` from `conn`, each run by
    `run_worker` under the launcher's environment `environ`.

    Each job is answered on `conn` with None when it ran to its end, or with its failure as one line
    (no traceback; the process then exits 1). Ends on None or when the launcher is gone (EOF).
    `board`: the launcher's shared outage board (`pipeline.retry`), so an outage is announced once.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the fork server's preload handler exits at once
    retry.configure(board=retry.Board(board) if board is not None else None)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if message is None:
            return
        env, job, n_trials, timeout, slot = message
        os.environ.clear()  # the launcher's, not the fork server's (tests and launchers change it between jobs)
        os.environ.update(env)
        try:
            run_worker(job, n_trials, timeout, slot)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the search with it
            text = str(exc) if isinstance(exc, TunebenchError) else f"{type(exc).__name__}: {exc}"
            conn.send(f"worker {slot}: {one_line(redact(text))}")
            sys.exit(1)
        conn.send(None)
