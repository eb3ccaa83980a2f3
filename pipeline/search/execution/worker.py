"""What a worker process runs: a round's job, the objective around each trial, and the warm process's loop.

`run_worker` runs a job's trials in this process (the launcher's, when a round runs here, or a
worker's): it opens the storage, loads the processed data once per process (`data_cache`) and
runs the trial loop through `optimize`, which names each trial's worker, stops surplus trials
and records why a trial failed. `warm_worker` is the body of a worker process of the pool
(`worker_pool`): it takes jobs from its pipe until the launcher is gone.
"""

from __future__ import annotations

import os
import signal
import sys

import optuna

from pipeline import retry, tracking
from pipeline.errors import TunebenchError
from pipeline.processes import worker_id
from pipeline.redaction import redact
from pipeline.search.execution import failure_lines  # noqa: F401 - Optuna's log: warnings, failures on one line
from pipeline.search.execution.budget import SURPLUS_ATTR, claimed, one_line
from pipeline.search.execution.job import RoundJob
from pipeline.search.execution.memory import ReleaseMemory
from pipeline.search.execution.stale_trials import WORKER_ATTR, fail_interrupted
from pipeline.search.execution.trial_loop import run_trials
from pipeline.search.objective import TrialContext, run_trial
from pipeline.search.progress import SEP, ProgressBar
from pipeline.search.samplers import make_pruner, make_sampler
from pipeline.search.storage import is_journal, open_storage


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

    release = ReleaseMemory() if release_memory else None
    run_trials(study, objective, n_trials=n_trials, timeout=timeout, before_trial=before_trial, stop=stop,
               callbacks=[*([release] if release else []), *(callbacks or [])])  # fmt: skip


def warm_worker(conn, board=None) -> None:
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
