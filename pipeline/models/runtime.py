"""Process-wide runtime settings: quiet, thread-capped TensorFlow imported lazily."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

_configured = False


def configure_tensorflow(threads: int | None = None) -> None:
    """Import TensorFlow once, silence it and cap its thread pools.

    Args:
        `threads`: intra- and inter-op threads for this process; default from
            `TUNEBENCH_THREADS`, else every core of the machine (a search's worker
            processes get their share: `pipeline.search.execution.concurrency`).
    """
    global _configured
    if _configured:
        return
    n = int(threads or os.environ.get("TUNEBENCH_THREADS") or cores())
    tf = _quiet_import_tensorflow()

    tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # already initialised by an earlier import
        pass
    _configured = True


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _quiet_import_tensorflow():
    """Import TensorFlow with the C++ start-up banner (absl, oneDNN notices) sent to /dev/null.

    Those lines are printed by native code while TensorFlow loads, before
    `TF_CPP_MIN_LOG_LEVEL` takes effect; Python errors still surface as exceptions.
    """
    import sys  # noqa: PLC0415

    if "tensorflow" in sys.modules:  # imported, or being imported by another thread: the import statement waits for it
        import tensorflow as tf  # noqa: PLC0415

        return tf
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf  # noqa: PLC0415 - deliberately lazy

        return tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
