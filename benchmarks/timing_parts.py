"""Timers around the parts of a search, for `python -m benchmarks.overhead --instrumented` (measurement only).

Each part's time (wall and CPU seconds of the whole process, TensorFlow's threads included) is
exclusive: a timed call inside another timed call counts to its own part only. `other` is the
rest of the search call (study and run set-up, narrowing, budget checks).
"""

from __future__ import annotations

import functools
import time

PARTS = {
    "tensorflow import": [("pipeline.models.runtime", "_quiet_import_tensorflow")],
    "data load (npz, checksums)": [("pipeline.features.processed:ProcessedData", "load")],
    "tf.data building": [("pipeline.models.keras_common", "make_dataset")],
    "Keras build, compile, fit": [("pipeline.models.keras_common:KerasFamily", "train")],
    "Optuna storage (journal)": [("optuna.study:Study", "ask"), ("optuna.study:Study", "tell"),
                                 ("optuna.trial:Trial", "report"), ("optuna.trial:Trial", "should_prune"),
                                 ("optuna.trial:Trial", "set_user_attr"), ("optuna.study:Study", "get_trials")],
    "MLflow tracking per trial": [*(("pipeline.tracking:TrialRun", n) for n in (
        "__init__", "log_epoch", "finish", "log_dataset")), ("pipeline.tracking", "log_params")],
    "MLflow store and round runs": [("pipeline.tracking", n) for n in (
        "check_reachable", "client", "ensure_experiment", "close_orphan_runs", "start_run", "log_dataset", "reopen_run",
        "log_metrics", "set_tags", "log_figure_files")],
    "Optuna studies (open, create, interrupted trials)": [
        ("optuna", "create_study"), ("optuna", "load_study"), ("pipeline.search.execution.worker", "open_storage"),
        ("pipeline.search.rounds", "open_storage"), ("pipeline.search.execution.worker", "fail_interrupted"),
        ("pipeline.search.rounds", "fail_interrupted"), ("pipeline.search.execution.resume", "fail_interrupted"),
        ("pipeline.search.execution.dispatch", "fail_interrupted")],
    "memory release": [("pipeline.search.execution.memory", "release_memory")],
    "round summary: Optuna plots, trials table": [("pipeline.search.round_summary", "log_round_summary")],
}  # fmt: skip


def install() -> dict[str, list[float]]:
    """Wrap every part's functions; returns the dict their exclusive [wall, CPU] seconds accumulate in."""
    import importlib  # noqa: PLC0415

    totals = {part: [0.0, 0.0] for part in PARTS}
    stack: list[list[float]] = []  # [wall, CPU] seconds spent in nested timed calls, per open timed call

    def wrap(part: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            stack.append([0.0, 0.0])
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = (time.perf_counter() - t0, time.process_time() - c0)
                nested = stack.pop()
                for i in (0, 1):
                    totals[part][i] += spent[i] - nested[i]
                    if stack:
                        stack[-1][i] += spent[i]

        return timed

    for part, targets in PARTS.items():
        for where, name in targets:
            module, _, cls = where.partition(":")
            owner = importlib.import_module(module)
            owner = getattr(owner, cls) if cls else owner
            raw = owner.__dict__[name]
            if isinstance(raw, classmethod):
                setattr(owner, name, classmethod(wrap(part, raw.__func__)))
            else:
                setattr(owner, name, wrap(part, raw))
    return totals
