"""Riding out outages of the Optuna database and the MLflow server: bounded retries, one line per outage.

`call` repeats a storage or tracking call that failed on a connection error with tenacity, backing
off from 0.5 s to 8 s, for at most `retry_s` seconds. Only a search rides out outages: it sets
`search.retry_s` (120 by default) with `configure`; every other command keeps the limit 0 (one try).
An outage that lasts `ANNOUNCE_AFTER_S` prints one line (`PostgreSQL at 127.0.0.1:5432 unreachable,
retrying for 120 s`), its end another (`... back after 7 s`); a shorter blip prints nothing, so one
restart is one outage. Worker processes share their launcher's `Board`, so an outage is announced
once. An outage longer than the limit raises the caller's error class (`StorageError`,
`TrackingError`) with one line (`give_up`): how long it lasted and its first cause. No Optuna, no
MLflow here: the callers say which errors are transient.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import tenacity

from pipeline.errors import TunebenchError
from pipeline.redaction import redact

T = TypeVar("T")
E = TypeVar("E", bound=TunebenchError)
DEFAULT_RETRY_S = 120.0  # `search.retry_s`
SERVICES = ("storage", "tracking")  # the kinds of outage a `Board` keeps apart
BACKOFF = tenacity.wait_exponential(multiplier=0.5, max=8.0)  # seconds between tries: 0.5, doubled up to 8
ANNOUNCE_AFTER_S = 1.0  # failures for this long before an outage is announced (the third try of a call)


class Board:
    """Outages under way, shared by a launcher and its worker processes.

    Per kind (`SERVICES`): when its first failure was seen (0: none) and whether it was announced.
    `shared`: a `multiprocessing` Array of doubles (two per kind) made by the launcher and handed to
    its spawned workers (`shared_board`); None keeps the board in this process only.
    """

    def __init__(self, shared=None):
        self.shared = shared
        self.slots = shared if shared is not None else [0.0] * (2 * len(SERVICES))
        self._lock = shared.get_lock() if shared is not None else threading.Lock()

    @contextlib.contextmanager
    def _locked(self):
        """The board's lock, given up after a second: a worker killed while holding it must not stall the rest."""
        got = self._lock.acquire(timeout=1.0)
        try:
            yield
        finally:
            if got:
                self._lock.release()

    def down(self, kind: str, where: str, retry_s: float) -> None:
        """A call to `where` failed: announce the outage once it has lasted `ANNOUNCE_AFTER_S` (once per outage)."""
        began, announced = 2 * SERVICES.index(kind), 2 * SERVICES.index(kind) + 1
        with self._locked():
            slots, now = self.slots, time.time()
            if slots[began] == 0.0:
                slots[began] = now
            if not slots[announced] and now - slots[began] >= ANNOUNCE_AFTER_S:
                slots[announced] = 1.0
                _say(f"{where} unreachable, retrying for {retry_s:.0f} s")

    def up(self, kind: str, where: str) -> None:
        """A call to `where` got through: the outage is over (announced if it was announced)."""
        began, announced = 2 * SERVICES.index(kind), 2 * SERVICES.index(kind) + 1
        if self.slots[began] == 0.0:  # the common case, without the lock
            return
        with self._locked():
            slots = self.slots
            if slots[announced]:
                _say(f"{where} back after {max(0.0, time.time() - slots[began]):.0f} s")
            slots[began] = slots[announced] = 0.0


def _say(line: str) -> None:
    print(redact(line), file=sys.stderr, flush=True)


# retry_s 0 (fail fast) until a search configures it; gave_up: kind -> when (time.monotonic()) the outage
# given up on began
_settings: dict[str, Any] = {"retry_s": 0.0, "board": None, "gave_up": {}}


def configure(retry_s: float | None = None, board: Board | None = None) -> None:
    """Set this process's retry limit (`search.retry_s`: searches only) and outage board (a worker: its launcher's)."""
    if retry_s is not None:
        _settings["retry_s"] = float(retry_s)
    if board is not None:
        _settings["board"] = board


@contextlib.contextmanager
def scoped() -> Iterator[None]:
    """A search: a retry limit it `configure`s lasts until the block ends (later work in the process fails fast)."""
    before = _settings["retry_s"]
    try:
        yield
    finally:
        _settings["retry_s"] = before


def retry_limit() -> float:
    """Seconds a call is retried through an outage in this process (0 outside a search)."""
    return _settings["retry_s"]


def board() -> Board:
    """This process's outage board (made here, process-local, if no launcher handed one over)."""
    if _settings["board"] is None:
        _settings["board"] = Board()
    return _settings["board"]


def shared_board(ctx) -> Board:
    """This process's board, made shareable with the worker processes of `ctx` (a multiprocessing context)."""
    if board().shared is None:
        _settings["board"] = Board(ctx.Array("d", 2 * len(SERVICES)))
    return board()


def call(fn: Callable[..., T], *args, kind: str, where: str, transient: Callable[[BaseException], bool],
         error: type[TunebenchError], retry_s: float | None = None, **kwargs) -> T:  # fmt: skip
    """`fn(*args, **kwargs)`, repeated while it fails with a `transient` error, for at most `retry_s` seconds.

    Args:
        `kind`: `storage` or `tracking` (one announced outage per kind at a time).
        `where`: the service in messages, e.g. `PostgreSQL at 127.0.0.1:5432` (no credentials).
        `retry_s`: the limit, from the first failed try (default: `retry_limit()`; 0 tries once). Once
            a call of this `kind` gave up, later ones try once until one succeeds: a process that is
            ending because of an outage does not wait through it again in each of its clean-up calls.

    Raises:
        `error`: the outage lasted longer than `retry_s`; its message is one line.
        Any non-transient error of `fn`, as it is.
    """
    gave_up = _settings["gave_up"]
    limit = 0.0 if kind in gave_up else retry_limit() if retry_s is None else retry_s
    began = gave_up.get(kind)  # when the outage began (`time.monotonic()`): its first failed try, or the one given up

    def failed(state: tenacity.RetryCallState) -> None:
        nonlocal began
        began = time.monotonic() if began is None else began
        if limit > 0:
            board().down(kind, where, limit)

    def left() -> float:
        return limit - (time.monotonic() - began)

    def fail(state: tenacity.RetryCallState):
        raise give_up(kind, where, state.outcome.exception(), error, began) from None

    out = tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient), after=failed, stop=lambda state: left() <= 0,
        wait=lambda state: min(BACKOFF(state), max(0.05, left())), sleep=time.sleep, retry_error_callback=fail,
    )(fn, *args, **kwargs)  # fmt: skip
    board().up(kind, where)  # any call that gets through ends an announced outage
    gave_up.pop(kind, None)
    return out


def give_up(kind: str, where: str, exc: BaseException, error: type[E], began: float | None = None) -> E:
    """The one-line `error` that ends the work of this process because `where` stays unreachable.

    It says how long the outage lasted (from `began`, a `time.monotonic()`; None: from when this
    process first gave up on this `kind`, else now) and its cause, the first line of `exc`'s
    innermost error; later calls of this `kind` try once until one succeeds (see `call`).
    """
    now = time.monotonic()
    began = _settings["gave_up"].setdefault(kind, now if began is None else began)
    lasted = f" for {now - began:.0f} s" if now - began >= 1 else ""
    return error(f"{where} unreachable{lasted} ({first_line(exc)}); what was done so far is kept: bring it back "
                 "and rerun the same command to resume")  # fmt: skip


def first_line(exc: BaseException) -> str:
    """The innermost cause's first line (`psycopg2.OperationalError: connection refused ...`), redacted.

    The chain is followed down to an error already reported as a `TunebenchError` (raised while
    handling one, such as a clean-up call during the same outage), not into it.
    """
    inner = exc
    while inner.__cause__ is not None or (inner.__context__ is not None and not inner.__suppress_context__):
        nxt = inner.__cause__ or inner.__context__
        if isinstance(nxt, TunebenchError):
            break
        inner = nxt
    lines = str(inner).strip().splitlines()
    return redact(f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__)[:300]


def chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen
