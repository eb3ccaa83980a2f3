"""How many worker processes and TensorFlow threads a search uses (`search.workers: auto`, the default).

`auto` uses every core, and chooses between parallel trials and threads from the model and
the rounds:

* a big model (`keras_cnn`, or `BIG_INPUT` or more input values an example) spends its time
  per epoch, where intra-op threads help: one worker with every core's thread;
* a small model spends its time per trial (model building, graph tracing, tracking), where
  threads change nothing: as many workers as cores, but no more than the trials of a round
  that may run at once without changing what the round finds. TPE after its startup trials,
  and every pruner but `none`, decide from the trials finished before: run in parallel, which
  trials those are depends on timing, and the search would not be reproducible. Those rounds
  run one trial at a time (then with every core's thread); `--workers N` trades that for speed.

Threads: `TUNEBENCH_THREADS` when set, else cores // workers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.models.runtime import cores

AUTO = "auto"
BIG_INPUT = 100_000  # input values an example from which a Keras model's time goes to its epochs (threads)
ORDER_FREE_SAMPLERS = ("random", "grid")  # samplers whose draws do not depend on the trials finished before


def threads_for(workers: int, n_cores: int | None = None) -> int:
    """TensorFlow threads of each of `workers` processes: `TUNEBENCH_THREADS`, else cores // workers."""
    env = os.environ.get("TUNEBENCH_THREADS")
    if env not in (None, ""):
        return max(1, int(env))
    return max(1, (n_cores or cores()) // max(1, workers))


def input_shape(manifest: Path) -> tuple[int, ...] | None:
    """The shape of one example, from a processed-data manifest (None when it cannot be read)."""
    try:
        return tuple(json.loads(manifest.read_text())["features"]["X_train"]["shape"][1:])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def order_free_trials(rnd, sampler: str) -> int:
    """How many trials of round `rnd` may run at once without changing its results (1: one at a time)."""
    if (rnd.sampler or sampler) in ORDER_FREE_SAMPLERS and rnd.pruner == "none":
        return rnd.n_trials
    return 1


@dataclass(frozen=True)
class Choice:
    """The workers and threads of a search, and why."""

    workers: int
    threads: int
    why: str

    def line(self, key: str, verbose: bool | None = None) -> str:
        """The search's first line: `search B: 1 worker x 2 threads`, and why (`(auto: 2 cores; ...)`) when
        `verbose` (default: `--verbose` or TUNEBENCH_VERBOSE=1)."""
        w, t = self.workers, self.threads
        if verbose is None:
            verbose = os.environ.get("TUNEBENCH_VERBOSE", "") not in ("", "0")
        why = f" ({self.why})" if verbose else ""
        return f"search {key}: {w} worker{'s' * (w != 1)} x {t} thread{'s' * (t != 1)}{why}"


def choose(requested: int | str | None, *, model: str, input_shape: Sequence[int] | None, rounds: Sequence,
           sampler: str, n_cores: int | None = None) -> Choice:  # fmt: skip
    """The workers and threads for `requested` workers (`auto`, or a number from params.yaml / `--workers`)."""
    n = n_cores or cores()
    env = os.environ.get("TUNEBENCH_THREADS") not in (None, "")
    thread_note = "; threads from TUNEBENCH_THREADS" if env else ""
    if requested not in (None, AUTO):
        workers = int(requested)
        return Choice(workers, threads_for(workers, n), f"set by --workers or search.workers; {n} cores{thread_note}")
    size = math.prod(input_shape) if input_shape else 0
    if model == "keras_cnn" or size >= BIG_INPUT:
        why = f"auto: {n} cores; a big model's time goes to its epochs: threads"
        return Choice(1, threads_for(1, n), why + thread_note)
    free = min((order_free_trials(r, sampler) for r in rounds), default=1)
    workers = max(1, min(n, free))
    if workers < n:
        why = (f"auto: {n} cores; rounds that prune or sample from earlier trials run one trial at a time to stay "
               "reproducible, --workers N for parallel trials")  # fmt: skip
    else:
        why = f"auto: {n} cores, parallel trials"
    return Choice(workers, threads_for(workers, n), why + thread_note)
