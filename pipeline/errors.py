"""The errors a user can meet, each printed by the CLI as one `error:` line (no traceback).

Every known failure raises a subclass of `TunebenchError` whose message names the
file, key or URL at fault and what to do. The CLI prints `error: <message>` and
exits with the class's `exit_code`: 2 for bad configuration or usage, 1 for a
failure at run time. `--debug` (or `TUNEBENCH_DEBUG=1`) shows the traceback.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TunebenchError(Exception):
    """A failure the user can fix; the message says what and how. Exit code 1."""

    exit_code = 1


class ConfigError(TunebenchError):
    """A `params.yaml` (or command line) that cannot be used. Exit code 2."""

    exit_code = 2


class MissingInputError(TunebenchError):
    """A stage's input is missing, truncated or corrupt: name it and the stage that rebuilds it."""


class StorageError(TunebenchError):
    """The Optuna storage (journal file or database) cannot be opened or reached."""


class TrackingError(TunebenchError):
    """The MLflow tracking store or server cannot be reached or used."""


class SearchFailedError(TunebenchError):
    """A search ended with no completed trial; the message gives the most common failure reason."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within this block SIGTERM raises `KeyboardInterrupt` as Ctrl-C does, so clean-up code runs.

    Only in the main thread, and only where SIGTERM has its default action (a host program's own
    handler is left alone).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within this block Ctrl-C and SIGTERM wait: they take effect when it ends (main thread only).

    For short steps that must not be cut in the middle, such as creating a trial and naming the
    worker that runs it (a trial cut off in between could not be told from a live one).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda signum, _frame: got.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if got:
            signal.raise_signal(got[0])
