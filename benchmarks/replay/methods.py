"""The search methods of the replay benchmark, each on its own code path, over recorded curves.

A method gets a budget in epochs (full-trial equivalents times a full trial's epochs and folds)
and returns a `Trace` (`efficiency_methods.Trace`): after every finished trial, the epochs spent so
far and its validation score (None when pruned or failed) with its configuration, and the best
configuration it reports. Training is `ReplayProblem.curve`, the recorded validation curve of the
grid point nearest to the configuration (`pipeline.models.replay`); every method trains fold k of
search seed s with seed `s * folds + k`, as tunebench's trials do with `benchmarks.<b>.seed`.
tunebench runs `pipeline.search.runner.run_search` in a project of its own with the `replay`
family: rounds, narrowing, pruning, budget accounting, sampler seeds, journal storage and
MLflow tracking (SQLite) included.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from efficiency_methods import Trace, _better, _kt_hyperparameters, _suggest, _stdout_to  # noqa: E402

from pipeline.models.replay import Curves, load_curves  # noqa: E402

# task, folds -> the builtin dataset a replay search of that task names (its rows are never read)
STAND_INS = {
    ("multiclass", 1): ("digits", {"kind": "pca", "n_components": 0.95, "val_fraction": 0.2, "test_fraction": 0.2}),
    ("binary", 1): ("breast_cancer", {"kind": "standardize", "val_fraction": 0.2, "test_fraction": 0.2}),
    ("regression", 4): ("boston_housing", {"kind": "standardize", "kfold": 4}),
}


class Spent(Exception):
    """The budget is used up: the method stops here."""


@dataclass
class ReplayProblem:
    """A recording as a search problem: its space (the grid's ranges), a full trial's cost, and training."""

    path: str  # the recording (`load_curves`)

    @property
    def curves(self) -> Curves:
        """The recording."""
        return load_curves(self.path)

    @property
    def name(self) -> str:
        """The problem's name."""
        return self.curves.meta["problem"]

    @property
    def space(self) -> dict:
        """params.yaml ranges spanning the grid (log where the grid is)."""
        grid = self.curves.meta["grid"]
        return {n: {"low": min(a["values"]), "high": max(a["values"]), "log": a["log"]} for n, a in grid.items()}

    @property
    def epochs(self) -> int:
        """A full trial's epochs (per fold)."""
        return int(self.curves.meta["epochs"])

    @property
    def folds(self) -> int:
        """Folds a trial trains (1: a holdout split)."""
        return int(self.curves.meta["folds"])

    @property
    def direction(self) -> str:
        """`maximize` or `minimize`."""
        return self.curves.meta["direction"]

    def curve(self, config: dict, seed: int, fold: int) -> np.ndarray:
        """The validation curve search seed `seed` trains for `config` on `fold` (NaN once diverged)."""
        return self.curves.run(self.curves.index(config), seed * self.folds + fold)[0]

    def best(self, curve: np.ndarray) -> float:
        """A curve's best value (the worst possible when it diverged at once)."""
        worst = -np.inf if self.direction == "maximize" else np.inf
        values = np.nan_to_num(curve, nan=worst)
        return float(values.max() if self.direction == "maximize" else values.min())

    def regret(self, config: dict | None) -> float:
        """How much worse `config`'s expected test score is than the grid's best (>= 0; None: a random
        configuration's mean regret)."""
        q = self.curves.quality
        best = q.max() if self.direction == "maximize" else q.min()
        value = q.mean() if config is None else q[self.curves.index(config)]
        return float(abs(best - value))


def _folds(problem: ReplayProblem, config: dict, seed: int, trace: Trace, budget: int, epochs: int,
           report=None) -> float:  # fmt: skip
    """Train `config` on every fold for `epochs` (as `efficiency_methods._train_folds`): report the running value
    after every epoch (holdout) or fold (K-fold); returns the mean of the folds' best. Raises `Spent` first
    when the budget would be overrun, `optuna.TrialPruned` when `report` prunes."""
    if trace.epochs + epochs * problem.folds > budget:
        raise Spent
    scores = []
    for fold in range(problem.folds):
        curve = problem.curve(config, seed, fold)[:epochs]
        for epoch, value in enumerate(curve):
            trace.epochs += 1
            if not np.isfinite(value):
                trace.epochs += epochs - epoch - 1  # a diverged run: counted as trained, like Keras would
                raise optuna.TrialPruned("diverged")
            if report is not None and problem.folds == 1:
                report(epoch, float(value))
        scores.append(problem.best(curve))
        if report is not None and problem.folds > 1:
            report(fold, float(np.mean(scores)))
    return float(np.mean(scores))


def run_optuna(problem: ReplayProblem, budget: int, seed: int, *, sampler: str, pruner: str) -> Trace:
    """Optuna's ask-and-tell loop as its tutorial writes it: `random` (no pruning), `tpe` + `median` (the
    defaults of `TPESampler` and `MedianPruner`) or `tpe` + `hyperband` (`HyperbandPruner` from 1 epoch
    to a full trial, the BOHB-like pairing); trials run until the next full trial would overrun `budget`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
    steps = problem.epochs if problem.folds == 1 else problem.folds
    pruners = {
        "none": optuna.pruners.NopPruner(),
        "median": optuna.pruners.MedianPruner(),
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps, reduction_factor=3),
    }
    study = optuna.create_study(direction=problem.direction, sampler=samplers[sampler](seed=seed),
                                pruner=pruners[pruner])  # fmt: skip
    trace = Trace()
    while True:
        trial = study.ask()
        params = _suggest(trial, problem.space)

        def report(step, value, trial=trial):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            value = _folds(problem, params, seed, trace, budget, problem.epochs, report)
        except Spent:
            break
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            trace.trial_done(None)
            continue
        study.tell(trial, value)
        trace.trial_done(value, params)
        if _better(value, trace.best_value, problem.direction):
            trace.best_value, trace.best_params = value, params
    return trace


def run_keras_tuner(problem: ReplayProblem, budget: int, seed: int) -> Trace:
    """Keras Tuner Hyperband (`max_epochs` = a full trial, factor 3, iterations until the budget is spent) with
    `run_trial` replaying the curve: a trial that continues an earlier one (`tuner/initial_epoch`) trains only
    its new epochs on a holdout split; with folds every fold from scratch (as `efficiency_methods`). Its
    files (oracle and trial JSON after every trial, for resuming) are not written."""
    import keras_tuner as kt  # noqa: PLC0415

    trace = Trace()
    metric = f"val_{problem.curves.meta['metric']}"

    class Space(kt.HyperModel):
        def build(self, hp):
            _kt_hyperparameters(hp, problem.space)

    class Replayed(kt.Hyperband):
        def run_trial(self, trial, *args, **kwargs):
            values = trial.hyperparameters.values
            config = {k: v for k, v in values.items() if not k.startswith("tuner/")}
            epochs, start = values["tuner/epochs"], values.get("tuner/initial_epoch", 0)
            if problem.folds > 1:
                start = 0
            cost = (epochs - start) * problem.folds
            worst = -1e9 if problem.direction == "maximize" else 1e9
            if trace.epochs + cost > budget:
                self.oracle.stop = True
                return {metric: worst}
            trace.epochs += cost
            curves = [problem.curve(config, seed, f)[start:epochs] for f in range(problem.folds)]
            value = float(np.mean([problem.best(c) for c in curves]))
            finite = bool(np.isfinite(value))
            trace.trial_done(value if finite else None, config if finite else None)
            if finite and _better(value, trace.best_value, problem.direction):
                trace.best_value, trace.best_params = value, config
            return {metric: value if finite else worst}

    objective = kt.Objective(metric, direction="max" if problem.direction == "maximize" else "min")
    with tempfile.TemporaryDirectory(prefix="kt-replay-") as folder:
        tuner = Replayed(Space(), objective=objective, max_epochs=problem.epochs, factor=3, hyperband_iterations=1000,
                         seed=seed, directory=folder, project_name="replay", overwrite=True)  # fmt: skip
        for owner, name in ((tuner, "save"), (tuner.oracle, "save"), (tuner.oracle, "_save_trial")):
            setattr(owner, name, lambda *a: None)  # its per-trial files: persistence only, quadratic in trials
        stop = tuner.oracle.populate_space
        tuner.oracle.populate_space = lambda trial_id: (
            {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            if getattr(tuner.oracle, "stop", False)
            else stop(trial_id)
        )
        with open(os.devnull, "w") as quiet, _stdout_to(quiet):
            tuner.search(verbose=0)
    return trace


def make_project(problem: ReplayProblem, folder: Path) -> Path:
    """A tunebench project in `folder` whose dataset stands in for the recording's (same task and folds): fetched
    and preprocessed once; a replay search never reads its rows."""
    import subprocess  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    dataset, preprocess = STAND_INS[(problem.curves.meta["task"], problem.folds)]
    folder.mkdir(parents=True, exist_ok=True)
    params = {
        "datasets": {dataset: {"source": "builtin", "preprocess": {**preprocess, "seed": 42}}},
        "benchmarks": {"stand_in": {"dataset": dataset, "model": "majority", "rounds": [{"name": "r", "n_trials": 1,
                                                                                          "epochs": 1}]}},
    }  # fmt: skip
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    if not (folder / "data" / "processed" / dataset / "manifest.json").exists():
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        for stage in ("fetch", "preprocess"):
            subprocess.run([sys.executable, "-m", "pipeline", stage, "--dataset", dataset], cwd=folder, env=env,
                           check=True, capture_output=True)  # fmt: skip
    return folder


def tunebench_rounds(problem: ReplayProblem, budget: int, *, coarse_share: float = 0.4, coarse_pruner: str = "median",
                     fine_pruner: str = "median", top_quantile: float = 0.4, enqueue_best: int = 1,
                     reinvest_pruned: bool = True, warm_start: bool = False, pad: float | None = None,
                     explore: float = 0.0) -> list[dict]:  # fmt: skip
    """tunebench's coarse-to-fine schedule for `budget` full trials (`efficiency_methods.tunebench_rounds`: a
    quarter of a full trial's epochs on `coarse_share` of the budget, then full trials narrowed to the best
    `top_quantile`), with the choices the replay weighs (`pad`: `RoundConfig`'s default unless given)."""
    coarse_epochs = max(1, problem.epochs // 4)
    n_coarse = max(2, round(coarse_share * budget * problem.epochs / coarse_epochs))
    n_fine = max(2, int(budget - n_coarse * coarse_epochs / problem.epochs))
    common = {"reinvest_pruned": reinvest_pruned}
    return [
        {"name": "coarse", "n_trials": n_coarse, "epochs": coarse_epochs, "pruner": coarse_pruner, **common},
        {"name": "fine", "n_trials": n_fine, "epochs": problem.epochs, "pruner": fine_pruner,
         "top_quantile": top_quantile, "enqueue_best": enqueue_best, "warm_start": warm_start, "explore": explore,
         **({} if pad is None else {"pad": pad}), **common},
    ]  # fmt: skip


def run_tunebench(problem: ReplayProblem, budget: int, seed: int, project: Path, rounds: list[dict],
                  key: str, *, selection: dict | None = None, sampler: str = "tpe") -> Trace:  # fmt: skip
    """`run_search` of a `replay` benchmark `key` in `project` (`make_project`), search seed `seed`; its trials are
    read back from its studies in order. Robust selection runs only where `selection` asks (its epochs count)."""
    from pipeline.config import parse_params  # noqa: PLC0415
    from pipeline.search.runner import run_search  # noqa: PLC0415
    from pipeline.search.storage import open_storage  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import yaml  # noqa: PLC0415

    data = yaml.safe_load((project / "params.yaml").read_text())
    dataset = next(iter(data["datasets"]))
    data.pop("benchmarks")
    data |= {
        "tracking": {"uri": "sqlite:///mlflow.db", "log_models": False},  # a replay model has nothing to log
        "search": {"sampler": sampler, "seed": seed, "workers": 1},
        "benchmarks": {key: {"dataset": dataset, "model": "replay", "hparams": {"curves": str(problem.path)},
                             "space": problem.space, "rounds": rounds, "seed": seed * problem.folds,
                             "selection": selection or {"repeats": 0}}},
    }  # fmt: skip
    cwd = os.getcwd()
    os.chdir(project)
    try:
        params = parse_params(data, project / "params.yaml")
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
            result = run_search(params, "params.yaml", key, workers=1)
        storage = open_storage(None, key)
        trace = Trace()
        for rnd, spec in zip(result["rounds"], rounds, strict=True):
            study = optuna.load_study(study_name=rnd["study"], storage=storage)
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
                trace.epochs += round(_trial_epochs(t, spec["epochs"], problem.folds))
                done = t.state == optuna.trial.TrialState.COMPLETE
                trace.trial_done(t.value if done else None, t.params if done else None)
    finally:
        os.chdir(cwd)
    if result.get("selection"):
        trace.epochs += result["selection"]["epochs"]
        trace.trial_done(None)
    trace.best_value, trace.best_params = result["best"]["value"], result["best"]["params"]
    trace.rounds = rounds
    return trace


def _trial_epochs(t: optuna.trial.FrozenTrial, epochs: int, folds: int) -> float:
    """The epochs (over every fold) trial `t` trained."""
    from pipeline.search.execution.budget import COST_ATTR  # noqa: PLC0415

    if t.state == optuna.trial.TrialState.COMPLETE:
        return epochs * folds
    if COST_ATTR in t.user_attrs:
        return t.user_attrs[COST_ATTR] * epochs * folds
    return len(t.intermediate_values) * (1 if folds == 1 else epochs)
