"""The private Optuna and MLflow internals `pipeline.compat` relies on: each test fails when one changes.

An upgrade of Optuna or MLflow that breaks one of these names the function of `compat` to
revisit (and the versions it was checked against).
"""

from __future__ import annotations

import logging

import optuna
import pytest

from pipeline import compat

optuna.logging.set_verbosity(optuna.logging.WARNING)

# ---------------------------------------------------------------- Optuna


def _study_with_running_trial():
    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    return study, trial


def test_optuna_version_is_the_checked_one():
    assert optuna.__version__ == compat.OPTUNA_CHECKED, "check every Optuna function of pipeline.compat, then bump it"


def test_storage_of_and_trial_id_reach_the_trial_through_the_storage():
    study, trial = _study_with_running_trial()
    frozen = study.get_trials(deepcopy=False)[0]
    storage = compat.storage_of(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert compat.trial_id(trial) == compat.trial_id(frozen)
    assert storage.get_trial(compat.trial_id(frozen)).number == frozen.number == trial.number


def test_fail_trial_annotates_and_fails_a_running_trial_once():
    study, trial = _study_with_running_trial()
    frozen = study.get_trials(deepcopy=False)[0]
    assert compat.fail_trial(study, frozen, {"interrupted": True}) is True
    (after,) = study.get_trials(deepcopy=False)
    assert after.state == optuna.trial.TrialState.FAIL and after.user_attrs == {"interrupted": True}
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        compat.fail_trial(study, frozen, {"interrupted": True})


@pytest.mark.parametrize(
    "make, least, needs",
    [
        (lambda: optuna.samplers.RandomSampler(seed=1), 1, None),
        (lambda: optuna.samplers.TPESampler(seed=1), 2, None),  # its own and its start-up random sampler's
        (lambda: optuna.samplers.CmaEsSampler(seed=1, warn_independent_sampling=False), 2, "cmaes"),
        (lambda: optuna.samplers.GPSampler(seed=1), 2, "torch"),
        (lambda: optuna.samplers.GridSampler({"x": [0.0, 0.5, 1.0]}, seed=1), 1, None),
    ],
    ids=["random", "tpe", "cmaes", "gp", "grid"],
)
def test_sampler_random_states_are_found_and_reseeding_them_replays_the_draws(make, least, needs):
    import numpy as np

    sampler = make()
    states = compat.sampler_random_states(sampler)
    assert len(states) >= least and all(isinstance(s, np.random.RandomState) for s in states)
    if needs is not None:
        pytest.importorskip(needs, reason=f"drawing needs {needs} (optional; the states were found)")

    def draws() -> list[float]:
        for i, s in enumerate(states):
            s.seed(100 + i)
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        return [t.params["x"] for t in study.trials]

    assert draws() == draws(), "the states found are the ones the sampler draws from"


def test_before_each_trial_runs_the_hook_for_every_trial_before_sampling():
    seen: list[int] = []
    sampler = compat.before_each_trial(optuna.samplers.RandomSampler(seed=0), lambda study, t: seen.append(t.number))
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    study.ask()
    assert seen == [0, 1, 2, 3]


def test_a_failed_trial_is_reported_by_the_optimize_logger_in_two_messages():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = compat.optimize_logger()
    filters, logger.filters = logger.filters, []  # the search's one-line filter, if loaded, would drop one
    logger.addHandler(handler)
    try:

        def boom(trial: optuna.Trial) -> float:
            trial.suggest_float("x", 0, 1)
            raise ValueError("boom")

        optuna.create_study().optimize(boom, n_trials=1, catch=(ValueError,))
    finally:
        logger.removeHandler(handler)
        logger.filters = filters
    messages = [r.getMessage() for r in records]
    assert len(messages) == 2, messages
    assert "Trial 0 failed with parameters:" in messages[0] and "boom" in messages[0]
    assert compat.FAILED_VALUE_LINE in messages[1]
