"""Robust selection: the search's top configurations trained again with fresh seeds, the best chosen by the mean.

The best validation score of a search is the maximum over many noisy trials, so it flatters its
configuration, and the more trials the more it does (a 36-configuration Boston search chose a
configuration whose 4-fold MAE of 2.21 was partly luck: retrained, it scored 3.2 on the test set).
After the last round, its `selection.top_k` best distinct configurations are each trained
`selection.repeats` more times at the round's epochs, with fresh seeds and, on K-fold data, folds
reshuffled with a fresh seed (repeated K-fold). The search's best is the candidate with the best
mean over those repeats; the trial's own score, the draw being checked, is left out of the mean.

Every repeat's score is saved as it ends (`studies/<b>/selection.json`, keyed by the last round's
study and the candidate, so a rerun resumes and a changed search starts over) and logged to the
benchmark's `select` MLflow run; its cost (epochs and seconds) is reported as its own phase.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import optuna

from pipeline import fileio, paths, tracking
from pipeline.config import Params
from pipeline.search.objective import best_of, mean_history, trial_hparams
from pipeline.tasks import task_metric

SEED_STRIDE = 1000  # repeat r trains with seeds seed + 1000 * r (+ fold), far from the trials' seed + fold


def candidates(study: optuna.Study, direction: str, k: int) -> list[optuna.trial.FrozenTrial]:
    """The `k` best completed trials of `study` with distinct configurations, best first."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None]  # fmt: skip
    done.sort(key=lambda t: (-t.value if direction == "maximize" else t.value, t.number))
    out, seen = [], set()
    for t in done:
        key = json.dumps(t.params, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out[:k]


def score_repeat(family, hparams: dict, data, *, epochs: int, seed: int, fold_seed: int | None) -> tuple[float, int]:
    """Train one configuration as a trial does (every fold on K-fold data, reshuffled with `fold_seed`) and
    return its best validation score and epoch (of the mean curve over folds)."""
    from pipeline.features import holdout_or_folds  # noqa: PLC0415
    from pipeline.features.splits import kfold  # noqa: PLC0415

    metric, direction = task_metric(data.task)
    if data.folds is not None and fold_seed is not None:
        classify = data.task != "regression"
        stratify = bool(data.params.get("stratify", classify))
        data = replace(data, folds=kfold(data.y_train, len(data.folds), fold_seed, stratify=stratify,
                                         classify=classify))  # fmt: skip
    histories = []
    for fold, (x_tr, y_tr, x_va, y_va) in enumerate(holdout_or_folds(data)):
        trained = family.train(hparams, x_tr, y_tr, x_va, y_va, task=data.task, n_classes=data.n_classes,
                               epochs=epochs, seed=seed + fold)  # fmt: skip
        histories.append(trained.history)
    history = mean_history(histories) if len(histories) > 1 else histories[0]
    return best_of(history[f"val_{metric}"], direction)


def run_selection(params: Params, key: str, study: optuna.Study, direction: str) -> dict | None:
    """Train the last round's top configurations `repeats` more times; return the selection's record (None when
    `selection.repeats` is 0 or the round has no completed trial)."""
    from pipeline.features import ProcessedData  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415

    bench = params.benchmark(key)
    sel, rnd = bench.selection, bench.rounds[-1]
    found = candidates(study, direction, sel.top_k)
    if sel.repeats == 0 or not found:
        return None
    data = ProcessedData.load(paths.processed_dir(bench.dataset))
    family = get_family(bench.model)
    metric, _ = task_metric(data.task)
    cache_file = paths.study_dir(key) / "selection.json"
    cache = fileio.read_json(cache_file) if cache_file.exists() else {}
    if cache.get("study") != study.study_name:
        cache = {"study": study.study_name, "scores": {}}
    preprocess_seed = int(data.params.get("seed", 0))
    folds, total, ran = max(1, len(data.folds or [])), len(found) * sel.repeats, False
    rows = []
    for i, t in enumerate(found):
        hparams = trial_hparams(t, bench.model, data.task, bench.hparams)
        done = cache["scores"].setdefault(str(t.number), [])
        for r in range(len(done), sel.repeats):
            step, started = SEED_STRIDE * (r + 1), time.monotonic()
            value, epoch = score_repeat(family, hparams, data, epochs=rnd.epochs, seed=bench.seed + step,
                                        fold_seed=preprocess_seed + step)  # fmt: skip
            done.append({"value": value, "epoch": epoch, "wall_s": round(time.monotonic() - started, 2)})
            fileio.write_json_atomic(cache_file, cache)
            ran = True
            print(f"{key}: selection {i * sel.repeats + r + 1}/{total}: trial {t.number} repeat {r + 1} "
                  f"val_{metric}={value:.4g}", file=sys.stderr, flush=True)  # fmt: skip
        values = [d["value"] for d in done]
        rows.append({"trial": t.number, "study": study.study_name, "params": t.params, "hparams": hparams,
                     "search_value": t.value, "scores": values, "epochs": [d["epoch"] for d in done],
                     "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "run_id": t.user_attrs.get("mlflow_run_id")})  # fmt: skip
    sign = -1 if direction == "maximize" else 1  # the best mean; a tie goes to the better-ranked candidate
    chosen = min(range(len(rows)), key=lambda j: (sign * rows[j]["mean"], j))
    repeats = [d for t in found for d in cache["scores"][str(t.number)]]
    record = {
        "top_k": sel.top_k,
        "repeats": sel.repeats,
        "candidates": rows,
        "chosen": chosen,
        "epochs": len(repeats) * rnd.epochs * folds,
        "wall_s": round(sum(d["wall_s"] for d in repeats), 1),
    }
    if ran or not cache.get("run_id"):  # a rerun with nothing new to train logs no second run
        cache["run_id"] = _log(params, key, record, metric)
        fileio.write_json_atomic(cache_file, cache)
    return record | {"run_id": cache["run_id"]}


def selected_best(record: dict, round_name: str) -> dict[str, Any]:
    """The search result's `best` from a selection record: the chosen candidate, scored by its repeats' mean."""
    c = record["candidates"][record["chosen"]]
    return {"value": c["mean"], "params": c["params"], "hparams": c["hparams"], "trial": c["trial"],
            "study": c["study"], "round": round_name, "epoch": int(statistics.median_low(c["epochs"])),
            "run_id": c["run_id"],
            "selected_by": f"mean of {len(c['scores'])} repeats, top {record['top_k']}"}  # fmt: skip


def _log(params: Params, key: str, record: dict, metric: str) -> str:
    """One MLflow run `select · <benchmark>`: each candidate's repeats (step = repeat) and mean, the choice.
    Returns its id."""
    bench = params.benchmark(key)
    mlc = tracking.client(params.tracking_uri())
    experiment_id = tracking.ensure_experiment(mlc, tracking.experiment_name(key, bench.dataset, bench.model))
    chosen = record["candidates"][record["chosen"]]
    run_id = tracking.start_run(mlc, experiment_id, f"select · {key}", tags={
        "kind": "selection", "benchmark": key, "study_name": chosen["study"], "chosen_trial": chosen["trial"],
        "mlflow.note.content": f"{key}: the last round's top {record['top_k']} configurations trained "
        f"{record['repeats']} more times with fresh seeds; trial {chosen['trial']} has the best mean"})  # fmt: skip
    try:
        tracking.log_params(mlc, run_id, {f"t{c['trial']}.{n}": v for c in record["candidates"]
                                          for n, v in c["params"].items()})  # fmt: skip
        for c in record["candidates"]:
            for r, v in enumerate(c["scores"], start=1):
                tracking.log_metrics(mlc, run_id, {f"t{c['trial']}.val_{metric}": v}, step=r)
            tracking.log_metrics(mlc, run_id, {f"t{c['trial']}.mean_val_{metric}": c["mean"]})
        tracking.log_metrics(mlc, run_id, {f"mean_val_{metric}": chosen["mean"], "selection_epochs": record["epochs"],
                                           "selection_wall_s": record["wall_s"]})  # fmt: skip
    except BaseException:
        mlc.set_terminated(run_id, "FAILED")
        raise
    mlc.set_terminated(run_id, "FINISHED")
    return run_id
