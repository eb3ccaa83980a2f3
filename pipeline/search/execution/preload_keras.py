"""Imported by a search's fork server (`worker_pool`) after `preload_worker`, whose SIGINT handler still
ends it quietly on a Ctrl-C: worker processes start with TensorFlow loaded.

Only imports: TensorFlow's runtime (thread pools, devices) starts in each worker, at its first
`configure_tensorflow()`, so every worker still sets its own thread count.
"""

from pipeline.models.runtime import _quiet_import_tensorflow

_quiet_import_tensorflow()
import keras  # noqa: E402, F401 - loaded here once, inherited by every forked worker
