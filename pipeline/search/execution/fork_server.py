"""The fork server of a search's worker processes: what it imports, when it starts, and the warm pool.

Within `keep_warm()` (a whole search) each worker slot's process stays up across rounds
(`worker_pool`). The fork server imports the worker code once for all workers (`preload_worker`),
and TensorFlow for the Keras families (`preload_keras`); `start_early` starts it while the
launcher still sets up the stores and the first round.
"""

from __future__ import annotations

from pipeline.search.execution import worker_pool
from pipeline.search.execution.worker import warm_worker


def keep_warm():
    """A context (a whole search) in which each worker slot's process stays up across rounds (`worker_pool`)."""
    return worker_pool.warm_workers(warm_worker)


def preloaded(model: str) -> list[str]:
    """What the fork server of a search of `model` imports once for all its workers (TensorFlow for Keras)."""
    keras = ["pipeline.search.execution.preload_keras"] if model.startswith("keras_") else []
    return ["pipeline.search.execution.preload_worker", *keras]


def start_early(model: str) -> None:
    """Within `keep_warm()`, start the fork server of a search that will use worker processes now, so
    that its imports run while this process sets up the stores and the first round."""
    if worker_pool.current() is not None:
        worker_pool.current().preload(preloaded(model), start=True)
