"""Opening Optuna storages, and handling trials cut off by a crash (samplers and pruners: `samplers`).

The default storage is a journal file per benchmark (safe for several local
worker processes); any SQLAlchemy URL (PostgreSQL for many machines) or a
`journal:` path can be given instead. An RDB storage is opened behind
`RetryingStorage`, which rides out database outages of up to `search.retry_s`
seconds, and runs heartbeats. A RUNNING trial counts as cut off by a crash
(`fail_interrupted`) when its worker is a process of this host that no longer
lives (at once, any storage), when its heartbeat is older than the grace period
(RDB: workers of other hosts), or when it never named its worker and started
longer than the grace period ago. The cut-off trial is marked interrupted (user
attr `interrupted`, or study user attr `interrupted.<number>` where the storage
no longer lets a failed trial be annotated), does not count against the budget,
its MLflow run is closed, and its parameters are enqueued once again
(`RetryHeartbeatStaleTrialCallback`, the successor of Optuna's
`RetryFailedTrialCallback`), so an interrupted configuration is retried, not lost; a trial cut
off before or while it drew its parameters is drawn again whole, from its own seed.
"""

from __future__ import annotations

import copy
import datetime
import os
import sys
import time
import warnings
from pathlib import Path

import optuna

from pipeline import compat, paths, retry
from pipeline.processes import worker_alive, worker_id
from pipeline.redaction import redact
from pipeline.errors import StorageError

HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats (RDB storages)
GRACE_PERIOD = 120  # seconds without a heartbeat before a RUNNING trial counts as crashed (at least: `grace_period`)
GRACE_MARGIN = 30  # seconds the grace period keeps beyond a heartbeat interval plus an outage ridden out
MAX_RETRY = 3  # an interrupted configuration is retried this often (one that keeps killing its worker stops there)
WORKER_ATTR = "worker"  # user attr: where the trial runs, so a resume tells live trials from dead ones
INTERRUPTED_PREFIX = "interrupted."  # study user attr `interrupted.<trial number>`: cut off by a crash
REDRAW_ATTR = "redraw_of"  # user attr: this trial draws what interrupted trial <n> never drew (`samplers`)
RUN_ATTRS = (WORKER_ATTR, "mlflow_run_id", "pruned_at_epoch", "pruned_at_fold", "best_epoch", "interrupted")
now = datetime.datetime.now  # the clock `is_dead` ages a trial without a worker by (tests move it on)


def is_journal(url: str | None) -> bool:
    """True when `url` names a journal file (None: the default one)."""
    return url is None or url.startswith("journal:")


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


def open_storage(url: str | None, benchmark: str, *, tracking_uri: str | None = None,
                 wait: bool = True) -> optuna.storages.BaseStorage:  # fmt: skip
    """Open the storage at `url`, or the benchmark's default journal file when `url` is None.

    Args:
        `url`: None, `journal:<path>`, or an SQLAlchemy URL (`sqlite:///...`, `postgresql://...`).
        `benchmark`: names the default journal file.
        `tracking_uri`: where the MLflow runs of trials found stale by a heartbeat get closed (RDB only).
        `wait`: ride out a database outage of up to `search.retry_s` while opening (False: the
            preflight, which fails at once).
    """
    from optuna.storages import JournalStorage, RDBStorage  # noqa: PLC0415

    from pipeline.search.journal import SafeJournalFileBackend  # noqa: PLC0415

    if is_journal(url):
        path = Path(url.removeprefix("journal:")) if url else paths.journal_file(benchmark)
        if url is not None and not url.removeprefix("journal:"):
            raise _bad_url(url, "no path after `journal:`")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(SafeJournalFileBackend(path))  # appends all or nothing (a full disk)
    import sqlalchemy.exc  # noqa: PLC0415

    from pipeline.search.retrying_storage import RetryingStorage, call, describe_server  # noqa: PLC0415

    full = sqlalchemy_url(url)
    engine_kwargs = {"pool_pre_ping": True, "connect_args": _connect_args(url)}
    where = describe_server(url)

    def rdb() -> RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                full, heartbeat_interval=heartbeat_interval(), grace_period=grace_period(),
                heartbeat_stale_trial_callback=InterruptedTrial(tracking_uri), engine_kwargs=engine_kwargs,
            )  # fmt: skip

    try:
        for attempt in range(SCHEMA_RACE_RETRIES + 1):
            try:
                return RetryingStorage(compat.cached_storage(call(where, rdb) if wait else rdb()), where)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # launchers that start together on a new database race to create Optuna's tables: the
                # loser's CREATE fails on what the winner just made, and opening again finds them
                if attempt == SCHEMA_RACE_RETRIES:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise _bad_url(url, _first_line(exc)) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        check = "that the file's folder exists and is writable" if full.startswith("sqlite") else \
            "that the database server is running and reachable"  # fmt: skip
        raise StorageError(
            f"cannot open the Optuna storage {redact(url)}: {redact(_first_line(getattr(exc, 'orig', None) or exc))}; "
            f"check {check}, and the URL ({_source(url)})"
        ) from None


CONNECT_TIMEOUT = 10  # seconds a database server gets to accept a connection
SCHEMA_RACE_RETRIES = 4  # reopenings after losing the race to create the tables of a new database


def _connect_args(url: str) -> dict:
    """Driver arguments that bound how long connecting to a database server may take."""
    scheme = url.partition("://")[0].partition("+")[0]
    if scheme in ("postgresql", "postgres", "mysql", "mariadb") and "connect_timeout" not in url:
        return {"connect_timeout": CONNECT_TIMEOUT}
    return {}


def _first_line(exc: BaseException | str) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _source(url: str) -> str:
    """Where a storage URL came from, for error messages."""
    return "TUNEBENCH_STORAGE" if os.environ.get("TUNEBENCH_STORAGE") == url else "--storage or `search.storage`"


def _bad_url(url: str, why: str) -> StorageError:
    return StorageError(
        f"Optuna storage URL {redact(url)!r} ({_source(url)}) cannot be used: {redact(why)}; use `journal:<path>`, "
        "`sqlite:///<path>` or `postgresql://<user>@<host>:<port>/<db>` (password in TUNEBENCH_STORAGE, never in "
        "params.yaml), or leave it unset for the journal file in studies/<benchmark>/"
    )


def describe(url: str | None, benchmark: str) -> dict:
    """What `studies/<benchmark>/storage.json` says about where the studies live (no credentials)."""
    if is_journal(url):
        path = Path(url.removeprefix("journal:")) if url else paths.journal_file(benchmark)
        return {"kind": "journal", "file": str(path)}
    return {"kind": url.partition("://")[0].partition("+")[0], "url": redact(url)}


def sqlalchemy_url(url: str) -> str:
    """`url` with the PostgreSQL driver that is installed named, when it names none.

    SQLAlchemy 2.1 maps a bare `postgresql://` (and nothing maps `postgres://`) to psycopg 3,
    while the project installs psycopg2; an explicit `postgresql+driver://` is kept as given.
    """
    import importlib.util  # noqa: PLC0415

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    has = {name: importlib.util.find_spec(name) is not None for name in ("psycopg", "psycopg2")}
    if scheme == "postgresql" and has["psycopg"]:
        return url  # SQLAlchemy's own default works
    return f"postgresql+{'psycopg2' if has['psycopg2'] else 'psycopg'}://{rest}"


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
