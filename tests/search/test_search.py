"""The Optuna search end to end on tiny real data: real Optuna storages, real MLflow (SQLite), real training.

Every test works in its own folder (`tmp_path`, made the working directory) with its own
`params.yaml`, journal file and MLflow database. The features (scikit-learn's digits through
PCA, diabetes standardized with 3 folds) and an empty MLflow database are built once per module
and copied, so each test pays only for its own trials. Trials are 1-4 epochs of the NumPy MLP
(and of the Keras MLP where Keras itself matters).
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline import compat, paths, processes, search_summary, stages, tracking
from pipeline.__main__ import main
from pipeline.config import ParamRange, load_params, parse_params
from pipeline.errors import MissingInputError
from pipeline.models.keras_common import keras_module
from pipeline.search import storage
from pipeline.search.execution import memory, stale_trials
from pipeline.search.execution.budget import FINISHED, budget_used, claimed
from pipeline.search.rounds import run_search, study_name
from pipeline.search.spaces import space_to_dict, suggest
from pipeline.search.samplers import make_sampler
from pipeline.search.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
TS = optuna.trial.TrialState
LR = {"low": 1.0e-4, "high": 1.0e-1, "log": True}

BASE: dict = {
    "tracking": {"uri": "sqlite:///mlflow.db", "log_models": False},
    "search": {"sampler": "random", "seed": 0, "workers": 1, "storage": None},
    "promote": {"min_improvement": 0.0},
    "datasets": {
        "digits": {
            "source": "builtin",
            "preprocess": {
                "kind": "pca",
                "n_components": 16,
                "val_fraction": 0.25,
                "test_fraction": 0.2,
                "seed": 42,
                "max_rows": 600,
            },
        },
        "diabetes": {
            "source": "builtin",
            "preprocess": {"kind": "standardize", "kfold": 3, "test_fraction": 0.2, "seed": 42},
        },
    },  # fmt: skip
    "benchmarks": {
        "digits_numpy_mlp": {
            "dataset": "digits",
            "model": "numpy_mlp",
            "hparams": {"units": [32], "batch_size": 64},
            "space": {"lr": dict(LR), "l2": {"low": 1.0e-7, "high": 1.0e-2, "log": True}},
            "rounds": [{"name": "coarse", "n_trials": 4, "epochs": 1, "pruner": "none"}],
        },
        "diabetes_numpy_mlp": {
            "dataset": "diabetes",
            "model": "numpy_mlp",
            "hparams": {"units": [32], "batch_size": 32},
            "space": {"lr": dict(LR)},
            "rounds": [{"name": "coarse", "n_trials": 2, "epochs": 2, "pruner": "none"}],
        },
        "diabetes_keras_mlp": {
            "dataset": "diabetes",
            "model": "keras_mlp",
            "hparams": {"units": 8, "depth": 1, "optimizer": "sgd", "batch_size": 64},
            "space": {"lr": {"low": 1.0e-5, "high": 1.0e-4, "log": True}},  # sgd on raw targets: small steps
            "rounds": [{"name": "coarse", "n_trials": 2, "epochs": 2, "pruner": "none"}],
        },
    },  # fmt: skip
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Processed digits and diabetes plus an empty MLflow database, built once for the module."""
    base = tmp_path_factory.mktemp("search-base")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        params = parse_params(BASE)
        for ds in params.datasets:
            stages.fetch(params, ds)
            stages.preprocess(params, ds)
        tracking.client(f"sqlite:///{base / 'mlflow.db'}").search_experiments()  # creates the tables (slow)
    finally:
        os.chdir(cwd)
    return base


class Project:
    """One test's project folder: writes `params.yaml`, runs the search, reads Optuna and MLflow."""

    def __init__(self, root: Path):
        self.root = root
        self.raw = copy.deepcopy(BASE)
        self.raw["tracking"]["uri"] = f"sqlite:///{root / 'mlflow.db'}"

    def bench(self, key: str) -> dict:
        return self.raw["benchmarks"][key]

    def write(self):
        (self.root / "params.yaml").write_text(yaml.safe_dump(self.raw, sort_keys=False))
        return load_params(self.root / "params.yaml")

    def search(self, key: str, **kwargs) -> dict:
        return run_search(self.write(), key, **kwargs)

    def name(self, key: str, k: int = 0) -> str:
        return study_name(parse_params(self.raw), key, k)

    def study(self, key: str, k: int = 0, url: str | None = None) -> optuna.Study:
        return optuna.load_study(study_name=self.name(key, k), storage=open_storage(url, key))

    def create_study(self, key: str, direction: str, url: str | None = None) -> optuna.Study:
        """Create round 1's study ahead of the search (to enqueue trials or leave one RUNNING)."""
        return optuna.create_study(study_name=self.name(key), storage=open_storage(url, key), direction=direction)

    @property
    def mlc(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.raw["tracking"]["uri"])

    def child_runs(self, parent_run_id: str) -> list:
        mlc = self.mlc
        exps = [e.experiment_id for e in mlc.search_experiments()]
        runs = mlc.search_runs(exps, f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=1000)
        return sorted(runs, key=lambda r: int(r.data.tags["trial_number"]))

    def history(self, run_id: str, key: str) -> list[float]:
        return [m.value for m in sorted(self.mlc.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.fixture
def proj(prepared, tmp_path, monkeypatch) -> Project:
    shutil.copytree(prepared / "data", tmp_path / "data")
    shutil.copy2(prepared / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE", "TUNEBENCH_THREADS", "TUNEBENCH_TRIALS_PER_PROCESS"):
        monkeypatch.delenv(var, raising=False)
    return Project(tmp_path)


# --- pruning, divergence, K-fold -------------------------------------------------------------------


@pytest.mark.slow  # searches of over 10 s each: the rest of this module is the fast tier's
def test_median_pruner_stops_a_bad_trial_after_the_warmup(proj):
    key = "digits_numpy_mlp"
    b = proj.bench(key)
    b["space"] = {"lr": dict(LR)}
    b["rounds"] = [{"name": "coarse", "n_trials": 3, "epochs": 4, "pruner": "median", "reinvest_pruned": False}]
    study = proj.create_study(key, "maximize")
    for lr in (3e-2, 2e-2, 1e-4):  # two good trials start the median, then one that learns nothing
        study.enqueue_trial({"lr": lr})
    result = proj.search(key)

    trials = proj.study(key).get_trials()
    assert [t.state for t in trials] == [TS.COMPLETE, TS.COMPLETE, TS.PRUNED]
    good, bad = trials[:2], trials[2]
    assert all(sorted(t.intermediate_values) == [0, 1, 2, 3] for t in good)
    # warmup = epochs // 4 = 1 step: pruned at the second of four epochs, never trained further
    assert sorted(bad.intermediate_values) == [0, 1]
    assert bad.user_attrs["pruned_at_epoch"] == 2
    assert bad.user_attrs["pruned_reason"].startswith("pruned at epoch 2 of 4")

    runs = proj.child_runs(result["rounds"][0]["parent_run_id"])
    assert [r.data.tags["state"] for r in runs] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED", "KILLED"]
    assert [len(proj.history(r.info.run_id, "val_accuracy")) for r in runs] == [4, 4, 2]
    assert runs[2].data.tags["pruned_at_epoch"] == "2"
    assert result["rounds"][0]["counts"]["pruned"] == 1
    assert result["best"]["trial"] in (0, 1)


@pytest.mark.slow  # Keras trials: over 10 s
@pytest.mark.filterwarnings("ignore:Fixed parameter lr with value 1000000.0 is out of range")
def test_diverging_keras_trial_is_pruned_with_its_reason_and_the_study_goes_on(proj, monkeypatch):
    keras = keras_module()
    calls = []
    real_clear = keras.backend.clear_session
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: (calls.append(1), real_clear(*a, **k)))

    key = "diabetes_keras_mlp"  # regression, 3 folds, sgd
    study = proj.create_study(key, "minimize")
    study.enqueue_trial({"lr": 1.0e6})  # out of range on purpose: blows up at once
    result = proj.search(key)

    trials = proj.study(key).get_trials()
    # the diverged trial costs the little it trained (at least `MIN_COST`): the budget of 2 runs two more
    assert [t.state for t in trials] == [TS.PRUNED, TS.COMPLETE, TS.COMPLETE], [t.user_attrs for t in trials]
    assert trials[0].user_attrs["budget_cost"] <= 1 / 6 and budget_used(proj.study(key)) == 2.1
    reason = trials[0].user_attrs["pruned_reason"]
    assert reason.startswith("diverged: training diverged: loss = ") and "at epoch 1" in reason
    assert trials[0].params["lr"] == 1.0e6
    assert all(math.isfinite(t.value) for t in trials[1:])
    run = proj.child_runs(result["rounds"][0]["parent_run_id"])[0]
    assert run.info.status == "KILLED" and run.data.tags["reason"].startswith("diverged:")
    # Keras state cleared before every fit (1 fold of the diverged trial, 3 of the others) and after each trial
    assert len(calls) >= 7 + 3


@pytest.mark.slow
def test_kfold_objective_reports_the_running_mean_once_per_fold_and_prunes_by_fold(proj):
    key = "diabetes_numpy_mlp"  # 3 folds; warmup 3 // 4 -> 1 fold
    proj.bench(key)["rounds"] = [{"name": "coarse", "n_trials": 3, "epochs": 3, "pruner": "median",
                                  "reinvest_pruned": False}]  # fmt: skip
    study = proj.create_study(key, "minimize")
    for lr in (1e-1, 5e-2, 1e-4):
        study.enqueue_trial({"lr": lr})
    result = proj.search(key)

    trials = proj.study(key).get_trials()
    assert [t.state for t in trials] == [TS.COMPLETE, TS.COMPLETE, TS.PRUNED]
    for t in trials[:2]:
        assert sorted(t.intermediate_values) == [0, 1, 2], "one report per fold"
        assert all(math.isfinite(v) and v > 0 for v in t.intermediate_values.values())
    assert sorted(trials[2].intermediate_values) == [0, 1]
    assert trials[2].user_attrs["pruned_at_fold"] == 2
    assert "after fold 2 of 3" in trials[2].user_attrs["pruned_reason"]
    runs = proj.child_runs(result["rounds"][0]["parent_run_id"])
    assert len(proj.history(runs[0].info.run_id, "val_mae")) == 3, "the per-epoch curve is the mean over folds"


@pytest.mark.slow
@pytest.mark.parametrize("reinvest", [True, False])
def test_pruned_trials_give_their_unused_epochs_back_to_the_round(proj, reinvest):
    key = "digits_numpy_mlp"
    b = proj.bench(key)
    b["space"] = {"lr": dict(LR)}
    b["rounds"] = [{"name": "coarse", "n_trials": 3, "epochs": 4, "pruner": "median", "reinvest_pruned": reinvest}]
    study = proj.create_study(key, "maximize")
    for lr in (3e-2, 2e-2, 1e-4, 1e-4):  # two good trials, then trials that learn nothing
        study.enqueue_trial({"lr": lr})
    result = proj.search(key)

    study = proj.study(key)
    waiting = study.get_trials(states=(TS.WAITING,))
    assert len(waiting) == (0 if reinvest else 1), "without reinvesting, the fourth configuration never runs"
    trials = study.get_trials(states=(TS.COMPLETE, TS.PRUNED))
    steps = [len(t.intermediate_values) for t in trials]
    if reinvest:  # 1 + 1 + 2/4: half a trial is left, and the next one spends it (pruned at epoch 2 again)
        assert [t.state for t in trials] == [TS.COMPLETE, TS.COMPLETE, TS.PRUNED, TS.PRUNED]
        assert [t.user_attrs.get("budget_cost") for t in trials] == [None, None, 0.5, 0.5]
        assert sum(steps) == 3 * 4, "the round trained exactly its budget: 3 full trials' epochs"
    else:
        assert [t.state for t in trials] == [TS.COMPLETE, TS.COMPLETE, TS.PRUNED]
        assert "budget_cost" not in trials[2].user_attrs and sum(steps) == 4 + 4 + 2
    assert steps[2:] == [2] * (len(trials) - 2)
    assert budget_used(study) == (3.0 if reinvest else 3)
    assert result["rounds"][0]["counts"]["pruned"] == len(trials) - 2
    cost = search_summary.accounting(search_summary.trial_rows(key, result), "maximize")
    assert (cost["trials"], cost["epochs"]) == (len(trials), sum(steps))


@pytest.mark.slow
def test_a_pruned_kfold_trial_costs_the_folds_it_trained(proj):
    key = "diabetes_numpy_mlp"  # 3 folds of 3 epochs; warmup 1 fold
    proj.bench(key)["rounds"] = [{"name": "coarse", "n_trials": 3, "epochs": 3, "pruner": "median"}]
    study = proj.create_study(key, "minimize")
    for lr in (1e-1, 5e-2, 1e-4, 1e-4):
        study.enqueue_trial({"lr": lr})
    proj.search(key)

    trials = proj.study(key).get_trials()
    # 1 + 1 + 2/3 < 3: a fourth trial runs, pruned after 2 of 3 folds as well; 3 1/3 >= 3 ends the round
    assert [t.state for t in trials] == [TS.COMPLETE, TS.COMPLETE, TS.PRUNED, TS.PRUNED]
    assert [round(t.user_attrs["budget_cost"], 6) for t in trials[2:]] == [round(2 / 3, 6)] * 2
    assert budget_used(proj.study(key)) == round(2 + 4 / 3, 6)


# --- budget, resume, interruption --------------------------------------------------------------------


def test_resume_runs_exactly_the_remaining_budget(proj):
    key = "digits_numpy_mlp"
    proj.bench(key)["rounds"][0]["n_trials"] = 5
    first = proj.search(key, n_trials=2)
    assert len(proj.study(key).trials) == 2
    second = proj.search(key)
    study = proj.study(key)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert budget_used(study) == 5
    assert len({t.params["lr"] for t in study.trials}) == 5, "the resumed sampler does not replay the first points"
    assert first["rounds"][0]["parent_run_id"] == second["rounds"][0]["parent_run_id"]
    assert len(proj.child_runs(second["rounds"][0]["parent_run_id"])) == 5
    proj.search(key)  # budget met: nothing more runs
    assert len(proj.study(key).trials) == 5
    assert json.loads(paths.search_result(key).read_text())["rounds"][0]["counts"]["complete"] == 5


def test_a_lowered_budget_reads_the_trials_a_fresh_run_of_it_asks(proj, prepared, tmp_path, monkeypatch):
    """`n_trials` lowered after a run (e.g. `dvc exp run -S ...n_trials=3` after 6): the study keeps its
    extra trials, but the round's best, counts, next round's ranges and accounting equal a fresh run's."""
    key = "digits_numpy_mlp"
    rounds = [{"name": "coarse", "n_trials": 6, "epochs": 3, "pruner": "median"},
              {"name": "fine", "n_trials": 2, "epochs": 3, "pruner": "none", "top_quantile": 0.5}]  # fmt: skip
    proj.raw["search"]["sampler"] = "tpe"
    proj.bench(key)["rounds"] = copy.deepcopy(rounds)
    wide = proj.search(key)
    assert len(proj.study(key).trials) >= 6
    proj.bench(key)["rounds"][0]["n_trials"] = 3
    lowered = proj.search(key)
    assert len(proj.study(key).trials) > 3, "the study keeps what the larger budget ran"

    fresh = Project(tmp_path / "fresh")
    fresh.root.mkdir()
    shutil.copytree(prepared / "data", fresh.root / "data")
    monkeypatch.chdir(fresh.root)
    fresh.raw = copy.deepcopy(proj.raw)
    fresh.raw["tracking"]["uri"] = f"sqlite:///{fresh.root / 'mlflow.db'}"
    expected = fresh.search(key)

    def outcome(result: dict) -> list:
        return [(r["study"], r["budget"], r["budget_used"], r["counts"], r["ranges"], r["best"]["value"],
                 r["best"]["params"], r["best"]["trial"]) for r in result["rounds"]]  # fmt: skip

    assert outcome(lowered) == outcome(expected)
    assert wide["rounds"][0]["best"] != expected["rounds"][0]["best"], "the extra trials changed nothing here"
    assert lowered["best"]["params"] == expected["best"]["params"]

    def rows(root: Path, result: dict) -> list:
        monkeypatch.chdir(root)
        got = search_summary.trial_rows(key, result)
        return [(r["round"], r["trial"], r["state"], r["value"], r["epochs"]) for r in got]

    assert rows(proj.root, lowered) == rows(fresh.root, expected)


def _aged(monkeypatch) -> None:
    """A 1 s grace period, and `is_dead`'s clock 2 s on: a trial that names no worker is dead at once."""
    monkeypatch.setenv("TUNEBENCH_GRACE_S", "1")
    monkeypatch.setattr(stale_trials, "now", lambda: datetime.datetime.now() + datetime.timedelta(seconds=2))


@pytest.mark.slow
def test_crashed_running_trial_is_failed_not_counted_and_retried_while_live_ones_are_left(proj, monkeypatch):
    _aged(monkeypatch)  # the crashed trial names no worker
    key = "digits_numpy_mlp"
    proj.bench(key)["rounds"][0]["n_trials"] = 3
    study = proj.create_study(key, "maximize")
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
            "l2": optuna.distributions.FloatDistribution(1e-7, 1e-2, log=True)}  # fmt: skip
    crashed = study.ask(dist)  # left RUNNING, as by a killed worker: no tell
    mlc = tracking.client(proj.raw["tracking"]["uri"])
    crashed_run = tracking.start_run(mlc, tracking.ensure_experiment(mlc, "digits-numpy_mlp"), "t00")
    crashed.set_user_attr("mlflow_run_id", crashed_run)
    live_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = study.ask(dist)
        owner = {"host": processes.worker_id()["host"], "pid": live_proc.pid,
                 "started": processes.process_start(live_proc.pid)}  # fmt: skip
        compat.storage_of(study).set_trial_user_attr(compat.trial_id(live), stale_trials.WORKER_ATTR, owner)
        proj.search(key)
        trials = {t.number: t for t in proj.study(key).get_trials()}
        assert trials[crashed.number].state == TS.FAIL and trials[crashed.number].user_attrs["interrupted"]
        assert trials[live.number].state == TS.RUNNING, "a trial whose worker still runs is left alone"
        retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == crashed.number]
        assert len(retry) == 1 and retry[0].state == TS.COMPLETE
        assert retry[0].params == crashed.params, "the interrupted configuration is retried"
        assert retry[0].user_attrs["mlflow_run_id"] != crashed_run
        run = mlc.get_run(crashed_run)
        assert run.info.status == "FAILED" and run.data.tags["reason"].startswith("interrupted")
        # the live trial will count once it finishes: 2 finished here + 1 running elsewhere = the budget
        assert budget_used(proj.study(key)) == 2 and claimed(proj.study(key)) == 3 and len(trials) == 4
    finally:
        live_proc.kill()
        live_proc.wait()
    proj.search(key)  # its worker is gone now: failed, and its configuration retried to fill the budget
    trials = {t.number: t for t in proj.study(key).get_trials()}
    assert trials[live.number].state == TS.FAIL and trials[live.number].user_attrs["interrupted"]
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == live.number]
    assert len(retry) == 1 and retry[0].state == TS.COMPLETE and retry[0].params == live.params
    assert budget_used(proj.study(key)) == 3 and len(trials) == 5


@pytest.mark.slow
def test_a_trial_cut_off_while_it_drew_is_drawn_again_whole_as_an_uninterrupted_run_draws_it(proj, monkeypatch):
    _aged(monkeypatch)  # the cut-off trial names no worker
    key = "digits_numpy_mlp"
    proj.bench(key)["rounds"][0]["n_trials"] = 3
    params = proj.write()
    proj.search(key)

    def configurations(trials) -> list:
        return sorted(tuple(sorted(t.params.items())) for t in trials if t.state == TS.COMPLETE)

    uninterrupted = configurations(proj.study(key).get_trials())
    optuna.delete_study(study_name=proj.name(key), storage=open_storage(None, key))

    study = optuna.create_study(study_name=proj.name(key), storage=open_storage(None, key), direction="maximize",
                                sampler=make_sampler(params.search.sampler, params.search.seed))  # fmt: skip
    study.set_user_attr("space", space_to_dict(params.benchmarks[key].space))  # as the search stores it
    cut = study.ask()
    cut.suggest_float("lr", **proj.bench(key)["space"]["lr"])  # killed here: l2 never drawn
    proj.search(key)
    trials = proj.study(key).get_trials()
    assert trials[0].state == TS.FAIL and trials[0].user_attrs["interrupted"]
    assert trials[1].user_attrs[stale_trials.REDRAW_ATTR] == 0 and "failed_trial" not in trials[1].system_attrs
    assert configurations(trials) == uninterrupted and len(uninterrupted) == 3


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_rdb_heartbeat_fails_a_stale_trial_and_retries_it(proj, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_HEARTBEAT_S", "1")
    monkeypatch.setenv("TUNEBENCH_GRACE_S", "1")
    url = f"sqlite:///{proj.root / 'optuna.db'}"
    key = "digits_numpy_mlp"
    proj.bench(key)["rounds"][0]["n_trials"] = 2
    study = proj.create_study(key, "maximize", url=url)
    stale = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    compat.storage_of(study).record_heartbeat(compat.trial_id(stale))  # a worker that beat once, then died
    time.sleep(2.5)
    proj.search(key, storage_url=url)

    trials = proj.study(key, url=url).get_trials()
    assert trials[0].state == TS.FAIL and "interrupted.0" in proj.study(key, url=url).user_attrs
    retried = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0]
    assert len(retried) == 1 and retried[0].state == TS.COMPLETE
    assert retried[0].params["lr"] == stale.params["lr"]
    assert budget_used(proj.study(key, url=url)) == 2 and len(trials) == 3


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_has_a_heartbeat_before_it_names_its_worker(tmp_path, monkeypatch):
    """A worker killed between naming itself on a trial and its first heartbeat would leave, on another host,
    a RUNNING trial nothing ever fails (no heartbeat to go stale): the first beat comes first."""
    import sqlite3

    from pipeline.search.execution.trial_loop import run_trials

    monkeypatch.setenv("TUNEBENCH_HEARTBEAT_S", "60")  # no beat from the thread during the test
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="beat", storage=open_storage(f"sqlite:///{db}", "beat"))
    store, beats_when_named = compat.storage_of(study), []
    set_attr = store.set_trial_user_attr

    def spy(trial_id, key, value):
        if key == stale_trials.WORKER_ATTR:
            with sqlite3.connect(db) as con:
                row = con.execute("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = ?", (trial_id,)).fetchone()
            beats_when_named.append(row[0])
        return set_attr(trial_id, key, value)

    monkeypatch.setattr(store, "set_trial_user_attr", spy)
    run_trials(study, lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2, timeout=None, callbacks=[])
    assert beats_when_named == [1, 1]
    assert [t.state for t in study.get_trials()] == [TS.COMPLETE, TS.COMPLETE]


def test_two_workers_share_one_study_without_duplicates_in_recycled_processes(proj, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_TRIALS_PER_PROCESS", "2")  # each worker slot: 3 trials = a process of 2, then 1
    key = "digits_numpy_mlp"
    proj.bench(key)["rounds"][0]["n_trials"] = 6
    result = proj.search(key, workers=2)
    study = proj.study(key)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state in FINISHED for t in trials) and budget_used(study) == 6
    pids = [t.user_attrs["worker"]["pid"] for t in trials]
    assert len(set(pids)) >= 3 and os.getpid() not in pids, "spawned processes, 2 at a time"
    assert max(pids.count(p) for p in set(pids)) <= 2, "no process runs more than TUNEBENCH_TRIALS_PER_PROCESS"
    assert len({t.params["lr"] for t in trials}) == 6, "every process samples new points (seeded by slot and count)"
    runs = proj.child_runs(result["rounds"][0]["parent_run_id"])
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(6))
    assert {r.info.run_id for r in runs} == {t.user_attrs["mlflow_run_id"] for t in trials}


@pytest.mark.slow  # two launcher processes: over 10 s
def test_two_launchers_on_one_journal_share_each_budget_and_parent_and_draw_apart(proj):
    key = "digits_numpy_mlp"
    budgets = (8, 4)
    proj.bench(key)["hparams"]["units"] = [128, 128]  # slower trials, so that the launchers overlap
    proj.bench(key)["rounds"] = [{"name": "coarse", "n_trials": budgets[0], "epochs": 8, "pruner": "none"},
                                 {"name": "fine", "n_trials": budgets[1], "epochs": 8, "pruner": "none"}]  # fmt: skip
    proj.write()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "pipeline", "search", "--benchmark", key]
    procs = [subprocess.Popen(cmd, cwd=proj.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    parents = set()
    for k, budget in enumerate(budgets):
        study = proj.study(key, k)
        trials = study.get_trials()
        assert budget_used(study) == budget, [(t.number, t.state, t.user_attrs.get("worker")) for t in trials]
        real = [t for t in trials if "surplus" not in t.user_attrs]
        assert len(real) == budget and all(t.state in FINISHED for t in trials)
        assert all(not t.params and t.state == TS.PRUNED for t in trials if "surplus" in t.user_attrs)
        assert len({tuple(sorted(t.params.items())) for t in real}) == budget, "no configuration drawn twice"
        parent = study.user_attrs["mlflow_parent_run_id"]
        parents.add(parent)
        assert len(proj.child_runs(parent)) == budget
    mlc = proj.mlc
    rounds = mlc.search_runs([e.experiment_id for e in mlc.search_experiments()], "tags.kind = 'study_round'")
    assert {r.info.run_id for r in rounds} == parents and len(parents) == 2, "one parent run per round"


@pytest.mark.parametrize("name", ["random", "tpe", "cmaes"])
def test_draws_depend_on_the_trial_number_not_on_the_process(name):
    space = {"lr": ParamRange(low=1e-5, high=1e-1, log=True), "l2": ParamRange(low=1e-7, high=1e-2, log=True)}

    def run(study, n):
        study.optimize(lambda t: sum(suggest(t, space).values()), n_trials=n)
        return [t.params for t in study.trials]

    one = run(optuna.create_study(sampler=make_sampler(name, 7)), 4)
    # the same study continued by fresh processes (a fresh sampler each, same seed): the same draws
    study = optuna.create_study(sampler=make_sampler(name, 7))
    run(study, 2)
    study.sampler = make_sampler(name, 7)
    assert run(study, 2) == one
    assert len({tuple(p.values()) for p in one}) == 4
    assert run(optuna.create_study(sampler=make_sampler(name, 8)), 4) != one


def test_postgresql_urls_name_the_installed_driver(monkeypatch):
    import importlib.util

    installed = {"psycopg2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name in installed else None)
    assert storage.sqlalchemy_url("postgresql://u:pw@db:5432/optuna") == "postgresql+psycopg2://u:pw@db:5432/optuna"
    assert storage.sqlalchemy_url("postgres://u@db/optuna") == "postgresql+psycopg2://u@db/optuna"
    assert storage.sqlalchemy_url("postgresql+psycopg://db/o") == "postgresql+psycopg://db/o", "explicit: kept"
    assert storage.sqlalchemy_url("sqlite:///optuna.db") == "sqlite:///optuna.db"
    installed.add("psycopg")
    assert storage.sqlalchemy_url("postgresql://db/o") == "postgresql://db/o"


def test_trials_per_process_recycles_keras_workers_only(monkeypatch):
    monkeypatch.delenv("TUNEBENCH_TRIALS_PER_PROCESS", raising=False)
    assert memory.trials_per_process("keras_mlp") == memory.TRIALS_PER_PROCESS > 0
    assert memory.trials_per_process("keras_cnn") == memory.TRIALS_PER_PROCESS
    assert memory.trials_per_process("numpy_mlp") == 0
    monkeypatch.setenv("TUNEBENCH_TRIALS_PER_PROCESS", "0")
    assert memory.trials_per_process("keras_mlp") == 0


def test_budget_used_counts_finished_trials_but_not_interrupted_ones():
    study = optuna.create_study()
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state, attrs in [(TS.COMPLETE, {}), (TS.PRUNED, {}), (TS.FAIL, {}), (TS.FAIL, {"interrupted": True})]:
        study.add_trial(optuna.create_trial(state=state, params={"x": 0.5}, distributions=dist, user_attrs=attrs,
                                            value=1.0 if state == TS.COMPLETE else None))  # fmt: skip
    study.enqueue_trial({"x": 0.1})  # WAITING
    study.ask()  # RUNNING
    assert budget_used(study) == 3


# --- rounds, names, time budget, CLI -------------------------------------------------------------------


def test_second_round_narrows_ranges_enqueues_the_best_and_studies_cli_lists_both(proj, capsys):
    key = "digits_numpy_mlp"
    proj.bench(key)["rounds"] = [
        {"name": "coarse", "n_trials": 5, "epochs": 1, "pruner": "none"},
        {"name": "fine", "n_trials": 2, "epochs": 2, "pruner": "none", "top_quantile": 0.4, "enqueue_best": 1},
    ]
    proj.bench(key)["rounds"][1]["pad"] = 0.1  # narrower than the default's: both ranges narrow from 5 trials
    result = proj.search(key)
    coarse, fine = proj.study(key, 0), proj.study(key, 1)
    assert [r["study"] for r in result["rounds"]] == [coarse.study_name, fine.study_name]

    best = coarse.best_trial
    r1, r2 = result["rounds"][0]["ranges"], result["rounds"][1]["ranges"]
    assert r1["lr"] == LR
    for p in ("lr", "l2"):
        w1 = math.log10(r1[p]["high"]) - math.log10(r1[p]["low"])
        w2 = math.log10(r2[p]["high"]) - math.log10(r2[p]["low"])
        assert w2 < w1 and r2[p]["log"], f"{p} narrowed in log space"
        assert r2[p]["low"] <= best.params[p] <= r2[p]["high"]
    assert fine.user_attrs["space"] == r2
    assert any(n.startswith("lr: [0.0001, 0.1] ->") for n in result["rounds"][1]["notes"])

    first = fine.trials[0]
    assert first.params == best.params
    assert first.user_attrs["enqueued_from"] == f"{coarse.study_name}#{best.number}"
    assert fine.trials[1].distributions["lr"].low == pytest.approx(r2["lr"]["low"])
    parent = proj.mlc.get_run(result["rounds"][1]["parent_run_id"])
    assert parent.data.params["n_trials"] == "2" and "range.lr" in parent.data.params
    assert result["best"]["study"] == fine.study_name

    capsys.readouterr()
    assert main(["studies", "--benchmark", key]) == 0
    lines = {ln.split()[0]: ln.split()[1:] for ln in capsys.readouterr().out.splitlines()[1:]}
    assert lines[coarse.study_name][:4] == ["5", "0", "0", "0"]
    assert lines[fine.study_name][:4] == ["2", "0", "0", "0"]


def test_study_name_changes_with_what_defines_a_round_and_only_then(prepared, monkeypatch):
    monkeypatch.chdir(prepared)  # the names hash the processed data's identity: it must be there and current

    def names(mutate=None) -> list[str]:
        raw = copy.deepcopy(BASE)
        raw["benchmarks"]["digits_numpy_mlp"]["rounds"] = [
            {"name": "coarse", "n_trials": 4, "epochs": 1},
            {"name": "fine", "n_trials": 2, "epochs": 2},
        ]
        if mutate:
            mutate(raw)
        params = parse_params(raw)
        return [study_name(params, "digits_numpy_mlp", k) for k in range(2)]

    base = names()
    assert base[0].startswith("digits_numpy_mlp.1-coarse.") and base[1].startswith("digits_numpy_mlp.2-fine.")
    assert names() == base

    def bench(raw):
        return raw["benchmarks"]["digits_numpy_mlp"]

    same = {
        "tracking uri": lambda r: r["tracking"].update(uri="sqlite:///elsewhere.db", log_models=True),
        "workers": lambda r: r["search"].update(workers=4),
        "storage": lambda r: r["search"].update(storage="postgresql://db/optuna"),
        "promotion rule": lambda r: r["promote"].update(min_improvement=0.1),
        "another benchmark": lambda r: r["benchmarks"]["diabetes_numpy_mlp"]["space"]["lr"].update(high=0.5),
        "round 2 budget": lambda r: bench(r)["rounds"][1].update(n_trials=50, timeout=60, reinvest_pruned=False),
        "round 2 warm start off": lambda r: bench(r)["rounds"][1].update(warm_start=False),  # the names before the key
    }
    for what, fn in same.items():
        assert names(fn) == base, f"{what} must not rename the studies"
    both = {
        "a range": lambda r: bench(r)["space"]["lr"].update(high=0.5),
        "fixed hparams": lambda r: bench(r)["hparams"].update(batch_size=32),
        "sampler": lambda r: r["search"].update(sampler="tpe"),
        "search seed": lambda r: r["search"].update(seed=1),
        "round 1 epochs": lambda r: bench(r)["rounds"][0].update(epochs=3),
    }
    for what, fn in both.items():
        changed = names(fn)
        assert changed[0] != base[0] and changed[1] != base[1], what
    with pytest.raises(MissingInputError, match="made from other settings of datasets.digits"):
        names(lambda r: r["datasets"]["digits"]["preprocess"].update(n_components=8))  # not preprocessed so
    only_second = {
        "round 1 budget": lambda r: bench(r)["rounds"][0].update(n_trials=8),  # extends round 1, reshapes round 2
        "round 1 reinvestment": lambda r: bench(r)["rounds"][0].update(reinvest_pruned=False),
        "round 2 epochs": lambda r: bench(r)["rounds"][1].update(epochs=5),
        "round 2 pruner": lambda r: bench(r)["rounds"][1].update(pruner="hyperband"),
        "round 2 warm start": lambda r: bench(r)["rounds"][1].update(warm_start=True),
    }
    for what, fn in only_second.items():
        changed = names(fn)
        assert changed[0] == base[0] and changed[1] != base[1], what


def test_time_budget_stops_a_round_early_and_still_writes_the_result(proj, capsys):
    key = "digits_numpy_mlp"
    proj.bench(key)["rounds"][0].update(n_trials=500, timeout=1.0)  # RoundConfig.timeout
    t0 = time.monotonic()
    result = proj.search(key)
    assert time.monotonic() - t0 < 60
    n1 = len(proj.study(key).trials)
    assert 1 <= n1 < 500
    assert result["rounds"][0]["counts"]["complete"] == n1
    assert json.loads(paths.search_result(key).read_text())["rounds"][0]["study"] == proj.name(key)

    proj.bench(key)["rounds"][0].pop("timeout")  # same study (a budget is not part of its name)
    proj.write()
    paths.search_result(key).unlink()
    assert main(["search", "--benchmark", key, "--timeout", "1"]) == 0  # the CLI's --timeout
    n2 = len(proj.study(key).trials)
    assert n1 < n2 < 500
    written = json.loads(paths.search_result(key).read_text())
    assert written["rounds"][0]["counts"]["complete"] == n2 and written["best"] is not None
    assert f"{key}: best " in capsys.readouterr().out


def test_a_later_round_alone_needs_the_earlier_one(proj):
    key = "digits_numpy_mlp"
    proj.bench(key)["rounds"].append({"name": "fine", "n_trials": 1, "epochs": 1})
    with pytest.raises(MissingInputError, match="round 1 of digits_numpy_mlp .* has not run"):
        proj.search(key, only_round=2)


def test_every_sampler_of_the_schema_is_made_or_refused_with_its_fix():
    import importlib.util

    from pipeline.config import SAMPLERS
    from pipeline.errors import ConfigError

    space = {"lr": ParamRange(low=1e-5, high=1e-1, log=True)}
    for name in SAMPLERS:
        if name == "gp" and importlib.util.find_spec("torch") is None:
            with pytest.raises(ConfigError, match="needs PyTorch.*pip install torch"):
                make_sampler(name, 0, space)
            continue
        study = optuna.create_study(sampler=make_sampler(name, 0, space))
        study.optimize(lambda t: suggest(t, space)["lr"], n_trials=3)
        assert len(study.trials) == 3 and all(t.state == TS.COMPLETE for t in study.trials), name
