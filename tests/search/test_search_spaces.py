"""Narrowing math of coarse-to-fine rounds, on real Optuna trials."""

from __future__ import annotations

import math

import optuna
import pytest

from pipeline.config import ParamRange, RoundConfig
from pipeline.search.spaces import narrow, suggest, top_trials
from pipeline.search.samplers import make_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(space, values_fn, n=40, direction="minimize"):
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: values_fn(suggest(t, space)), n_trials=n)
    return study


def test_suggest_uses_log_distributions():
    space = {"lr": ParamRange(low=1e-6, high=1e-1, log=True), "units": ParamRange(low=8, high=64, int=True),
             "opt": ParamRange(choices=["adam", "rmsprop"])}  # fmt: skip
    study = _study(space, lambda p: 0.0, n=3)
    dist = study.trials[0].distributions
    assert isinstance(dist["lr"], optuna.distributions.FloatDistribution) and dist["lr"].log
    assert isinstance(dist["units"], optuna.distributions.IntDistribution)
    assert isinstance(dist["opt"], optuna.distributions.CategoricalDistribution)


def test_log_range_narrows_around_best_in_log_space():
    space = {"lr": ParamRange(low=1e-6, high=1e-1, log=True)}
    study = _study(space, lambda p: abs(math.log10(p["lr"]) + 3.5))  # optimum at 10^-3.5
    new, notes = narrow(space, study.trials, "minimize", top_quantile=0.2, pad=0.05)
    lo, hi = math.log10(new["lr"].low), math.log10(new["lr"].high)
    assert new["lr"].log
    assert -6 <= lo < -3.5 < hi <= -1
    assert hi - lo < 0.6 * 5, "the new range is much narrower than 5 decades"
    best_values = [t.params["lr"] for t in top_trials(study.trials, "minimize", 0.2)]
    assert all(new["lr"].low <= v <= new["lr"].high for v in best_values)
    assert "lr: [1e-06, 0.1] ->" in notes[0]


def test_linear_range_never_wider_than_original():
    space = {"dropout": ParamRange(low=0.0, high=0.5)}
    study = _study(space, lambda p: p["dropout"])  # best at the low edge
    new, _ = narrow(space, study.trials, "minimize", top_quantile=0.25, pad=0.5)
    assert new["dropout"].low == 0.0 and new["dropout"].high <= 0.5


def test_best_at_edge_of_log_range_widens_and_says_so():
    space = {"lr": ParamRange(low=1e-4, high=1e-2, log=True)}
    study = _study(space, lambda p: -p["lr"], direction="minimize")  # wants the largest lr
    study.enqueue_trial({"lr": 1e-2})
    study.optimize(lambda t: -suggest(t, space)["lr"], n_trials=1)
    new, notes = narrow(space, study.trials, "minimize", top_quantile=0.2)
    assert new["lr"].high > 1e-2
    assert "widened above" in notes[0]
    narrowed, _ = narrow(space, study.trials, "minimize", top_quantile=0.2, widen_at_edge=False)
    assert narrowed["lr"].high == pytest.approx(1e-2)


def test_widening_stays_inside_the_hyperparameters_domain():
    space = {"dropout": ParamRange(low=0.05, high=0.9, log=True), "lr_decay": ParamRange(low=0.5, high=1.0, log=True)}
    study = _study(space, lambda p: -p["dropout"] - p["lr_decay"])  # wants both at the high edge
    study.enqueue_trial({"dropout": 0.9, "lr_decay": 1.0})
    study.optimize(lambda t: -sum(suggest(t, space).values()), n_trials=1)
    new, notes = narrow(space, study.trials, "minimize", top_quantile=0.2)
    assert 0.9 < new["dropout"].high < 1.0, "widened above 0.9 but dropout stays below 1"
    assert new["lr_decay"].high == 1.0, "lr_decay may reach 1 but not pass it"
    assert "widened above" in notes[0]


def test_maximize_picks_highest_values_and_categorical_keeps_winners():
    space = {"units": ParamRange(low=4, high=64, int=True), "opt": ParamRange(choices=["sgd", "adam", "rmsprop"])}
    study = _study(space, lambda p: p["units"] + (100 if p["opt"] == "adam" else 0), direction="maximize")
    new, _ = narrow(space, study.trials, "maximize", top_quantile=0.1)
    assert new["opt"].choices == ["adam"]
    assert new["units"].int and new["units"].high <= 64 and new["units"].low >= 4
    assert new["units"].high > 40


def test_no_completed_trial_keeps_ranges():
    space = {"lr": ParamRange(low=1e-5, high=1e-1, log=True)}
    study = optuna.create_study()

    def fail(trial):
        suggest(trial, space)
        raise optuna.TrialPruned()

    study.optimize(fail, n_trials=3)
    new, notes = narrow(space, study.trials, "minimize")
    assert new == space and "no completed trial" in notes[0]


def test_all_best_trials_equal_keeps_a_valid_range():
    space = {"lr": ParamRange(low=1e-5, high=1e-1, log=True)}
    study = optuna.create_study()
    for _ in range(3):
        study.enqueue_trial({"lr": 1e-3})
    study.optimize(lambda t: suggest(t, space)["lr"] * 0, n_trials=3)
    new, _ = narrow(space, study.trials, "minimize")
    assert new["lr"].low < 1e-3 < new["lr"].high


def test_bound_clipped_to_the_original_range_keeps_its_exact_value():
    space = {"lr": ParamRange(low=1e-4, high=1e-2, log=True)}
    study = optuna.create_study()
    for lr in (1e-4, 1.2e-4, 5e-3):
        study.enqueue_trial({"lr": lr})
    study.optimize(lambda t: suggest(t, space)["lr"], n_trials=3)
    new, _ = narrow(space, study.trials, "minimize", top_quantile=0.5, widen_at_edge=False)
    assert new["lr"].low == 1e-4, "exactly the original bound, so the best trial (enqueued next round) fits"


def test_pruner_steps_are_folds_for_a_kfold_objective():
    rnd = RoundConfig(name="r", n_trials=4, epochs=40, pruner="median")
    assert make_pruner(rnd)._n_warmup_steps == 10
    assert make_pruner(rnd, steps=4)._n_warmup_steps == 1
    hb = make_pruner(rnd.model_copy(update={"pruner": "hyperband"}), steps=4)
    assert hb._max_resource == 4
