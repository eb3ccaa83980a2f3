"""Trials cut off by a crash: how they are recognised, marked, and their configurations retried.

A RUNNING trial counts as cut off by a crash (`fail_interrupted`) when its worker is a process
of this host that no longer lives (at once, any storage), when its heartbeat is older than the
grace period (RDB: workers of other hosts; `heartbeats`), or when it never named its worker and
started longer than the grace period ago. The cut-off trial is marked interrupted (user attr
`interrupted`, or study user attr `interrupted.<number>` where the storage no longer lets a
failed trial be annotated), does not count against the budget, its MLflow run is closed, and
its parameters are enqueued once again (`RetryHeartbeatStaleTrialCallback`, the successor of
Optuna's `RetryFailedTrialCallback`), so an interrupted configuration is retried, not lost; a
trial cut off before or while it drew its parameters is drawn again whole, from its own seed.
"""

from __future__ import annotations

import copy
import datetime
import sys
import warnings

import optuna

from pipeline import compat
from pipeline.processes import worker_alive, worker_id
from pipeline.search.execution.heartbeats import grace_period

MAX_RETRY = 3  # an interrupted configuration is retried this often (one that keeps killing its worker stops there)
WORKER_ATTR = "worker"  # user attr: where the trial runs, so a resume tells live trials from dead ones
INTERRUPTED_PREFIX = "interrupted."  # study user attr `interrupted.<trial number>`: cut off by a crash
REDRAW_ATTR = "redraw_of"  # user attr: this trial draws what interrupted trial <n> never drew (`samplers`)
RUN_ATTRS = (WORKER_ATTR, "mlflow_run_id", "pruned_at_epoch", "pruned_at_fold", "best_epoch", "interrupted")
now = datetime.datetime.now  # the clock `is_dead` ages a trial without a worker by (tests move it on)


def is_interrupted(study_attrs: dict, trial: optuna.trial.FrozenTrial) -> bool:
    """True when `trial` was cut off by a crash (`study_attrs`: the study's user attrs)."""
    return "interrupted" in trial.user_attrs or f"{INTERRUPTED_PREFIX}{trial.number}" in study_attrs


def is_enqueued(t: optuna.trial.FrozenTrial) -> bool:
    """Whether `t` was enqueued with its parameters (`enqueue_trial`, or a retry of a failed trial)."""
    return "fixed_params" in t.system_attrs or "failed_trial" in t.system_attrs


def drew_every_parameter(study_attrs: dict, t: optuna.trial.FrozenTrial) -> bool:
    """Whether `t` drew every parameter of its round's space (study user attr `space`; without one: any)."""
    space = study_attrs.get("space")
    return bool(t.params) and (space is None or set(space) <= set(t.params))


class InterruptedTrial:
    """What happens to a trial cut off by a crash: marked, its MLflow run closed, its configuration retried.

    Used as the RDB storage's `heartbeat_stale_trial_callback` (called with the trial already
    FAIL, which a storage no longer lets us annotate: the mark is the study user attr
    `interrupted.<number>`) and by `fail_interrupted` for journal files.
    """

    def __init__(self, tracking_uri: str | None = None, max_retry: int = MAX_RETRY):
        self.tracking_uri = tracking_uri
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        study.set_user_attr(f"{INTERRUPTED_PREFIX}{trial.number}", "worker stopped while the trial ran")
        # a trial that drew only some of its parameters is drawn again whole, from its own seed: retrying
        # the part it drew would draw the rest in another order, unlike an uninterrupted run
        redraw = REDRAW_ATTR in trial.user_attrs
        if drew_every_parameter(study.user_attrs, trial) or (is_enqueued(trial) and not redraw):
            retry = copy.deepcopy(trial)
            retry.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in RUN_ATTRS}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)(study, retry)
            if len(trial.system_attrs.get("retry_history", [])) >= self.max_retry:
                print(f"{study.study_name}: trial {trial.number}'s configuration was interrupted {self.max_retry + 1} "
                      "times and is not retried again (it may be what stops its worker, e.g. out of memory); "
                      "a fresh trial takes its place in the budget", file=sys.stderr)  # fmt: skip
        else:  # cut off before or while it drew: a new trial makes its draw, with the same seed
            study.enqueue_trial({}, user_attrs={REDRAW_ATTR: trial.user_attrs.get(REDRAW_ATTR, trial.number)})
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and self.tracking_uri:
            from pipeline import tracking  # noqa: PLC0415

            try:
                mlc = tracking.client(self.tracking_uri)
                tracking.set_tags(mlc, run_id, {"state": "FAIL", "reason": "interrupted (worker stopped)"})
                mlc.set_terminated(run_id, status="FAILED")
            except Exception:  # noqa: BLE001 - closing a stale run is best effort
                pass


def is_dead(trial: optuna.trial.FrozenTrial, *, journal: bool, grace: float | None = None) -> bool:
    """Whether RUNNING `trial` was cut off: its worker is a process of this host that has ended; with no
    worker named, it started more than `grace` seconds ago; journal files only: its worker is on
    another host (no heartbeats there: such a trial is left alone). RDB heartbeats are checked apart."""
    worker = trial.user_attrs.get(WORKER_ATTR)
    if worker is None:
        started = trial.datetime_start
        age = (now() - started).total_seconds() if started else 0.0
        return age > (grace_period() if grace is None else grace)
    me = worker_id()
    if worker.get("host") != me["host"] or worker == me:
        return False
    return not worker_alive(worker)


def fail_interrupted(study: optuna.Study, *, journal: bool, tracking_uri: str | None = None) -> int:
    """Fail the trials a crashed run left RUNNING, mark them `interrupted` and retry their configuration.

    A RUNNING trial counts as crashed when `is_dead` says so (its worker, a process of this host,
    has ended: at once) or, with an RDB storage, when its heartbeat is older than the grace period
    (Optuna's `fail_stale_trials`, for workers of other hosts). Their MLflow runs are closed.

    Returns:
        How many trials were failed here.
    """
    running = optuna.trial.TrialState.RUNNING
    n = 0
    if not journal:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(running,))}
        if not before:
            return 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        attrs = study.user_attrs
        n = sum(1 for t in study.get_trials(deepcopy=False)
                if t.number in before and t.state != running and is_interrupted(attrs, t))  # fmt: skip
    on_interrupted = InterruptedTrial(tracking_uri)
    for t in study.get_trials(deepcopy=True, states=(running,)):
        if not is_dead(t, journal=journal):
            continue
        try:
            if not compat.fail_trial(study, t, {"interrupted": True}):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # finished meanwhile (or failed by another resuming process)
        on_interrupted(study, t)
        n += 1
    return n
