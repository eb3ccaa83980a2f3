"""What a search no longer pays per trial (issue 26, part 5), on a tiny real search (NumPy MLP on 600 digits,
real journal and SQLite MLflow store): the models of each round's best trials only (`tracking.log_models: true`;
`all` logs every completed trial's), one worker call per round with the garbage collector left frozen after it,
the round's plots and tables logged in a background thread that the search's result waits for, and MLflow's
one-off work for the first Keras model done in a thread while a trial trains.
"""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from conftest import numpy_digits_params
from pipeline import stages, tracking
from pipeline.config import load_params, parse_params
from pipeline.errors import ConfigError
from pipeline.search import round_summary
from pipeline.search.execution import dispatch
from pipeline.search.rounds import run_search, study_name
from pipeline.search.storage import open_storage

KEY = "digits_numpy_mlp"
TS = optuna.trial.TrialState


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Processed digits and an MLflow database whose tables exist, built once for the module."""
    base = tmp_path_factory.mktemp("overhead-base")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        params = parse_params(numpy_digits_params(n_trials=1, epochs=1))
        stages.fetch(params, "digits")
        stages.preprocess(params, "digits")
        tracking.client(f"sqlite:///{base / 'mlflow.db'}").search_experiments()
    finally:
        os.chdir(cwd)
    return base


@pytest.fixture
def proj(prepared, tmp_path, monkeypatch) -> Path:
    shutil.copytree(prepared / "data", tmp_path / "data")
    shutil.copy2(prepared / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE", "TUNEBENCH_THREADS", "TUNEBENCH_TRIALS_PER_PROCESS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _search(root: Path, log_models, *, n_trials: int = 8, epochs: int = 2, pruner: str = "none") -> dict:
    raw = numpy_digits_params(n_trials=n_trials, epochs=epochs, log_models=log_models)
    raw["tracking"]["uri"] = f"sqlite:///{root / 'mlflow.db'}"
    raw["benchmarks"][KEY]["rounds"][0]["pruner"] = pruner
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(root / "params.yaml")
    result = run_search(params, KEY)
    result["study"] = optuna.load_study(study_name=study_name(params, KEY, 0), storage=open_storage(None, KEY))
    result["mlc"] = MlflowClient(tracking_uri=raw["tracking"]["uri"])
    return result


def _logged_trials(result: dict) -> set[int]:
    """The trial numbers whose run has a logged model."""
    mlc = result["mlc"]
    parent = result["rounds"][0]["parent_run_id"]
    exps = [e.experiment_id for e in mlc.search_experiments()]
    runs = mlc.search_runs(exps, f"tags.mlflow.parentRunId = '{parent}'", max_results=1000)
    return {int(r.data.tags["trial_number"]) for r in runs if "model_id" in r.data.tags}


def test_log_models_true_logs_the_models_of_the_trials_that_beat_their_rounds_best_so_far(proj):
    result = _search(proj, True)
    complete = sorted(result["study"].get_trials(deepcopy=False, states=(TS.COMPLETE,)), key=lambda t: t.number)
    beat, best = set(), None
    for t in complete:  # one worker: trials end in number order
        if best is None or t.value > best:
            beat.add(t.number)
            best = t.value
    assert len(beat) < len(complete), "the draws must have a trial that does not beat the best so far"
    assert _logged_trials(result) == beat
    assert result["rounds"][0]["best"]["trial"] in beat  # the round's best always has its model
    exps = [e.experiment_id for e in result["mlc"].search_experiments()]
    assert len(result["mlc"].search_logged_models(exps)) == len(beat)  # the Models tab lists those alone


def test_log_models_all_logs_every_completed_trials_model(proj):
    result = _search(proj, "all")
    complete = {t.number for t in result["study"].get_trials(deepcopy=False, states=(TS.COMPLETE,))}
    assert len(complete) == 8
    assert _logged_trials(result) == complete


@pytest.mark.parametrize("value", ["best", "yes please", 1])
def test_log_models_refuses_anything_but_true_false_or_all(value):
    raw = numpy_digits_params(n_trials=1, epochs=1)
    raw["tracking"]["log_models"] = value
    with pytest.raises(ConfigError, match=r"tracking\.log_models: .*expected true .*false or all"):
        parse_params(raw)


def test_a_round_runs_in_one_worker_call_and_leaves_the_collector_frozen(proj, monkeypatch):
    calls = []
    real = dispatch.run_worker
    monkeypatch.setattr(dispatch, "run_worker", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    gc.unfreeze()
    result = _search(proj, False, n_trials=8, epochs=4, pruner="median")
    pruned = result["study"].get_trials(deepcopy=False, states=(TS.PRUNED,))
    assert pruned, "a pruned trial gives budget back: the round then runs more trials than its budget"
    assert len(calls) == 1  # not one call per give-back, each unfreezing and paying full collections again
    assert gc.get_freeze_count() > 0


def test_the_rounds_files_are_logged_before_the_result_is_written(proj):
    result = _search(proj, False)
    mlc, parent = result["mlc"], result["rounds"][0]["parent_run_id"]
    names = {f.path for f in mlc.list_artifacts(parent)}
    assert {"plots.html", "trials.csv", "ranges.json", "optimization_history.png"} <= names
    assert mlc.get_run(parent).info.status == "FINISHED"
    assert not round_summary._pending


def test_an_error_while_logging_a_rounds_files_in_the_background_is_raised_by_the_wait(proj):
    mlc = tracking.client(f"sqlite:///{proj / 'mlflow.db'}")
    round_summary.in_background(mlc.set_terminated, "0" * 32)  # no such run
    with pytest.raises(MlflowException):
        round_summary.wait_for_files()
    round_summary.wait_for_files()  # raised once


def test_model_logging_warms_up_once_per_process_in_a_thread():
    from mlflow.utils import requirements_utils

    thread = tracking.warm_up_model_logging()
    assert tracking.warm_up_model_logging() is thread  # once per process
    thread.join(timeout=300)
    assert not thread.is_alive()
    # what the requirements check of every Keras-flavor model reads, built once (1.5-3.5 s) off the trial's path
    assert requirements_utils._MODULES_TO_PACKAGES is not None
