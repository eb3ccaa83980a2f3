"""What a finished round leaves behind: the summary on its MLflow parent run and its part of
the search result (`results/search/<benchmark>.json`)."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from pipeline import fileio, paths, tracking
from pipeline.config import ParamRange, Params, RoundConfig
from pipeline.search.execution.budget import budget_used
from pipeline.search.plots import write_study_plots  # imported here, in the main thread: its warning filter
from pipeline.search.selection import selected_best
from pipeline.search.spaces import space_to_dict
from pipeline.tracking.superseded import mark_rounds


def log_round_summary(mlc, parent: str, study: optuna.Study, space: dict[str, ParamRange], notes: list[str],
                      budget: int, *, k: int, rnd: RoundConfig, dataset: str, direction: str) -> None:  # fmt: skip
    """Log round `k`'s (0-based) outcome to its parent run: best, counts, compute accounting (`compute.*`,
    as in `metrics/<b>.json`'s `search.rounds`), tags `busy_s` (seconds some trial ran) and `sessions`
    (separate runs of the round: an extended or resumed study), trials table, Optuna plots. The files and the
    run's end are logged in a background thread (`in_background`): `write_result` waits for them."""
    from pipeline import search_summary  # noqa: PLC0415

    counts = state_counts(study)
    outcome = ("complete", "pruned", "fail")  # metrics; what is still running or waiting, and the budget, are tags
    metrics: dict[str, Any] = {f"n_{s}": v for s, v in counts.items() if s in outcome}
    folds = len(fileio.read_json(paths.processed_manifest(dataset)).get("folds") or []) or None
    rows = search_summary.study_rows(study, k + 1, rnd.name, rnd.epochs, folds)
    cost = search_summary.accounting(rows, direction)
    metrics |= {f"compute.{n}": v for n, v in cost.items() if n != "rounds"}
    spans = search_summary.busy_spans(rows)  # the run's own start..end spans every session and the gaps between
    tags: dict[str, Any] = {"narrowing_notes": "\n".join(notes)[:5000], "budget": budget,
                            "budget_used": budget_used(study), "busy_s": round(search_summary.busy_seconds(spans), 1),
                            "sessions": search_summary.sessions(spans)}  # fmt: skip
    tags |= {f"n_{s}": v for s, v in counts.items() if s not in outcome}
    try:
        best = study.best_trial
        metrics["best_value"] = metrics["score"] = best.value  # `score`: the runs table's one sort column
        tags.update({"best_trial": best.number, "best_params": repr(best.params)})
        tracking.log_params(mlc, parent, {f"best.{n}": v for n, v in best.params.items()})
    except (ValueError, Exception) as exc:  # no completed trial, or params already logged on resume
        tags["best_note"] = str(exc)[:500]
    tracking.log_metrics(mlc, parent, metrics)
    tracking.set_tags(mlc, parent, tags)
    status = "FINISHED" if counts.get("complete") else "FAILED"
    in_background(_log_files, mlc, parent, study, space, notes, status)


def _log_files(mlc, parent: str, study: optuna.Study, space: dict[str, ParamRange], notes: list[str],
               status: str) -> None:  # fmt: skip
    """Upload the round's plots, trials table and ranges to its parent run, then end the run with `status`."""
    with tempfile.TemporaryDirectory() as tmp:
        files = write_study_plots(study, Path(tmp), list(space))
        df = study.trials_dataframe()
        df.to_csv(Path(tmp) / "trials.csv", index=False)
        fileio.write_json_atomic(Path(tmp) / "ranges.json", {"ranges": space_to_dict(space), "notes": notes})
        tracking.log_figure_files(mlc, parent, [*files, Path(tmp) / "trials.csv", Path(tmp) / "ranges.json"])
    mlc.set_terminated(parent, status=status)


_pending: list[tuple[threading.Thread, list]] = []  # round files being logged, and the error each ended with


def in_background(fn, *args) -> None:
    """Run `fn(*args)` in a thread while the search goes on (the next round trains meanwhile); `wait_for_files`
    joins it and raises its error. Drawing a round's plots took 1.5-3.5 s, 5-10 % of a small search."""
    error: list = []

    def run() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - raised in the search's thread by `wait_for_files`
            error.append(exc)

    thread = threading.Thread(target=run, name="round-summary", daemon=True)
    _pending.append((thread, error))
    thread.start()


def wait_for_files() -> None:
    """Wait for the rounds' files still being logged (`in_background`); raise the first error one ended with."""
    errors = []
    while _pending:
        thread, error = _pending.pop(0)
        thread.join()
        errors += error
    if errors:
        raise errors[0]


def round_result(study: optuna.Study, rnd: RoundConfig, space: dict[str, ParamRange], notes: list[str],
                 budget: int, hparams_of: Callable[[optuna.trial.FrozenTrial], dict]) -> dict:  # fmt: skip
    """One round of the search result: its study, ranges, notes, budget (readers take the study's trials
    within it, `budget_view`), counts and best trial, with the hyperparameters it trained with (`hparams_of`)."""
    out: dict[str, Any] = {
        "study": study.study_name, "round": rnd.name, "epochs": rnd.epochs, "ranges": space_to_dict(space),
        "notes": notes, "parent_run_id": study.user_attrs.get("mlflow_parent_run_id"),
        "counts": state_counts(study), "budget": budget, "budget_used": budget_used(study),
    }  # fmt: skip
    try:
        b = study.best_trial
        out["best"] = {"value": b.value, "params": b.params, "hparams": hparams_of(b), "trial": b.number,
                       "epoch": b.user_attrs.get("best_epoch", rnd.epochs),
                       "run_id": b.user_attrs.get("mlflow_run_id")}  # fmt: skip
    except ValueError:
        out["best"] = None
    return out


def state_counts(study: optuna.Study) -> dict[str, int]:
    """How many trials of `study` are in each state (`complete`, `pruned`, `fail`, `running`, `waiting`)."""
    trials = study.get_trials(deepcopy=False)
    return {s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState}


def overall_best(rounds: list[dict]) -> dict | None:
    """The last round's best (it trained longest); earlier rounds only if the last has none."""
    for r in reversed(rounds):
        if r["best"] is not None:
            return {**r["best"], "study": r["study"], "round": r["round"]}
    return None


def write_result(params: Params, key: str, direction: str, rounds: list[dict], failure: str | None = None,
                 selection: dict | None = None) -> dict:  # fmt: skip
    """Write `results/search/<key>.json` (with the `failure` when no round has a completed trial); once it has
    a best, the MLflow runs of the benchmark's other studies are tagged superseded (`mark_rounds`).

    With a `selection` (`pipeline.search.selection`), the best is its chosen candidate, scored by its repeats' mean.
    The rounds' files still being logged in the background are waited for first (`wait_for_files`).
    """
    wait_for_files()
    bench = params.benchmark(key)
    best = overall_best(rounds) if selection is None else selected_best(selection, rounds[-1]["round"])
    result: dict[str, Any] = {"benchmark": key, "dataset": bench.dataset, "model": bench.model, "direction": direction,
                              "rounds": rounds, "best": best}  # fmt: skip
    if selection is not None:
        result["selection"] = selection
    if failure is not None:
        result["failure"] = failure
    fileio.write_json_atomic(paths.search_result(key), result)
    if failure is None:
        mark_rounds(tracking.client(params.tracking_uri()), tracking.experiment_name(key, bench.dataset, bench.model),
                    [r["study"] for r in rounds])  # fmt: skip
    return result
