"""The ask-run-tell loop of one worker, in place of `Study.optimize`.

`Study.optimize` cannot end cleanly when the storage stays away while it records a trial's
result: its error path reads the trial back from the same storage and then fails with an
`UnboundLocalError` of its own (optuna 5.0.0, `_run_trial`). This loop asks, runs and tells
through the public API: a storage outage that outlasts `search.retry_s` ends it with the
storage's one-line `StorageError` (the trial stays RUNNING, and its worker, once ended, is
recognised as dead by the next launcher, which retries the configuration). Like `optimize`, it
keeps a heartbeat thread per trial (RDB storages), reports a failed trial as one warning line
and goes on, and calls the callbacks after each trial.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import optuna

from pipeline import compat
from pipeline.errors import TunebenchError, deferred_interrupts
from pipeline.processes import worker_id
from pipeline.search.execution.heartbeats import Heartbeat
from pipeline.search.execution.stale_trials import WORKER_ATTR

TS = optuna.trial.TrialState


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], *, n_trials: int | None,
               timeout: float | None, callbacks: list, before_trial: Callable[[], None] | None = None,
               stop: Callable[[optuna.trial.FrozenTrial], bool] | None = None) -> None:  # fmt: skip
    """Run trials of `study` in this process until `n_trials` ran, `timeout` seconds passed, or `stop` says so.

    Args:
        `objective`: returns the trial's value; `optuna.TrialPruned` prunes it; any other `Exception`
            fails it (one warning line) and the loop goes on, except a `TunebenchError` (a storage or
            tracking outage that did not end, ...), which ends the loop with the trial left RUNNING:
            the next launcher finds its worker dead and runs the configuration again.
        `before_trial`: called before each trial is asked (e.g. failing trials of dead workers).
        `stop`: called with each finished trial (after the callbacks): True ends the loop.
    """
    storage = compat.storage_of(study)
    logger = compat.optimize_logger()
    t0 = time.monotonic()
    done = 0
    while (n_trials is None or done < n_trials) and (timeout is None or time.monotonic() - t0 < timeout):
        done += 1
        if before_trial is not None:
            before_trial()
        with warnings.catch_warnings(), deferred_interrupts():  # a trial asked is a trial whose worker is named
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
            trial = study.ask()
            heartbeat = Heartbeat(storage, compat.trial_id(trial))
            # beating before naming the worker: a trial of another host's worker killed in between would
            # otherwise stay RUNNING for good (Optuna fails only trials whose heartbeat went stale)
            heartbeat.beat_once()
            trial.set_user_attr(WORKER_ATTR, worker_id())
        value, state, error = None, TS.COMPLETE, None
        with heartbeat:
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                state = TS.PRUNED
            except TunebenchError as exc:
                state, error = TS.FAIL, exc
            except Exception as exc:  # noqa: BLE001 - a failed trial; the study goes on
                state, error = TS.FAIL, exc
        if isinstance(error, TunebenchError):
            raise error  # not told: the trial stays RUNNING, and is retried once its worker is found dead
        frozen = _tell(study, trial, value, state)
        if frozen is None:
            continue
        if frozen.state == TS.FAIL and error is not None:
            logger.warning(f"Trial {trial.number} failed with parameters: {trial.params} because of the following "
                           f"error: {error!r}.")  # fmt: skip
        for callback in callbacks:
            callback(study, frozen)
        if stop is not None and stop(frozen):
            return


def _tell(study: optuna.Study, trial: optuna.Trial, value, state) -> optuna.trial.FrozenTrial | None:
    """Record how `trial` ended; None when another process failed it meanwhile (its heartbeat went stale)."""
    try:
        if state == TS.COMPLETE:
            return study.tell(trial, value)
        return study.tell(trial, state=state)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        now = _reload(study, trial)
        if now.state.is_finished():
            compat.optimize_logger().warning(
                f"Trial {trial.number} was marked {now.state.name} by another process (its heartbeat went stale) "
                "before its result was recorded; its configuration is run again"
            )
            return None
        raise


def _reload(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    return compat.storage_of(study).get_trial(compat.trial_id(trial))
