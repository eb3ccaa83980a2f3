"""Every use of a private Optuna or MLflow API, in one place.

The rest of the package calls only the functions here when it needs something the public
APIs do not offer. Each function names the versions it was checked against;
`tests/test_compat.py` fails when those internals change, so an upgrade shows at once
what to revisit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# --- Optuna (checked against optuna 5.0.0 and 5.1.0) -----------------------------------------------------
# tests/test_compat.py (Optuna part) fails when one of these internals changes.

OPTUNA_CHECKED = "5.1.0"
OPTIMIZE_LOGGER = "optuna.study._optimize"  # the logger of `Study.optimize` (reports failed trials)
FAILED_VALUE_LINE = " failed with value None"  # the second message Optuna logs about one failed trial


def storage_of(study):
    """The storage behind `study` (`Study._storage`: there is no public accessor). optuna 5.0.0, 5.1.0."""
    return study._storage


def trial_id(trial) -> int:
    """The storage's id of a `Trial` or `FrozenTrial` (`_trial_id`; only the number is public). optuna 5.0.0, 5.1.0."""
    return trial._trial_id


def fail_trial(study, trial, user_attrs: dict) -> bool:
    """Set `user_attrs` on a RUNNING `trial` of `study` (asked by another process), then its state to FAIL.

    `Study.tell` only finishes trials this process asked; the storage finishes any. optuna 5.0.0, 5.1.0.

    Returns:
        False when the storage did not change the state (another process got there first).

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: the trial finished meanwhile.
    """
    import optuna  # noqa: PLC0415

    storage, tid = storage_of(study), trial_id(trial)
    for key, value in user_attrs.items():
        storage.set_trial_user_attr(tid, key, value)
    return storage.set_trial_state_values(tid, optuna.trial.TrialState.FAIL)


def heartbeat_base():
    """Optuna's `BaseHeartbeat`, the class `is_heartbeat_enabled` and `fail_stale_trials` look for on a
    storage (`optuna.storages._heartbeat`; not exported). A storage proxy that keeps heartbeats
    must derive from it. optuna 5.0.0, 5.1.0."""
    from optuna.storages._heartbeat import BaseHeartbeat  # noqa: PLC0415

    return BaseHeartbeat


def cached_storage(rdb_storage):
    """`rdb_storage` behind Optuna's trial cache, as `optuna.load_study` wraps an `RDBStorage` given to it
    (`optuna.storages.get_storage`, "only for internal usage"; returns a `_CachedStorage`). optuna 5.0.0, 5.1.0."""
    import optuna  # noqa: PLC0415

    return optuna.storages.get_storage(rdb_storage)


def sampler_random_states(sampler, depth: int = 0) -> list:
    """The NumPy random states of `sampler` and of the samplers it holds (TPE's start-up sampler...).

    Read from the sampler's attributes: `LazyRandomState` (`optuna.samplers._lazy_random_state`)
    or plain `RandomState` values, and nested samplers up to 3 deep. optuna 5.0.0, 5.1.0.
    """
    import numpy as np  # noqa: PLC0415
    import optuna  # noqa: PLC0415
    from optuna.samplers._lazy_random_state import LazyRandomState  # noqa: PLC0415

    found = []
    for value in vars(sampler).values():
        if isinstance(value, LazyRandomState):
            found.append(value.rng)
        elif isinstance(value, np.random.RandomState):
            found.append(value)
        elif isinstance(value, optuna.samplers.BaseSampler) and depth < 3:
            found += sampler_random_states(value, depth + 1)
    return found


def before_each_trial(sampler, hook):
    """Make `sampler` call `hook(study, trial)` before its own `before_trial`, for every trial.

    Replaces the bound method on the instance: `Trial.__init__` calls `study.sampler.before_trial`
    (an attribute lookup) for each new trial. optuna 5.0.0, 5.1.0.

    Returns:
        The same sampler.
    """
    original = sampler.before_trial

    def before_trial(study, trial) -> None:
        hook(study, trial)
        original(study, trial)

    sampler.before_trial = before_trial
    return sampler


def optimize_logger():
    """The logger through which `Study.optimize` reports a failed trial (two warnings a trial). optuna 5.0.0, 5.1.0."""
    import logging  # noqa: PLC0415

    return logging.getLogger(OPTIMIZE_LOGGER)


# --- MLflow (checked against mlflow 3.17.2) ----------------------------------------------------


def sqlalchemy_engine(mlc):
    """The SQLAlchemy engine of an `MlflowClient`'s tracking store, or None for a store without one (REST, files).

    Private: `MlflowClient._tracking_client.store.engine` (mlflow 3.17.2); no public API hands it out.
    """
    store = getattr(getattr(mlc, "_tracking_client", None), "store", None)
    return getattr(store, "engine", None)


def build_requirements_map() -> None:
    """Build, once per process, MLflow's map of installed packages and their modules, read by the requirements
    check of every model saved (`warn_dependency_requirement_mismatches`, even with pinned `pip_requirements`).

    Private: `mlflow.utils.requirements_utils._init_modules_to_packages_map` (mlflow 3.17.2), which scans every
    installed distribution the first time (1.5-3.5 s here); `tracking.warm_up_model_logging` runs it in a thread.
    """
    from mlflow.utils import requirements_utils  # noqa: PLC0415

    requirements_utils._init_modules_to_packages_map()


class _LinkedKerasFile:
    """Stands in for a `keras.Model` given to `mlflow.keras.save_model`; `save(path)` links a file saved before."""

    def __init__(self, model, saved: Path):
        self._model, self._saved = model, Path(saved)

    def save(self, filepath, **kwargs) -> None:
        """Hard-link (or copy, across file systems) the `.keras` file saved before to `filepath`."""
        try:
            os.link(self._saved, filepath)
        except OSError:
            shutil.copyfile(self._saved, filepath)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def keras_model_saved_as(model, saved: Path):
    """What to give `mlflow.keras.save_model` for Keras `model` whose `.keras` file `saved` was just written.

    `save_model` of mlflow 3.17.2 (given a signature, `save_exported_model=False`) uses the model
    only as `model.save(<dest>/data/model.keras)`, an implementation detail: the object returned
    hard-links `saved` there instead of serializing the model a second time; any other attribute
    comes from `model`. Passing the model itself (the public way) cost about 60 ms more a trial for
    the default benchmarks' models (about 4 % of a coarse-round trial, against a 5 % budget for all
    of tracking: `benchmarks/tracking_overhead.py`). MLflow has no public way to log a `.keras` file
    already written (`tests/test_compat.py` fails if `save_model`'s parameters change).
    """
    return _LinkedKerasFile(model, saved)


def set_experiment_artifact_location(mlc, experiment_id: str, location: str) -> bool:
    """Store `location` (a path relative to the project) as the artifact location of an experiment.

    `SqlAlchemyStore.create_experiment` of mlflow 3.17.2 resolves a relative location against the
    working directory (`mlflow.utils.uri.resolve_uri_if_local`) and stores the absolute path, which
    every run and logged model of the experiment then inherits; no public API keeps it relative.
    This writes the column `experiments.artifact_location` (mlflow 3.17.2 schema) of a store with a
    SQLAlchemy engine, right after the experiment was created and before any run exists in it.

    Returns:
        False for a store without an engine (REST, files): nothing was changed.
    """
    engine = sqlalchemy_engine(mlc)
    if engine is None:
        return False
    from sqlalchemy import text  # noqa: PLC0415

    with engine.begin() as conn:
        conn.execute(text("UPDATE experiments SET artifact_location = :loc WHERE experiment_id = :id"),
                     {"loc": location, "id": int(experiment_id)})  # fmt: skip
    return True
