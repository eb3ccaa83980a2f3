"""The private Optuna and MLflow APIs `pipeline.compat` relies on still behave as it assumes.

Each test fails when an upgrade changes one of those internals (or makes a workaround
unnecessary), naming what to revisit in `pipeline/compat.py`.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging

import numpy as np
import optuna
import pytest

from pipeline import compat

# --- MLflow (mlflow 3.17.2) -----------------------------------------------------------------------------


def test_sqlalchemy_engine_of_a_sqlite_store_and_none_for_a_server(tmp_path):
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    engine = compat.sqlalchemy_engine(MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert engine is not None and engine.dialect.name == "sqlite", "MlflowClient._tracking_client.store.engine moved"
    with engine.connect() as conn:  # the store's own database
        assert conn.exec_driver_sql("select count(*) from experiments").scalar() >= 1
    assert compat.sqlalchemy_engine(MlflowClient(tracking_uri="http://127.0.0.1:9")) is None


@pytest.fixture(scope="module")
def keras_model():
    """A tiny Keras model (4 features -> 3 classes)."""
    import keras  # noqa: PLC0415

    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def _signature():
    from mlflow.models import ModelSignature  # noqa: PLC0415
    from mlflow.types import Schema, TensorSpec  # noqa: PLC0415

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 4))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]))  # fmt: skip


def test_keras_save_model_uses_the_model_only_to_save_it(keras_model, tmp_path):
    """`keras_model_saved_as`: `mlflow.keras.save_model` calls `model.save(path)` and nothing else of the model."""
    import mlflow.keras  # noqa: PLC0415

    saved = tmp_path / "family" / "model.keras"
    saved.parent.mkdir()
    keras_model.save(saved)
    used: list[str] = []

    class Recorder:  # not a keras.Model: what `compat.keras_model_saved_as` gives MLflow
        def __getattr__(self, name):
            used.append(name)
            return getattr(stand_in, name)

    stand_in = compat.keras_model_saved_as(keras_model, saved)
    dest = tmp_path / "flavor"
    dest.mkdir()
    x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    mlflow.keras.save_model(Recorder(), str(dest), signature=_signature(), input_example=x[:1],
                            pip_requirements=["keras"])  # fmt: skip
    assert used == ["save"], f"mlflow.keras.save_model now uses {used} of the model: revisit keras_model_saved_as"
    copy = dest / "data" / "model.keras"
    assert copy.read_bytes() == saved.read_bytes()
    np.testing.assert_allclose(mlflow.keras.load_model(str(dest)).predict(x, verbose=0),
                               keras_model.predict(x, verbose=0), rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(mlflow.pyfunc.load_model(str(dest)).predict(x), keras_model.predict(x, verbose=0),
                               rtol=1e-6)  # fmt: skip


def test_keras_save_model_has_no_public_way_to_log_a_saved_file():
    """Still needed: `save_model` takes only a model object. A new parameter may be the public way: revisit."""
    import mlflow.keras  # noqa: PLC0415

    assert set(inspect.signature(mlflow.keras.save_model).parameters) == {
        "model", "path", "save_exported_model", "conda_env", "mlflow_model", "signature", "input_example",
        "pip_requirements", "extra_pip_requirements", "save_model_kwargs", "metadata",
    }  # fmt: skip


def test_keras_save_model_with_an_example_still_needs_an_existing_folder_mlflow_16183(keras_model, tmp_path):
    """mlflow#16183: why `save_trial_model` saves into the folder `TrainedModel.save` made (and no `log_model`).

    When this fails, MLflow makes the folder itself and `mlflow.keras.log_model` with an input example works.
    """
    import mlflow.keras  # noqa: PLC0415

    with pytest.raises(FileNotFoundError, match="input_example"):
        mlflow.keras.save_model(keras_model, str(tmp_path / "new"), signature=_signature(),
                                input_example=np.zeros((1, 4), np.float32), pip_requirements=["keras"])  # fmt: skip


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
    if needs is not None and importlib.util.find_spec(needs) is None:
        return  # the states were found; drawing needs the optional package (make_sampler refuses `gp` without it)

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


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_heartbeat_base_is_what_optuna_checks_for_heartbeats(tmp_path):
    from optuna.storages._heartbeat import is_heartbeat_enabled  # noqa: PLC0415

    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat_interval=5)
    assert isinstance(rdb, compat.heartbeat_base()), "RDBStorage no longer derives from _heartbeat.BaseHeartbeat"
    assert is_heartbeat_enabled(rdb)
    assert set(compat.heartbeat_base().__abstractmethods__) == {
        "record_heartbeat", "_get_stale_trial_ids", "get_heartbeat_interval", "get_heartbeat_stale_trial_callback",
    }, "BaseHeartbeat's abstract methods changed: revisit search/retrying_storage.py"  # fmt: skip


def test_cached_storage_wraps_an_rdb_storage_as_load_study_does(tmp_path):
    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    cached = compat.cached_storage(rdb)
    assert cached is not rdb and type(cached).__name__ == "_CachedStorage"
    study = optuna.create_study(storage=rdb, study_name="s")
    assert optuna.load_study(study_name="s", storage=rdb)._storage.__class__ is type(cached)
    assert cached.get_study_id_from_name("s") == study._study_id
