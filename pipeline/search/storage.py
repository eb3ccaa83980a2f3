"""Opening Optuna storages (samplers and pruners: `samplers`; trials cut off by a crash: `execution.stale_trials`).

The default storage is a journal file per benchmark (safe for several local
worker processes); any SQLAlchemy URL (PostgreSQL for many machines) or a
`journal:` path can be given instead. An RDB storage is opened behind
`RetryingStorage`, which rides out database outages of up to `search.retry_s`
seconds, and runs heartbeats (`execution.heartbeats`); a trial whose heartbeat
went stale is handled by `execution.stale_trials.InterruptedTrial`.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import optuna

from pipeline import compat, paths
from pipeline.redaction import redact
from pipeline.errors import StorageError
from pipeline.search.execution.heartbeats import grace_period, heartbeat_interval
from pipeline.search.execution.stale_trials import InterruptedTrial


def is_journal(url: str | None) -> bool:
    """True when `url` names a journal file (None: the default one)."""
    return url is None or url.startswith("journal:")


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
