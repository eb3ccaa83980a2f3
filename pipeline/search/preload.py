"""Imported by a search's fork server (`pipeline.search.pool`): the worker code, once for all workers.

A Ctrl-C while the fork server imports ends it quietly (the launcher reports the interrupt); once
it has started serving, the fork server ignores SIGINT and its workers handle it themselves.
"""

import os

try:
    import pipeline.search.workers  # noqa: F401
except KeyboardInterrupt:
    os._exit(130)
