"""The errors a user can meet, each printed by the CLI as one `error:` line (no traceback).

Every known failure raises a subclass of `TunebenchError` whose message names the
file, key or URL at fault and what to do. The CLI prints `error: <message>` and
exits with the class's `exit_code`: 2 for bad configuration or usage, 1 for a
failure at run time. `--debug` (or `TUNEBENCH_DEBUG=1`) shows the traceback.
"""

from __future__ import annotations


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
