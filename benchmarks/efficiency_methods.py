"""The search methods `search_efficiency.py` compares, each run the way its users run it.

Every method searches the same problem (model family, data split, space) within the same
total epoch budget and records, after every trial, the epochs trained so far, the seconds
since it began and the trial's validation score (`Trace`). All but tunebench run in this
process with the same model code (`family.build_model`, `make_dataset`): unpruned random
search and a hand-written Optuna TPE study with a median pruner, and Keras Tuner's
Hyperband and RandomSearch. tunebench runs as users run it: `tunebench search` in a
project of its own (journal storage, MLflow tracking and logged models included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import yaml

from benchmarks import ROOT


@dataclass
class Problem:
    """One search problem: a processed dataset, a model family, its fixed values and searched space."""

    name: str
    dataset: str
    model: str
    fixed: dict
    space: dict  # name -> params.yaml range ({low, high, log, int} or {choices})
    epochs: int  # a full trial
    preprocess: dict  # the dataset's params.yaml entry (tunebench's project needs it)
    project: Path = ROOT  # where data/processed/<dataset> is (`dvc repro` made it)


@dataclass
class Trace:
    """What a method did: per finished trial (epochs so far, seconds so far, score or None, its
    configuration), and its best."""

    epochs: int = 0
    events: list = field(default_factory=list)
    best_params: dict | None = None
    best_value: float | None = None
    wall_s: float = 0.0
    rounds: list | None = None  # tunebench: the schedule it ran
    selection: dict | None = None  # tunebench: its robust selection (top_k, repeats, epochs), when it ran
    t0: float = field(default_factory=time.perf_counter)

    def trial_done(self, value: float | None, params: dict | None = None) -> None:
        """Record a finished trial (None: pruned or failed, not a candidate for the best)."""
        self.events.append((self.epochs, round(time.perf_counter() - self.t0, 2), value, params))

    def within(self, budget: int, direction: str) -> Trace:
        """This trace cut at `budget` epochs: the trials that finished within it and their best."""
        cut = Trace(events=[e for e in self.events if e[0] <= budget], rounds=self.rounds)
        cut.epochs = cut.events[-1][0] if cut.events else 0
        cut.wall_s = cut.events[-1][1] if cut.events else 0.0
        for _, _, value, params in cut.events:
            if value is not None and _better(value, cut.best_value, direction):
                cut.best_value, cut.best_params = value, params
        return cut


def direction_of(data) -> tuple[str, str]:
    """The validation metric and its direction for the data's task."""
    from pipeline.tasks import task_metric  # noqa: PLC0415

    return task_metric(data.task)


def _better(a: float, b: float | None, direction: str) -> bool:
    return b is None or (a > b if direction == "maximize" else a < b)


def _suggest(trial: optuna.Trial, space: dict) -> dict:
    out = {}
    for name, r in space.items():
        if "choices" in r:
            out[name] = trial.suggest_categorical(name, r["choices"])
        elif r.get("int"):
            out[name] = trial.suggest_int(name, int(r["low"]), int(r["high"]), log=r.get("log", False))
        else:
            out[name] = trial.suggest_float(name, r["low"], r["high"], log=r.get("log", False))
    return out


def _train_folds(problem: Problem, data, params: dict, seed: int, trace: Trace, on_fold=None, on_epoch=None):
    """Train one configuration on the holdout split or every fold; returns the (mean) best validation score."""
    from pipeline.features import holdout_or_folds  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415
    from pipeline.models.hparams import resolve_hparams  # noqa: PLC0415

    metric, direction = direction_of(data)
    family = get_family(problem.model)
    hp = resolve_hparams(problem.model, data.task, problem.fixed, params)
    scores = []
    for fold, (x_tr, y_tr, x_va, y_va) in enumerate(holdout_or_folds(data)):

        def count(epoch, logs, fold=fold):
            trace.epochs += 1
            if on_epoch is not None:
                on_epoch(epoch, logs[f"val_{metric}"])

        trained = family.train(
            hp,
            x_tr,
            y_tr,
            x_va,
            y_va,
            task=data.task,
            n_classes=data.n_classes,
            epochs=problem.epochs,
            seed=seed + fold,
            on_epoch=count,
        )
        curve = trained.history[f"val_{metric}"]
        scores.append(max(curve) if direction == "maximize" else min(curve))
        if on_fold is not None:
            on_fold(fold, float(np.mean(scores)))
    return float(np.mean(scores))


def run_optuna(problem: Problem, data, budget: int, seed: int, *, tpe: bool, hyperband: bool = False) -> Trace:
    """Plain Optuna as a user writes it: TPE with a median pruner (`tpe`), TPE with Optuna's Hyperband pruner
    from one report to a full trial (`hyperband`, the BOHB-like pairing), or unpruned random search."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, direction = direction_of(data)
    kfold = data.folds is not None
    steps = len(data.folds) if kfold else problem.epochs  # a trial reports per fold with folds, else per epoch
    sampler = optuna.samplers.TPESampler(seed=seed) if tpe else optuna.samplers.RandomSampler(seed=seed)
    if hyperband:
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps, reduction_factor=3)
    else:
        pruner = optuna.pruners.MedianPruner() if tpe else optuna.pruners.NopPruner()
    study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
    trace = Trace()
    full = problem.epochs * (len(data.folds) if kfold else 1)
    while trace.epochs + full <= budget:
        trial = study.ask()
        params = _suggest(trial, problem.space)

        def report(step, value, trial=trial):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            value = _train_folds(
                problem,
                data,
                params,
                seed,
                trace,
                on_fold=report if kfold else None,
                on_epoch=None if kfold else report,
            )
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            trace.trial_done(None)
            continue
        study.tell(trial, value)
        trace.trial_done(value, params)
        if _better(value, trace.best_value, direction):
            trace.best_value, trace.best_params = value, params
    trace.wall_s = round(time.perf_counter() - trace.t0, 1)
    return trace


def _kt_hyperparameters(hp, space: dict) -> dict:
    """Keras Tuner's declaration of `space` (the same ranges, log sampling where params.yaml says `log`)."""
    out = {}
    for name, r in space.items():
        if "choices" in r:
            out[name] = hp.Choice(name, r["choices"])
        elif r.get("int"):
            out[name] = hp.Int(name, int(r["low"]), int(r["high"]), sampling="log" if r.get("log") else "linear")
        else:
            out[name] = hp.Float(name, r["low"], r["high"], sampling="log" if r.get("log") else "linear")
    return out


def run_keras_tuner(problem: Problem, data, budget: int, seed: int, *, hyperband: bool, cut: bool = False) -> Trace:
    """Keras Tuner Hyperband (`max_epochs` = a full trial, factor 3, one iteration) or RandomSearch
    (`max_trials` = the budget in full trials), with our model and batches in a `HyperModel`.

    `cut`: Hyperband runs as many iterations as it needs to train `budget` epochs (it is stopped after
    the trial that reaches it) and its trace is cut at the budget, as `Trace.within` cuts any trace.

    With folds, `fit` trains every fold from scratch (Keras Tuner has no K-fold) and returns the
    mean of the folds' best scores; Hyperband's carried-over weights are then not used.
    """
    import keras_tuner as kt  # noqa: PLC0415

    from pipeline.features import holdout_or_folds  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415
    from pipeline.models.arrays import as_labels  # noqa: PLC0415
    from pipeline.models.batches import make_dataset  # noqa: PLC0415
    from pipeline.models.hparams import resolve_hparams  # noqa: PLC0415
    from pipeline.models.keras_common import keras_module, make_optimizer, output_head  # noqa: PLC0415

    keras = keras_module()
    metric, direction = direction_of(data)
    family = get_family(problem.model)
    trace = Trace()
    splits = list(holdout_or_folds(data))
    label_dtype = np.int32 if data.task == "multiclass" else np.float32

    class Counter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            trace.epochs += 1

    class HyperModel(kt.HyperModel):
        def build(self, hp):
            resolved = resolve_hparams(problem.model, data.task, problem.fixed, _kt_hyperparameters(hp, problem.space))
            model = family.build_model(resolved, tuple(splits[0][0].shape[1:]), data.task, data.n_classes)
            _, _, loss, metric_obj = output_head(data.task, data.n_classes)
            model.compile(optimizer=make_optimizer(resolved), loss=loss, metrics=[metric_obj])
            model._tb_batch = int(resolved["batch_size"])
            return model

        def fit(self, hp, model, *args, callbacks=None, epochs=1, initial_epoch=0, **kwargs):
            callbacks = [*(callbacks or []), Counter()]
            fold_callbacks: list = []
            scores = []
            for fold, (x_tr, y_tr, x_va, y_va) in enumerate(splits):
                if len(splits) > 1:  # every fold from scratch
                    model, initial_epoch = self.build(hp), 0
                bs = model._tb_batch
                train = make_dataset(
                    x_tr, as_labels(data.task, y_tr, classes=label_dtype), bs, shuffle=True, seed=seed + fold
                )
                val = make_dataset(x_va, as_labels(data.task, y_va, classes=label_dtype), bs, shuffle=False)
                if len(splits) > 1:  # the objective is the folds' mean, returned below; fold 1 is checkpointed
                    keep = [c for c in callbacks if type(c).__name__ == "SaveBestEpoch"] if fold == 0 else []
                    fold_callbacks = [*keep, Counter()]
                history = model.fit(
                    train,
                    validation_data=val,
                    epochs=epochs,
                    initial_epoch=initial_epoch,
                    callbacks=callbacks if len(splits) == 1 else fold_callbacks,
                    verbose=0,
                )
                if len(splits) == 1:
                    return history
                curve = history.history[f"val_{metric}"]
                scores.append(max(curve) if direction == "maximize" else min(curve))
            return {f"val_{metric}": float(np.mean(scores))}

    class Traced:
        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            trace.trial_done(
                trial.score, {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
            )
            if cut and trace.epochs >= budget:  # the oracle creates no further trial
                self.oracle.max_trials = len(self.oracle.trials)

    objective = kt.Objective(f"val_{metric}", direction="max" if direction == "maximize" else "min")
    folder = tempfile.mkdtemp(prefix="kt-")
    common = {
        "objective": objective,
        "seed": seed,
        "directory": folder,
        "project_name": problem.name,
        "overwrite": True,
    }
    if hyperband:
        tuner = type("TracedHyperband", (Traced, kt.Hyperband), {})(
            HyperModel(), max_epochs=problem.epochs, factor=3, hyperband_iterations=None if cut else 1, **common
        )
    else:
        full = problem.epochs * len(splits)
        tuner = type("TracedRandom", (Traced, kt.RandomSearch), {})(
            HyperModel(), max_trials=max(1, budget // full), **common
        )
    tuner.search_space_summary = lambda *a, **k: None
    with open(os.devnull, "w") as quiet, _stdout_to(quiet):  # Keras Tuner prints every trial
        tuner.search(epochs=problem.epochs, verbose=0)
    if cut:
        return trace.within(budget, direction)
    best = tuner.oracle.get_best_trials(1)[0]
    trace.best_value = float(best.score)
    trace.best_params = {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}
    trace.wall_s = round(time.perf_counter() - trace.t0, 1)
    return trace


class _stdout_to:
    """Send `sys.stdout` to `stream` for a block."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, self.stream

    def __exit__(self, *exc):
        sys.stdout = self.saved


def tunebench_rounds(problem: Problem, budget: int, folds: int | None, reserve: int = 0) -> list[dict]:
    """tunebench's default schedule for an epoch budget: a wide, cheap round of a quarter of a full
    trial's epochs on 40% of the budget, then a fine round of full trials on the rest, median pruning,
    narrowed to the best 40% of the coarse round, its best configuration enqueued first; `reserve` epochs
    of the budget are left for robust selection (`selection_epochs`)."""
    per_epoch = folds or 1
    budget -= reserve
    coarse_epochs = max(1, problem.epochs // 4)
    n_coarse = max(2, round(0.4 * budget / (coarse_epochs * per_epoch)))
    n_fine = max(2, (budget - n_coarse * coarse_epochs * per_epoch) // (problem.epochs * per_epoch))
    return [
        {"name": "coarse", "n_trials": n_coarse, "epochs": coarse_epochs, "pruner": "median"},
        {
            "name": "fine",
            "n_trials": int(n_fine),
            "epochs": problem.epochs,
            "pruner": "median",
            "top_quantile": 0.4,
            "enqueue_best": 1,
        },
    ]


SELECTION_SHARE = 0.2  # the most of a budget tunebench's default robust selection may take (else it is off)


def budget_selection(problem: Problem, budget: int, folds: int | None) -> dict:
    """Robust selection as by default where its epochs fit in `SELECTION_SHARE` of the budget (30 full trials:
    its 3 x 2 take 6), else off (`{"repeats": 0}`): a small budget is better spent on the rounds."""
    return {} if selection_epochs(problem, folds) <= SELECTION_SHARE * budget else {"repeats": 0}


def selection_epochs(problem: Problem, folds: int | None, selection: dict | None = None) -> int:
    """The epochs robust selection trains (`SelectionConfig`, its defaults unless `selection` is given): top_k x
    repeats full trials."""
    from pipeline.config.benchmarks import SelectionConfig  # noqa: PLC0415

    return SelectionConfig(**(selection or {})).retrains * problem.epochs * (folds or 1)


def run_tunebench(problem: Problem, data, budget: int, seed: int, rounds: list[dict] | None = None,
                  selection: dict | None = None) -> Trace:  # fmt: skip
    """`tunebench search` in a fresh project (the processed data linked in, journal storage, SQLite MLflow
    with logged models, one worker, one TensorFlow thread, robust selection as by default), then its trials
    read back from the journal; selection's epochs are counted, and the rounds sized to leave room for them.
    `selection`: the benchmark's `selection` settings (`{}`: the defaults, `{"repeats": 0}`: off; None:
    `budget_selection`)."""
    from pipeline import search_summary  # noqa: PLC0415

    _, direction = direction_of(data)
    folds = len(data.folds) if data.folds is not None else None
    selection = budget_selection(problem, budget, folds) if selection is None else selection
    reserve = selection_epochs(problem, folds, selection)
    rounds = rounds or tunebench_rounds(problem, budget, folds, reserve=reserve)
    project = Path(tempfile.mkdtemp(prefix="tunebench-eff-"))
    (project / "data" / "processed").mkdir(parents=True)
    (project / "data" / "processed" / problem.dataset).symlink_to(
        problem.project / "data" / "processed" / problem.dataset
    )
    params = {
        "tracking": {"uri": "sqlite:///mlflow.db", "log_models": True},
        "search": {"sampler": "tpe", "seed": seed, "workers": 1},
        "datasets": {problem.dataset: problem.preprocess},
        "benchmarks": {
            problem.name: {
                "dataset": problem.dataset,
                "model": problem.model,
                "hparams": problem.fixed,
                "space": problem.space,
                "rounds": rounds,
                "seed": seed,
                "selection": selection,
            }
        },
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNEBENCH_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    trace = Trace()
    launched = _now()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "search", "--benchmark", problem.name, "--workers", "1"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    trace.wall_s = round(time.perf_counter() - trace.t0, 1)
    if done.returncode != 0:
        raise RuntimeError(f"tunebench search failed in {project}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result = json.loads((project / "results" / "search" / f"{problem.name}.json").read_text())
    cwd = os.getcwd()
    os.chdir(project)
    try:
        rows = search_summary.trial_rows(problem.name, result)
    finally:
        os.chdir(cwd)
    for row in sorted(rows, key=lambda r: (r["round"], r["end"] or launched)):
        trace.epochs += row["epochs"]
        seconds = ((row["end"] or launched) - launched).total_seconds()
        trace.events.append(
            (trace.epochs, round(seconds, 2), row["value"] if row["state"] == "complete" else None, None)
        )
    if result.get("selection"):  # retraining the top configurations: epochs spent, no new candidate
        trace.epochs += result["selection"]["epochs"]
        trace.events.append((trace.epochs, trace.wall_s, None, None))
        trace.selection = {k: result["selection"][k] for k in ("top_k", "repeats", "epochs")}
    trace.best_value, trace.best_params = result["best"]["value"], result["best"]["params"]
    trace.rounds = rounds
    return trace


def _now():
    import datetime  # noqa: PLC0415

    return datetime.datetime.now()  # Optuna stores naive local times
