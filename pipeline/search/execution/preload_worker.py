"""Imported by a search's fork server (`fork_server`, `worker_pool`): the worker code, once for all workers.

A Ctrl-C while the fork server imports ends it at once with status 130 (the launcher reports the
interrupt): the handler exits from the signal itself, so no library's `except:` around an import can
swallow it. Once it serves, the fork server ignores SIGINT (multiprocessing's own rule), and each
worker it forks puts Python's default SIGINT handler back first (`worker.warm_worker`).
"""

import os
import signal


def _exit_on_ctrl_c(signum, frame):
    os._exit(130)


signal.signal(signal.SIGINT, _exit_on_ctrl_c)

import pipeline.search.execution.worker  # noqa: E402, F401
