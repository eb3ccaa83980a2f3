"""An Optuna storage that rides out database outages: every call retried on connection errors.

`RetryingStorage` wraps an RDB storage (with Optuna's trial cache in front of it) and repeats a
call that failed because the database was unreachable (`is_transient`), for at most
`search.retry_s` seconds, printing one line per outage (`pipeline.retry`). Reads and the
writes used here are safe to repeat: attributes and intermediate values overwrite, and a state
change that landed before the connection broke is recognised on the repeat (the trial is
already in that state) instead of failing as "finished". A heartbeat that cannot be recorded
through an outage is skipped, never raised in the heartbeat thread.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import optuna
from optuna.storages import BaseStorage

from pipeline import compat, retry
from pipeline.errors import StorageError
from pipeline.redaction import redact

_NOT_TRANSIENT = ("authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied")
_DB_NAMES = {"postgresql": "PostgreSQL", "postgres": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB"}


def is_transient(exc: BaseException) -> bool:
    """True for a lost or refused database connection (or a server starting or stopping), not for bad SQL."""
    import sqlalchemy.exc  # noqa: PLC0415

    for e in retry.chain(exc):
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return not any(s in str(e).lower() for s in _NOT_TRANSIENT)
    return False


def describe_server(url: str) -> str:
    """The database in outage messages: `PostgreSQL at 127.0.0.1:5432`, or `the Optuna database <url>`."""
    parts = urlsplit(url)
    scheme = parts.scheme.partition("+")[0].lower()
    if scheme in _DB_NAMES:
        try:
            port = parts.port
        except ValueError:
            port = None
        return f"{_DB_NAMES[scheme]} at {parts.hostname or 'localhost'}:{port or ''}".rstrip(":")
    return f"the Optuna database {redact(url)}"


def call(where: str, fn: Callable, *args, **kwargs) -> Any:
    """`fn(*args, **kwargs)` retried through an outage of the database `where` (see `pipeline.retry.call`)."""
    return retry.call(fn, *args, kind="storage", where=where, transient=is_transient, error=StorageError, **kwargs)


class RetryingStorage(BaseStorage, compat.heartbeat_base()):
    """`inner` (an RDB storage behind Optuna's cache) with every call retried through outages.

    Args:
        `where`: the database in messages (`describe_server`).
    """

    def __init__(self, inner: BaseStorage, where: str):
        self._inner = inner
        self._where = where

    def set_trial_state_values(self, trial_id: int, state, values=None) -> bool:
        """Set a trial's state; a repeat that finds the state already set (its first try landed) succeeds."""
        tries = [0]

        def attempt() -> bool:
            tries[0] += 1
            try:
                return self._inner.set_trial_state_values(trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                if tries[0] > 1:
                    landed = self._inner.get_trial(trial_id)
                    if landed.state == state and (values is None or list(landed.values or []) == list(values)):
                        return True
                raise

        return call(self._where, attempt)

    def record_heartbeat(self, trial_id: int) -> None:
        """Record a running trial's heartbeat; skipped (the outage is reported elsewhere) if the database stays away."""
        try:
            call(self._where, self._inner.record_heartbeat, trial_id)
        except StorageError:
            pass


_RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "create_new_trial", "set_trial_param", "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id", "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials", "get_best_trial", "get_trial_params",
    "get_trial_user_attrs", "get_trial_system_attrs", "_get_stale_trial_ids",
)  # fmt: skip
_FORWARDED = ("get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "remove_session")  # no query to retry


def _delegated(name: str) -> Callable:
    """`name` of the wrapped storage, retried through outages if it is in `_RETRIED`."""

    def method(self: RetryingStorage, *args, **kwargs):
        fn = getattr(self._inner, name)
        return call(self._where, fn, *args, **kwargs) if name in _RETRIED else fn(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"`{name}` of the wrapped storage" + (", retried through outages." if name in _RETRIED else ".")
    return method


for _name in _RETRIED + _FORWARDED:
    setattr(RetryingStorage, _name, _delegated(_name))
abc.update_abstractmethods(RetryingStorage)
