"""Compute accounting of a search (`search_summary.accounting`): hand-made trials, then a tiny real search.

The real search runs the NumPy network on digits (PCA, 600 rows; 2 rounds of 4 epochs, median
pruner, a hopeless learning rate enqueued so some trials are pruned) through training the best,
evaluation and the report, and a K-fold one on diabetes (3 folds); the figures must add up to the
trials' reported steps, and each round's MLflow parent run must log the same numbers as
`metrics/<b>.json`'s `search.rounds`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipeline import fileio, paths, search_summary, stages
from pipeline.config import parse_params
from pipeline.search.execution.budget import budget_view, counts_in_budget
from pipeline.search.rounds import run_search, study_name
from pipeline.search.storage import open_storage
from pipeline.search_summary import accounting, busy_seconds, busy_spans, sessions, study_rows, trial_rows

optuna.logging.set_verbosity(optuna.logging.WARNING)
T0 = datetime(2026, 1, 1, 12, 0, 0)
LR = {"low": 1.0e-4, "high": 1.0e-1, "log": True}
ROUND_KEYS = {"trials", "pruned", "epochs", "epochs_saved", "wall_s", "best_at_epochs", "best_at_s",
              "near_best_at_epochs", "near_best_at_s"}  # fmt: skip


def _row(k: int, name: str, trial: int, state: str, value: float | None, epochs: int, full: int, start: float,
         end: float) -> dict:  # fmt: skip
    return {"round": k, "round_name": name, "trial": trial, "state": state, "value": value, "epochs": epochs,
            "full": full, "start": T0 + timedelta(seconds=start), "end": T0 + timedelta(seconds=end)}  # fmt: skip


def test_accounting_of_two_rounds_by_end_time_with_pruned_trials_and_a_gap_between_rounds():
    rows = [  # round 2 starts 91 s after round 1 ends: the gap is no search time
        _row(1, "coarse", 0, "complete", 0.80, 4, 4, 0, 4),
        _row(1, "coarse", 1, "pruned", 0.50, 1, 4, 0, 1),  # a second worker: ends first
        _row(1, "coarse", 2, "complete", 0.896, 4, 4, 4, 9),
        _row(2, "fine", 0, "complete", 0.902, 8, 8, 100, 108),
        _row(2, "fine", 1, "pruned", 0.60, 2, 8, 108, 110),
        _row(2, "fine", 2, "complete", 0.905, 8, 8, 110, 118),
    ]
    got = accounting(rows, "maximize")
    assert got == {
        "trials": 6, "pruned": 2, "epochs": 27, "epochs_saved": 3 + 6, "wall_s": 27.0,
        "best_at_epochs": 27, "best_at_s": 27.0,  # the last trial
        "near_best_at_epochs": 17, "near_best_at_s": 17.0,  # 0.902 >= 0.905 - 0.005 (0.896 is not)
        "rounds": {
            "1-coarse": {"trials": 3, "pruned": 1, "epochs": 9, "epochs_saved": 3, "wall_s": 9.0,
                         "best_at_epochs": 9, "best_at_s": 9.0, "near_best_at_epochs": 9, "near_best_at_s": 9.0},
            "2-fine": {"trials": 3, "pruned": 1, "epochs": 18, "epochs_saved": 6, "wall_s": 18.0,
                       "best_at_epochs": 18, "best_at_s": 18.0, "near_best_at_epochs": 8, "near_best_at_s": 8.0},
        },
    }  # fmt: skip
    assert accounting(rows[3:], "maximize") | {"rounds": {}} == got["rounds"]["2-fine"] | {"rounds": {}}


def test_kfold_rows_cost_folds_times_epochs_and_a_minimised_metric_is_near_within_two_percent():
    study = optuna.create_study(direction="minimize")
    folds, epochs = 3, 5

    def add(state, value, steps, start, end):
        study.add_trial(optuna.trial.FrozenTrial(
            number=-1, trial_id=-1, state=state, value=value, datetime_start=T0 + timedelta(seconds=start),
            datetime_complete=T0 + timedelta(seconds=end), params={}, distributions={}, user_attrs={},
            system_attrs={}, intermediate_values={i: 4.0 - i / 10 for i in range(steps)},
        ))  # fmt: skip

    add(optuna.trial.TrialState.COMPLETE, 3.05, 3, 0, 30)  # within 2% of 3.0
    add(optuna.trial.TrialState.PRUNED, 3.9, 1, 30, 40)  # one fold of three
    add(optuna.trial.TrialState.COMPLETE, 4.0, 3, 40, 70)
    add(optuna.trial.TrialState.COMPLETE, 3.0, 3, 70, 100)
    add(optuna.trial.TrialState.FAIL, None, 2, 100, 120)  # counts, trained two folds, saves nothing
    rows = study_rows(study, 1, "coarse", epochs, folds)
    assert [(r["epochs"], r["full"]) for r in rows] == [(15, 15), (5, 15), (15, 15), (15, 15), (10, 15)]
    got = accounting(rows, "minimize")
    assert got["rounds"] == {"1-coarse": {k: v for k, v in got.items() if k != "rounds"}}
    assert {k: v for k, v in got.items() if k != "rounds"} == {
        "trials": 5, "pruned": 1, "epochs": 60, "epochs_saved": 10, "wall_s": 120.0,
        "best_at_epochs": 50, "best_at_s": 100.0, "near_best_at_epochs": 15, "near_best_at_s": 30.0,
    }  # fmt: skip
    assert [r["epochs"] for r in study_rows(study, 1, "coarse", epochs, None)] == [3, 1, 3, 3, 2], "holdout: steps"


def test_no_completed_trial_gives_the_cost_but_no_best():
    rows = [_row(1, "coarse", 0, "pruned", 0.1, 1, 4, 0, 1), _row(1, "coarse", 1, "fail", None, 0, 4, 1, 2)]
    got = accounting(rows, "maximize")
    assert got["epochs"] == 1 and got["epochs_saved"] == 3 and got["wall_s"] == 2.0
    assert "best_at_epochs" not in got and "near_best_at_s" not in got["rounds"]["1-coarse"]


def test_wall_time_is_the_union_of_busy_intervals_and_never_counts_the_gap_before_an_extension():
    rows = [  # round 1 on two workers, then extended 12 minutes later (n_trials raised); round 2 after it
        _row(1, "coarse", 0, "complete", 0.80, 4, 4, 0, 4),
        _row(1, "coarse", 1, "complete", 0.85, 4, 4, 1, 3),  # overlaps trial 0: counted once
        _row(1, "coarse", 2, "complete", 0.906, 4, 4, 700, 702),
        _row(1, "coarse", 3, "complete", 0.70, 4, 4, 701, 705),
        _row(2, "fine", 0, "complete", 0.91, 8, 8, 800, 810),
    ]
    got = accounting(rows, "maximize")
    assert got["rounds"]["1-coarse"]["wall_s"] == 4 + 5  # not 705: the idle minutes between the runs are left out
    assert got["rounds"]["1-coarse"]["best_at_s"] == 4 + 2  # busy time up to trial 2's end
    assert got["wall_s"] == 9 + 10 and got["best_at_s"] == 19.0 and got["near_best_at_s"] == 6.0
    spans = busy_spans(rows[:4])
    assert [((a - T0).total_seconds(), (b - T0).total_seconds()) for a, b in spans] == [(0, 4), (700, 705)]
    assert busy_seconds(spans) == 9 and busy_seconds(spans, T0 + timedelta(seconds=702)) == 6
    assert sessions(spans) == 2 and sessions(busy_spans(rows[:2])) == 1 and sessions([]) == 0
    near = [_row(1, "coarse", 0, "complete", 0.8, 1, 1, 0, 10), _row(1, "coarse", 1, "complete", 0.8, 1, 1, 70, 80)]
    assert sessions(busy_spans(near)) == 1, "a gap of 60 s or less is the same session"


# --- a tiny real search ------------------------------------------------------------------------------------------

RAW: dict = {
    "tracking": {"uri": "sqlite:///mlflow.db", "log_models": False},
    "search": {"sampler": "random", "seed": 0, "workers": 1, "storage": None},
    "promote": {"min_improvement": 0.0},
    "datasets": {
        "digits": {"source": "builtin", "preprocess": {"kind": "pca", "n_components": 16, "val_fraction": 0.25,
                                                       "test_fraction": 0.2, "seed": 42, "max_rows": 600}},
        "diabetes": {"source": "builtin", "preprocess": {"kind": "standardize", "kfold": 3, "test_fraction": 0.2,
                                                         "seed": 42}},
    },
    "benchmarks": {
        "digits_numpy_mlp": {
            "dataset": "digits", "model": "numpy_mlp", "hparams": {"units": [32], "batch_size": 64},
            "space": {"lr": dict(LR)},
            "rounds": [{"name": "coarse", "n_trials": 4, "epochs": 4, "pruner": "median"},
                       {"name": "fine", "n_trials": 3, "epochs": 4, "pruner": "median", "enqueue_best": 0}],
        },
        "diabetes_numpy_mlp": {
            "dataset": "diabetes", "model": "numpy_mlp", "hparams": {"units": [32], "batch_size": 32},
            "space": {"lr": dict(LR)},
            "rounds": [{"name": "coarse", "n_trials": 3, "epochs": 3, "pruner": "median"}],
        },
    },
}  # fmt: skip


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE", "TUNEBENCH_THREADS", "TUNEBENCH_TRIALS_PER_PROCESS"):
        monkeypatch.delenv(var, raising=False)
    raw = json.loads(json.dumps(RAW))
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = parse_params(raw)
    for ds in params.datasets:
        stages.fetch(params, ds)
        stages.preprocess(params, ds)
    return params


def _enqueue(params, key: str, direction: str, lrs: tuple[float, ...]) -> None:
    """Round 1's first trials: two good learning rates start the median, then hopeless ones (pruned)."""
    study = optuna.create_study(study_name=study_name(params, key, 0), storage=open_storage(None, key),
                                direction=direction)  # fmt: skip
    for lr in lrs:
        study.enqueue_trial({"lr": lr})


def _parent_figures(params, run_id: str) -> dict:
    metrics = MlflowClient(tracking_uri=params.tracking_uri()).get_run(run_id).data.metrics
    return {k.removeprefix("compute."): v for k, v in metrics.items() if k.startswith("compute.")}


def _check_adds_up(rows: list[dict], got: dict, folds: int | None, result: dict) -> None:
    epochs = {r["round"]: r["epochs"] for r in result["rounds"]}
    assert got["epochs"] == sum(len(t["steps"]) * (epochs[t["round_name"]] if folds else 1) for t in rows)
    full = {n: e * (folds or 1) for n, e in epochs.items()}
    assert got["epochs_saved"] == sum(full[t["round_name"]] - t["epochs"] for t in rows if t["state"] == "pruned")
    assert got["epochs_saved"] > 0 and got["pruned"] > 0
    assert 0 < got["near_best_at_epochs"] <= got["best_at_epochs"] <= got["epochs"]
    assert 0 <= got["near_best_at_s"] <= got["best_at_s"] <= got["wall_s"] + 0.1  # each rounded to 0.1 s
    for name, block in got["rounds"].items():
        assert set(block) == ROUND_KEYS, name
        assert block["near_best_at_epochs"] <= block["best_at_epochs"] <= block["epochs"]
    assert sum(b["epochs"] for b in got["rounds"].values()) == got["epochs"]
    assert sum(b["epochs_saved"] for b in got["rounds"].values()) == got["epochs_saved"]


def _with_steps(params, key: str, result: dict, folds: int | None) -> list[dict]:
    """`trial_rows` plus each trial's reported steps, read from the studies independently."""
    rows = trial_rows(key, result)
    storage = open_storage(None, key)
    steps = {}
    for rnd in result["rounds"]:
        for t in optuna.load_study(study_name=rnd["study"], storage=storage).trials:
            steps[(rnd["round"], t.number)] = sorted(t.intermediate_values)
    return [r | {"steps": steps[(r["round_name"], r["trial"])]} for r in rows]


@pytest.mark.slow  # a search, train_best, evaluate and report: over 10 s
def test_a_real_search_accounts_for_every_epoch_in_metrics_parent_runs_and_leaderboard(project):
    params, key = project, "digits_numpy_mlp"
    _enqueue(params, key, "maximize", (3e-2, 2e-2, 1e-4, 1e-4))
    result = run_search(params, key)
    stages.train_best(params, key)
    stages.evaluate(params, key)
    stages.report(params)

    got = fileio.read_json(paths.accounting_file(key))
    metrics = fileio.read_json(paths.metrics_file(key))  # a few columns each in `dvc exp show`: the rest moved to `got`
    assert metrics["search"] == {k: got[k] for k in ("trials", "pruned", "epochs", "wall_s", "best_at_epochs")}
    assert set(metrics["test"]) == {"accuracy", "loss"} and set(metrics["baseline"]) == {"accuracy"}
    assert set(metrics) <= {"test", "baseline", "search", "test_seeds", "test_ensemble", "test_single"}
    assert set(metrics.get("test_seeds", {"mean": 0, "ci_low": 0, "ci_high": 0})) == {"mean", "ci_low", "ci_high"}
    rows = _with_steps(params, key, result, None)
    assert got["trials"] == len(rows) > 7, "pruned trials gave back epochs: more than the 4 + 3 trials ran"
    for name, n_trials, block in zip(("1-coarse", "2-fine"), (4, 3), got["rounds"].values(), strict=True):
        # each round trains its budget in epochs (`reinvest_pruned`), overrun by less than one trial
        assert n_trials * 4 <= block["epochs"] < (n_trials + 1) * 4, (name, block)
    assert all(r["epochs"] == len(r["steps"]) for r in rows) and any(r["epochs"] < 4 for r in rows)
    _check_adds_up(rows, got, None, result)
    assert got == accounting(trial_rows(key, result), "maximize") | {"selection": got["selection"]}
    assert list(got["rounds"]) == ["1-coarse", "2-fine"]
    for k, rnd in enumerate(result["rounds"]):
        assert _parent_figures(params, rnd["parent_run_id"]) == got["rounds"][f"{k + 1}-{rnd['round']}"]

    row = pd.read_csv(paths.LEADERBOARD_CSV).iloc[0]
    for column in ("epochs", "epochs_saved", "best_at_epochs", "best_at_s", "near_best_at_epochs"):
        assert row[column] == got[column], column
    md = paths.LEADERBOARD_MD.read_text()
    assert f"| {got['epochs']} ({got['epochs_saved']}) | {got['best_at_epochs']}, {got['best_at_s']:g} |" in md


@pytest.mark.slow  # a K-fold search: over 10 s
def test_kfold_search_counts_each_reported_fold_as_the_rounds_epochs(project):
    params, key = project, "diabetes_numpy_mlp"
    _enqueue(params, key, "minimize", (1e-1, 5e-2, 1e-4, 1e-4))
    result = run_search(params, key)
    folds = len(fileio.read_json(paths.processed_manifest("diabetes"))["folds"])
    rows = _with_steps(params, key, result, folds)
    got = accounting(rows, "minimize")
    # the pruned third trial gave back a third of a trial: a fourth one ran (pruned after 2 folds too)
    assert folds == 3 and [len(r["steps"]) for r in rows] == [3, 3, 2, 2]
    assert got["epochs"] == 3 * 3 + 3 * 3 + 2 * 3 + 2 * 3 and got["epochs_saved"] == 3 + 3
    _check_adds_up(rows, got, folds, result)
    assert _parent_figures(params, result["rounds"][0]["parent_run_id"]) == got["rounds"]["1-coarse"]


def _runs(params, query: str) -> list:
    mlc = MlflowClient(tracking_uri=params.tracking_uri())
    return mlc.search_runs([e.experiment_id for e in mlc.search_experiments()], query, max_results=1000)


@pytest.mark.slow
def test_an_extended_study_counts_only_busy_time_and_its_superseded_runs_are_tagged(project, monkeypatch):
    """Raising round 1's `n_trials` after a finished search extends its study (12 idle minutes counted as search
    time before) and starts a new round-2 study: the old round-2 runs, and the first best run, are superseded."""
    monkeypatch.setattr(search_summary, "SESSION_GAP_S", 3.0)  # the 5 s pause below is a new session, not 60 s
    key, raw = "digits_numpy_mlp", json.loads(json.dumps(RAW))
    raw["tracking"]["uri"] = project.tracking.uri
    t0 = time.time()
    first = run_search(project, key)
    t1 = time.time()
    best1 = stages.train_best(project, key)["run_id"]
    time.sleep(5)
    raw["benchmarks"][key]["rounds"][0]["n_trials"] = 6
    extended = parse_params(raw)
    t2 = time.time()
    second = run_search(extended, key)
    t3 = time.time()
    best2 = stages.train_best(extended, key)["run_id"]
    stages.evaluate(extended, key)

    assert first["rounds"][0]["study"] == second["rounds"][0]["study"], "round 1's study was extended"
    old, new = first["rounds"][1]["study"], second["rounds"][1]["study"]
    assert old != new, "round 2's study name covers round 1's settings"
    got = fileio.read_json(paths.accounting_file(key))
    spent = 0.0  # seconds in trials; one worker, so their durations add up
    for k, rnd in enumerate(second["rounds"], start=1):
        study = budget_view(optuna.load_study(study_name=rnd["study"], storage=open_storage(None, key)), rnd["budget"])
        ran = [t for t in study.trials if counts_in_budget(study.user_attrs, t)]
        took = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ran)
        assert abs(got["rounds"][f"{k}-{rnd['round']}"]["wall_s"] - took) <= 0.1, (k, got["rounds"], took)
        spent += took
    assert abs(got["wall_s"] - spent) <= 0.2, (got["wall_s"], spent)
    assert got["wall_s"] < (t1 - t0) + (t3 - t2), "no more than the two searches took"
    assert got["rounds"]["1-coarse"]["wall_s"] < t2 - t1, "the idle time between the runs is not search time"
    assert got["best_at_s"] <= got["wall_s"] + 0.1

    mlc = MlflowClient(tracking_uri=extended.tracking_uri())
    parent1 = mlc.get_run(second["rounds"][0]["parent_run_id"])
    assert parent1.info.run_id == first["rounds"][0]["parent_run_id"]
    assert parent1.data.tags["sessions"] == "2" and "superseded" not in parent1.data.tags
    assert float(parent1.data.tags["busy_s"]) == parent1.data.metrics["compute.wall_s"]
    assert mlc.get_run(second["rounds"][1]["parent_run_id"]).data.tags["sessions"] == "1"
    stale = _runs(extended, f"tags.study_name = '{old}'")
    assert len(stale) >= 1 + 3 and all(r.data.tags.get("superseded") == new for r in stale), "parent and trials"
    assert all(r.data.tags["mlflow.note.content"].startswith("Superseded: ") for r in stale)
    current = [r for rnd in second["rounds"] for r in _runs(extended, f"tags.study_name = '{rnd['study']}'")]
    assert len(current) >= 2 + 6 + 3 and not any("superseded" in r.data.tags for r in current)
    assert mlc.get_run(best1).data.tags["superseded"] == best2 and "superseded" not in mlc.get_run(best2).data.tags
    assert len(_runs(extended, "tags.kind = 'train_best' and tags.superseded IS NULL")) == 1

    third = run_search(project, key)  # the configuration changed back: the first round-2 study is current again
    assert third["rounds"][1]["study"] == old
    assert not any("superseded" in r.data.tags for r in _runs(project, f"tags.study_name = '{old}'"))
    note = mlc.get_run(first["rounds"][1]["parent_run_id"]).data.tags["mlflow.note.content"]
    assert note.startswith("Optuna study `"), note
    assert all(r.data.tags.get("superseded") == old for r in _runs(project, f"tags.study_name = '{new}'"))


def test_the_trials_table_must_be_the_search_results_own(tmp_path, monkeypatch):
    """Later stages read trials from `results/search/<b>.trials.json` only: a missing table, or one left by
    another search (other studies), is refused with the command that writes both, never read as this one's."""
    from pipeline import fileio, paths
    from pipeline.errors import MissingInputError

    monkeypatch.chdir(tmp_path)
    key = "digits_numpy_mlp"
    result = {"rounds": [{"study": f"{key}.1-coarse.aaaa"}, {"study": f"{key}.2-fine.bbbb"}]}
    missing = rf"trials\.json is missing; rerun `tunebench search --benchmark {key}`"
    with pytest.raises(MissingInputError, match=missing):
        trial_rows(key, result)
    row = {"round": 1, "round_name": "coarse", "trial": 0, "state": "complete", "value": 0.9, "epochs": 2, "full": 2,
           "start": "2026-12-07T05:00:00", "end": "2026-12-07T05:00:09", "counted": True, "params": {"lr": 0.01},
           "values": [0.8, 0.9], "study": f"{key}.1-coarse.aaaa"}  # fmt: skip
    fileio.write_json_atomic(paths.search_trials(key), {"studies": [f"{key}.1-coarse.old"], "trials": [row]})
    with pytest.raises(MissingInputError, match="holds other studies than the search result names"):
        trial_rows(key, result)
    surplus = {**row, "trial": 1, "counted": False}
    fileio.write_json_atomic(paths.search_trials(key), {"studies": [r["study"] for r in result["rounds"]],
                                                    "trials": [row, surplus]})  # fmt: skip
    (got,) = trial_rows(key, result)
    assert got["params"] == {"lr": 0.01} and (got["end"] - got["start"]).total_seconds() == 9
