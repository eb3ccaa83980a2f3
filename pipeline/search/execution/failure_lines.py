"""Optuna's log while trials run: warnings only, and a failed trial reported on one line.

Installed when imported (by `worker`, so in the launcher and in every worker process): the
progress bar reports trials instead of Optuna's info lines.
"""

from __future__ import annotations

import logging

import optuna

from pipeline import compat
from pipeline.search.execution.budget import one_line

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials instead


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
