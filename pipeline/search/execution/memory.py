"""What a worker process does about memory: releasing it after every trial, and a fresh process now and then.

After every trial the Keras session is cleared and garbage collected, and what survives is frozen
out of the collector's sight (`ReleaseMemory`). That does not stop TensorFlow from keeping ~5 MB
of every model built in a process (`benchmarks/trial_memory.py` measures it), so Keras trials run
in worker processes of at most `TRIALS_PER_PROCESS` trials each when a round has more than that.
"""

from __future__ import annotations

import gc
import os
import sys

import optuna

TRIALS_PER_PROCESS = 50  # Keras families: trials per worker process before a fresh one (see trials_per_process)


def trials_per_process(model: str) -> int:
    """How many trials one worker process runs before a fresh one takes over (0: no limit).

    TensorFlow keeps about 5 MB of every model built in a process, `clear_session` or not
    (tensorflow#36465; measured by `benchmarks/trial_memory.py`), so the Keras families run
    at most `TRIALS_PER_PROCESS` trials a process; other families never need a fresh one.
    `TUNEBENCH_TRIALS_PER_PROCESS` overrides it (0 turns it off).
    """
    env = os.environ.get("TUNEBENCH_TRIALS_PER_PROCESS")
    if env not in (None, ""):
        return max(0, int(env))
    return TRIALS_PER_PROCESS if model.startswith("keras_") else 0


class ReleaseMemory:
    """Trial callback: clear the Keras session (if Keras is loaded) and collect garbage.

    What survives that collection stays for good (TensorFlow, MLflow, the data, and the
    ~9,000 objects of graph state TensorFlow keeps from every model): it is moved out of the
    collector's sight (`gc.freeze`), so each collection only walks what the next trial makes.
    A full collection with TensorFlow loaded took 0.25 s and grew with every trial; frozen,
    0.01 s (a trial pays two: here and in the Keras family's `clear_session`). The first freeze comes
    before the first trial, and the process stays frozen after the loop: unfrozen, the next loop's (the
    next round's) first two collections walked everything again (0.8-1.2 s each).
    """

    def __init__(self) -> None:
        if not gc.get_freeze_count():
            self(None, None)

    def __call__(self, study: optuna.Study | None, trial: optuna.trial.FrozenTrial | None) -> None:
        release_memory()
        gc.freeze()


def release_memory() -> None:
    """Drop what a finished trial left behind: the Keras session (if Keras is loaded) and garbage."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        keras.backend.clear_session()  # also runs gc.collect()
    else:
        gc.collect()
