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


def _lr_study(space, n, direction="maximize", seed=1):
    """`n` random trials of `space` scored by how close lr is to 1e-2 (in log space)."""
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed=seed))
    sign = 1 if direction == "minimize" else -1
    study.optimize(lambda t: sign * abs(math.log10(suggest(t, space)["lr"]) + 2), n_trials=n)
    return study


def test_a_warm_started_round_draws_from_what_the_earlier_round_learned():
    from pipeline.search.samplers import make_sampler

    space = {"lr": ParamRange(low=1e-5, high=1e-1, log=True)}
    coarse = _lr_study(space, 30)

    def first_draws(warm) -> list[float]:
        fine = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", 3, space, "b", warm=warm))
        fine.optimize(lambda t: 0.0 if suggest(t, space) else 0.0, n_trials=5)  # no signal of its own
        return [abs(math.log10(t.params["lr"]) + 2) for t in fine.trials]

    cold, warm = first_draws(()), first_draws(coarse.trials)
    assert sum(warm) < sum(cold) / 3  # TPE from the first trial on, around the earlier round's best (lr 1e-2)
    assert max(cold) > 1.0  # alone: its 5 start-up trials are random over 4 decades
    assert first_draws(coarse.trials) == warm  # same seed, same draws


def test_warm_trials_are_ranked_within_their_round_and_kept_only_inside_the_space():
    from pipeline.search.samplers import _as_ranks
    from pipeline.search.spaces import distributions

    space = {"lr": ParamRange(low=1e-5, high=1e-1, log=True)}
    coarse = _lr_study(space, 8, direction="minimize")
    pruned = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={"lr": 1e-3},
                                       distributions=distributions(space), intermediate_values={0: 5.0})  # fmt: skip
    coarse.add_trial(pruned)
    narrowed = {"lr": ParamRange(low=1e-4, high=1e-1, log=True)}
    inside = [t for t in coarse.trials if t.params["lr"] >= 1e-4]
    ranked = _as_ranks(coarse.trials, distributions(narrowed))
    assert [t.params for t in ranked] == [t.params for t in inside]
    assert all(t.distributions == distributions(narrowed) for t in ranked)
    done = [(t.value, r.value) for t, r in zip(inside, ranked, strict=True) if t.state.name == "COMPLETE"]
    assert sorted(v for _, v in done) == [(i + 1) / len(done) for i in range(len(done))]
    assert [r for _, r in sorted(done)] == sorted(r for _, r in done)  # the values' order kept
    assert ranked[-1].state.name == "PRUNED" and ranked[-1].intermediate_values == {0: 5.0}


def test_explore_queues_a_share_of_the_round_from_the_full_ranges_after_the_best():
    import warnings

    from pipeline.search.round_setup import enqueue_first

    full = {"lr": ParamRange(low=1e-5, high=1e-1, log=True), "dropout": ParamRange(low=0.0, high=0.5)}
    coarse = _lr_study(full, 20)
    narrowed, _ = narrow(full, coarse.trials, "maximize", top_quantile=0.25)
    rnd = RoundConfig(name="fine", n_trials=6, epochs=4, explore=1 / 3)

    def queued(salt="b") -> list[optuna.trial.FrozenTrial]:
        fine = optuna.create_study(direction="maximize")
        enqueue_first(fine, coarse, rnd, narrowed, full, "maximize", budget=6, seed=5, salt=salt)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an explore trial's value outside the round's ranges is no warning
            fine.optimize(lambda t: suggest(t, narrowed)["lr"], n_trials=3)
        return fine.trials

    trials = queued()
    assert [t.user_attrs["enqueued_from"] for t in trials] == [f"{coarse.study_name}#{coarse.best_trial.number}",
                                                                "explore#0", "explore#1"]  # fmt: skip
    assert trials[0].params == coarse.best_params
    explored = [t.params for t in trials[1:]]
    assert all(1e-5 <= p["lr"] <= 1e-1 and 0 <= p["dropout"] <= 0.5 for p in explored)
    assert any(not narrowed["lr"].low <= p["lr"] <= narrowed["lr"].high for p in explored)  # outside the narrowed box
    assert [t.params for t in queued()] == [t.params for t in trials]  # same seed and salt, same draws
    assert [t.params for t in queued(salt="c")][1:] != explored


def test_the_default_round_narrows_to_the_best_trials_padded_by_half_the_width():
    """The replay benchmark's choice: short coarse trials favour no dropout, the optimum has 0.25."""
    rnd = RoundConfig(name="fine", n_trials=2, epochs=4)
    space = {"dropout": ParamRange(low=0.0, high=0.5), "lr": ParamRange(low=1e-4, high=1e-1, log=True)}
    study = _study(space, lambda p: p["dropout"], n=40)  # minimized: the best trials have little dropout
    best = top_trials(study.trials, "minimize", rnd.top_quantile)
    new, _ = narrow(space, study.trials, "minimize", top_quantile=rnd.top_quantile, pad=rnd.pad)
    assert rnd.pad == 0.5
    assert new["dropout"].high == pytest.approx(max(t.params["dropout"] for t in best) + 0.25)
    assert new["dropout"].high > 0.25 > max(t.params["dropout"] for t in best) + 0.1 * 0.5  # the old default's reach
