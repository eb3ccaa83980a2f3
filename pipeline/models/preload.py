"""Imported by a search's fork server (`pipeline.search.pool`): worker processes start with TensorFlow loaded.

Only imports: TensorFlow's runtime (thread pools, devices) starts in each worker, at its first
`configure_tensorflow()`, so every worker still sets its own thread count. A Ctrl-C during these
seconds of imports ends the fork server quietly (the launcher reports the interrupt).
"""

import os

try:
    from pipeline.models.runtime import _quiet_import_tensorflow

    _quiet_import_tensorflow()
    import keras  # noqa: F401 - loaded here once, inherited by every forked worker
except KeyboardInterrupt:
    os._exit(130)
