"""The search methods of the replay benchmark, each on its own code path, over recorded curves.

A method gets a budget in epochs (full-trial equivalents times a full trial's epochs and folds)
and returns a `Trace` (`efficiency_methods.Trace`): after every finished trial, the epochs spent so
far and its validation score (None when pruned or failed) with its configuration, and the best
configuration it reports. Training is `ReplayProblem.curve`, the recorded validation curve of the
grid point nearest to the configuration (`pipeline.models.replay`); every method trains fold k of
search seed s with seed `s * folds + k`, as tunebench's trials do with `benchmarks.<b>.seed`.
tunebench runs `pipeline.stages.search` in a project of its own with the `replay`
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

from benchmarks.efficiency_methods import Trace, _better, _kt_hyperparameters, _stdout_to, _suggest
from benchmarks import ROOT
from pipeline.models.replay import Curves, load_curves

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
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for stage in ("fetch", "preprocess"):
            subprocess.run([sys.executable, "-m", "pipeline", stage, "--dataset", dataset], cwd=folder, env=env,
                           check=True, capture_output=True)  # fmt: skip
    return folder


def tunebench_rounds(problem: ReplayProblem, budget: int, *, coarse_share: float = 0.4, coarse_length: float = 0.25,
                     coarse_pruner: str = "median",
                     fine_pruner: str = "median", top_quantile: float = 0.4, enqueue_best: int = 1,
                     reinvest_pruned: bool = True, warm_start: bool = False, pad: float | None = None,
                     explore: float = 0.0, reserve: float = 0.0, keep: tuple = (),
                     coarse_sampler: str | None = None, fine_sampler: str | None = None) -> list[dict]:  # fmt: skip
    """tunebench's coarse-to-fine schedule for `budget` full trials (`efficiency_methods.tunebench_rounds`: trials
    of `coarse_length` of a full trial's epochs on `coarse_share` of the budget, then full trials narrowed to the
    best `top_quantile`), with the choices the replay weighs (`pad`: `RoundConfig`'s default unless given);
    `reserve` full trials of the budget are left for robust selection (`selection_cost`); `keep`: dimensions the
    fine round's narrowing leaves at the coarse round's ranges (`fast.run_rounds` only: `run_search` has no such
    setting)."""
    budget = budget - reserve
    coarse_epochs = max(1, int(problem.epochs * coarse_length))
    n_coarse = max(2, round(coarse_share * budget * problem.epochs / coarse_epochs))
    n_fine = max(2, int(budget - n_coarse * coarse_epochs / problem.epochs))
    common = {"reinvest_pruned": reinvest_pruned}
    return [
        {"name": "coarse", "n_trials": n_coarse, "epochs": coarse_epochs, "pruner": coarse_pruner,
         "sampler": coarse_sampler, **common},
        {"name": "fine", "n_trials": n_fine, "epochs": problem.epochs, "pruner": fine_pruner, "sampler": fine_sampler,
         "top_quantile": top_quantile, "enqueue_best": enqueue_best, "warm_start": warm_start, "explore": explore,
         **({} if pad is None else {"pad": pad}), **({"keep": list(keep)} if keep else {}), **common},
    ]  # fmt: skip


def selection_cost(selection: dict | None) -> int:
    """Full trials robust selection trains: `top_k` x `repeats` (its defaults `SelectionConfig`'s; None: off)."""
    from pipeline.config.benchmarks import SelectionConfig  # noqa: PLC0415

    return 0 if selection is None else SelectionConfig(**selection).retrains


def run_tunebench(problem: ReplayProblem, budget: int, seed: int, project: Path, rounds: list[dict],
                  key: str, *, selection: dict | None = None, sampler: str = "tpe") -> Trace:  # fmt: skip
    """`stages.search` of a `replay` benchmark `key` in `project` (`make_project`), search seed `seed`; its trials are
    read back from its studies in order. Robust selection runs only where `selection` asks (its epochs count)."""
    from pipeline.config import parse_params  # noqa: PLC0415
    from pipeline import stages  # noqa: PLC0415
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
            result = stages.search(params, key, workers=1)
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


def _ray_init() -> None:
    """Ray once per process, local and quiet: its workers find `benchmarks` and the clone's `pipeline` through
    PYTHONPATH (they inherit the environment), and Tune writes no per-trial logger files."""
    import ray  # noqa: PLC0415

    if ray.is_initialized():
        return
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV, JSON or TensorBoard file per trial
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "100000")  # the experiment's state: written once, at the end
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import logging  # noqa: PLC0415

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             configure_logging=True)  # fmt: skip


def ray_trainable(config: dict) -> None:
    """Ray Tune's function trainable on a replay: trains `config` (`config["replay"]`: the recording, the search seed)
    step by step and reports the validation score after every epoch (holdout) or the running mean of the folds' best
    after every fold (K-fold), as `_folds` reports to Optuna; a recorded divergence reports the worst score, marked
    `diverged` with the epoch it came at, and ends the trial."""
    from ray import tune  # noqa: PLC0415

    path, seed = config["replay"]
    problem = ReplayProblem(path)
    params = {k: v for k, v in config.items() if k != "replay"}
    worst = -1e9 if problem.direction == "maximize" else 1e9
    scores = []
    for fold in range(problem.folds):
        curve = problem.curve(params, seed, fold)
        for epoch, value in enumerate(curve):
            if not np.isfinite(value):
                tune.report({"score": worst, "diverged": epoch})
                return
            if problem.folds == 1:
                tune.report({"score": float(value)})
        scores.append(problem.best(curve))
        if problem.folds > 1:
            tune.report({"score": float(np.mean(scores))})


def run_ray_asha(problem: ReplayProblem, budget: int, seed: int) -> Trace:
    """Ray Tune's `Tuner` with `ASHAScheduler` (1 step to a full trial, factor 3, one bracket) over random
    configurations (`BasicVariantGenerator`, seeded), one trial at a time, `ray_trainable` reporting every epoch
    (or fold). Every reported step counts its epochs; a divergence counts the rest of its fold, as `_folds`
    does; the search stops once the next step would overrun `budget`. A trial that reaches a full trial is a
    candidate, valued as `_folds` values it; the reported best is the best candidate."""
    import ray  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415
    from ray.tune.schedulers import ASHAScheduler  # noqa: PLC0415
    from ray.tune.search.basic_variant import BasicVariantGenerator  # noqa: PLC0415

    _ray_init()
    steps = problem.epochs if problem.folds == 1 else problem.folds
    step_cost = 1 if problem.folds == 1 else problem.epochs
    maximize = problem.direction == "maximize"
    trace = Trace()
    seen: dict[str, list[float]] = {}

    class Budget(tune.Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return trace.epochs + step_cost > budget

    class Traced(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            trace.epochs += step_cost
            if "diverged" in result and problem.folds == 1:
                trace.epochs = min(budget, trace.epochs + problem.epochs - result["diverged"] - 1)
            seen.setdefault(trial.trial_id, []).append(None if "diverged" in result else result["score"])

        def on_trial_complete(self, iteration, trials, trial, **info):
            scores = seen.get(trial.trial_id, [])
            if len(scores) == steps and None not in scores:
                params = {k: v for k, v in trial.config.items() if k != "replay"}
                value = scores[-1] if problem.folds > 1 else (max(scores) if maximize else min(scores))
                trace.trial_done(value, params)
                if _better(value, trace.best_value, problem.direction):
                    trace.best_value, trace.best_params = value, params
            else:
                trace.trial_done(None)

        on_trial_error = on_trial_complete

    space = {n: (tune.loguniform if r["log"] else tune.uniform)(r["low"], r["high"]) for n, r in problem.space.items()}
    mode = "max" if maximize else "min"
    with tempfile.TemporaryDirectory(prefix="ray-replay-") as folder:
        tuner = tune.Tuner(
            tune.with_resources(ray_trainable, {"cpu": 1}),
            param_space={**space, "replay": (str(problem.path), seed)},
            tune_config=tune.TuneConfig(
                metric="score", mode=mode, num_samples=budget // step_cost + 1, max_concurrent_trials=1,
                reuse_actors=True, search_alg=BasicVariantGenerator(random_state=seed),
                scheduler=ASHAScheduler(max_t=steps, grace_period=1, reduction_factor=3),
            ),
            run_config=tune.RunConfig(
                storage_path=folder, name="replay", verbose=0, stop=Budget(), callbacks=[Traced()],
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
            ),
        )  # fmt: skip
        with open(os.devnull, "w") as quiet, _stdout_to(quiet), contextlib.redirect_stderr(quiet):
            tuner.fit()
    del ray
    return trace


def run_smac(problem: ReplayProblem, budget: int, seed: int) -> Trace:
    """SMAC3's `MultiFidelityFacade` (BOHB-like: Hyperband from 1 epoch to a full trial, factor 3, its random forest
    proposing the configurations) by ask-and-tell, the fidelity being epochs: a trial at fidelity e trains every fold
    e epochs from scratch, its value that of `_folds` (the folds' mean best); a divergence is told as a crash costing
    the recording's worst finite validation score (SMAC's random forest cannot fit an infinite cost).
    Trials run until the next one would overrun `budget`; a full-fidelity trial is a candidate, the best reported.
    Its run history is not written to disk after every trial (`save=False`), and its random forest (the facade's
    `get_model` settings) grows its trees in one thread (`n_jobs=1`, not every core: on a loaded machine joblib's
    threads spent most of a search waiting)."""
    import logging  # noqa: PLC0415

    from ConfigSpace import ConfigurationSpace, Float  # noqa: PLC0415
    from smac import MultiFidelityFacade, Scenario  # noqa: PLC0415
    from smac.model.random_forest import RandomForest  # noqa: PLC0415
    from smac.runhistory.dataclasses import TrialValue  # noqa: PLC0415
    from smac.runhistory.enumerations import StatusType  # noqa: PLC0415

    space = ConfigurationSpace(seed=seed)
    space.add([Float(n, (r["low"], r["high"]), log=r["log"]) for n, r in problem.space.items()])
    sign = -1.0 if problem.direction == "maximize" else 1.0  # SMAC minimizes
    val = problem.curves.val
    crash = sign * float(np.nanmin(val) if problem.direction == "maximize" else np.nanmax(val))
    trace = Trace()
    with tempfile.TemporaryDirectory(prefix="smac-replay-") as folder:
        scenario = Scenario(space, output_directory=Path(folder), deterministic=True, n_trials=10**6, min_budget=1,
                            max_budget=problem.epochs, crash_cost=crash, seed=seed)  # fmt: skip
        forest = RandomForest(space, log_y=True, n_trees=10, bootstrapping=True, ratio_features=1.0,
                              min_samples_split=2, min_samples_leaf=1, max_depth=2**20, seed=seed,
                              n_jobs=1)  # fmt: skip
        smac = MultiFidelityFacade(scenario, target_function=lambda config, seed=0, budget=1: 0.0, overwrite=True,
                                   model=forest,
                                   intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=3),
                                   logging_level=logging.ERROR)  # fmt: skip
        while True:
            info = smac.ask()
            epochs, params = max(1, round(info.budget)), dict(info.config)
            try:
                value = _folds(problem, params, seed, trace, budget, epochs)
            except Spent:
                break
            except optuna.TrialPruned:  # diverged
                smac.tell(info, TrialValue(cost=crash, status=StatusType.CRASHED), save=False)
                trace.trial_done(None)
                continue
            smac.tell(info, TrialValue(cost=sign * value), save=False)
            full = epochs == problem.epochs
            trace.trial_done(value if full else None, params if full else None)
            if full and _better(value, trace.best_value, problem.direction):
                trace.best_value, trace.best_params = value, params
    return trace
