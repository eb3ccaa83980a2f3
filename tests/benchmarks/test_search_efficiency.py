"""benchmarks/search_efficiency.py on a tiny run: every method searches within the shared budget,
its figures add up, and each best configuration is retrained and scored on the test split. Both runs read
digits as the shipped params.yaml preprocesses it, fetched and preprocessed once by the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.runner import load
from conftest import ROOT

METHODS = ["keras_tuner_hyperband", "tunebench", "optuna_tpe_median", "random_unpruned"]
BUDGETED = ["keras_tuner_hyperband", "tunebench", "optuna_tpe_median", "optuna_tpe_hyperband"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """A project folder with the shipped params.yaml and digits (scikit-learn's builtin data) preprocessed."""
    proj = tmp_path_factory.mktemp("efficiency")
    shutil.copy(ROOT / "params.yaml", proj / "params.yaml")
    for stage in ("fetch", "preprocess"):
        done = subprocess.run([sys.executable, "-m", "pipeline", stage, "--dataset", "digits"], cwd=proj,
                              env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return proj


@pytest.mark.slow
def test_quick_comparison_on_digits(digits, tmp_path):
    out = tmp_path / "eff.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.search_efficiency", "--project", str(digits), "--problems",
         "digits", "--seeds", "1", "--quick", "--random-extra", "2", "--retrains", "1", "--methods", *METHODS,
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    saved = load(out)
    result = saved["figures"]
    runs = {r["method"]: r for r in result["runs"]}
    assert list(runs) == METHODS
    budget = runs["keras_tuner_hyperband"]["epochs"]
    assert budget == runs["tunebench"]["budget"] > 0
    for name, r in runs.items():
        assert r["epochs"] <= budget, (name, r["epochs"], budget)
        assert 0.5 < r["test"] <= 1.0 and 0.5 < r["best_val"] <= 1.0, r
        assert r["best_any_val"] >= r["best_val"]
        if r["near_epochs"] is not None:
            assert 0 < r["near_epochs"] <= r["searched_epochs"]
    # unpruned random search ran on past the budget for its near-best mark, at whole trials of 4 epochs
    assert budget < runs["random_unpruned"]["searched_epochs"] <= 2 * budget
    assert runs["random_unpruned"]["searched_epochs"] % 4 == 0
    # tunebench's epochs are those its own metrics count: its schedule's trials, pruned ones cut short
    rounds = runs["tunebench"]["rounds"]
    assert runs["tunebench"]["epochs"] <= sum(r["n_trials"] * r["epochs"] for r in rounds) <= budget
    assert any(r["near_epochs"] is not None for r in runs.values())  # the best method is near its own best
    assert {s["method"] for s in result["summary"]} == set(METHODS)
    assert "test_at_least_hyperband" in result["targets"]["digits_pca_mlp"]
    assert saved["versions"]["keras-tuner"] and saved["command"].startswith("python -m benchmarks.search_efficiency")


@pytest.mark.slow  # 2 seeds x 4 methods of real training: minutes
def test_budget_in_full_trials_is_every_methods_budget(digits, tmp_path):
    """`--budget-trials 4` on the quick setting (4-epoch trials) of digits, fetched and preprocessed on its
    own (scikit-learn's builtin data): every method (the two whose budgets are sized in code, and the two
    Optuna scripts, one of them with the Hyperband pruner), Keras Tuner Hyperband's iterations included, trains
    at most 4 x 4 epochs, tunebench's two rounds are sized to add up to at most that (its epochs may pass
    it by less than one trial a round: with pruned trials reinvested, a round's last trial can start with
    part of a trial's budget left), and the summary pairs tunebench's test score with each peer's by seed."""
    out = tmp_path / "eff.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.search_efficiency", "--project", str(digits), "--problems",
         "digits", "--seeds", "2", "--quick", "--budget-trials", "4", "--retrains", "2", "--methods", *BUDGETED,
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = load(out)["figures"]
    assert result["budget_trials"] == 4 and result["retrains"] == 2
    assert {r["method"] for r in result["runs"]} == set(BUDGETED)
    for r in result["runs"]:
        assert r["budget"] == 16, r
        assert 0.5 < r["test"] <= 1.0, r
        assert r["retrain_seeds"] == [r["seed"] + 1000, r["seed"] + 2000] and r["trial_epochs"] == 4
        assert r["test"] == pytest.approx(sum(r["test_retrains"]) / 2, abs=1e-5)
        if r["method"] != "tunebench":
            assert 0 < r["epochs"] <= 16 and r["searched_epochs"] <= 16, (r["method"], r["epochs"])
            continue
        assert sum(x["n_trials"] * x["epochs"] for x in r["rounds"]) <= 16
        assert 0 < r["epochs"] < 16 + sum(x["epochs"] for x in r["rounds"]), r["epochs"]
    pairs = result["paired"]
    assert {p["peer"] for p in pairs} == set(BUDGETED) - {"tunebench"}
    for p in pairs:
        assert p["seeds"] == 2 and p["ci95"][0] <= p["diff"] <= p["ci95"][1]
        assert p["t_p"] is None or 0 <= p["t_p"] <= 1
    goal = result["targets"]["digits_pca_mlp"]
    assert goal["best_peer"] in {p["peer"] for p in pairs}
    assert isinstance(goal["test_at_least_best_peer_within_noise"], bool)


def test_default_selection_runs_where_it_fits_a_fifth_of_the_budget(digits):
    from benchmarks.efficiency_methods import budget_selection, selection_epochs, tunebench_rounds
    from benchmarks.search_efficiency import problems

    problem = problems(False, digits)["digits"]  # 8-epoch trials on a holdout split
    assert selection_epochs(problem, None) == 3 * 2 * 8
    assert budget_selection(problem, 30 * 8, None) == {}  # the defaults: 6 of 30 full trials
    assert budget_selection(problem, 29 * 8, None) == {"repeats": 0}
    rounds = tunebench_rounds(problem, 30 * 8, None, reserve=48)
    assert sum(r["n_trials"] * r["epochs"] for r in rounds) <= 30 * 8 - 48


@pytest.mark.slow  # one real tunebench search of digits with robust selection: about a minute
def test_tunebench_counts_its_robust_selection_in_the_budget(digits):
    from benchmarks.efficiency_methods import run_tunebench
    from benchmarks.search_efficiency import problems
    from pipeline.features import ProcessedData

    problem = problems(True, digits)["digits"]  # 4-epoch trials
    data = ProcessedData.load(digits / "data" / "processed" / "digits")
    trace = run_tunebench(problem, data, 8 * 4, 0, selection={"top_k": 2, "repeats": 1})
    assert trace.selection == {"top_k": 2, "repeats": 1, "epochs": 2 * 4}
    assert sum(r["n_trials"] * r["epochs"] for r in trace.rounds) <= 8 * 4 - 2 * 4  # room left for selection
    *trials, last = trace.events
    assert last[0] == trace.epochs and last[2] is None  # selection: epochs spent, no new candidate
    assert trace.epochs - trials[-1][0] == 2 * 4
    assert trace.epochs <= 8 * 4 + sum(r["epochs"] for r in trace.rounds)


def test_merge_replaces_a_methods_rows_and_refuses_mixed_budgets(tmp_path):
    from benchmarks.runner import SCHEMA
    from benchmarks.search_efficiency import main

    def result(name: str, budget: int | None, rows: list[dict]) -> Path:
        figures = {"quick": False, "budget_trials": budget, "total_s": 1.0, "runs": rows}
        path = tmp_path / name
        path.write_text(json.dumps({k: {"figures": figures, "command": f"run {name}"}.get(k, {}) for k in SCHEMA}))
        return path

    def row(method: str, seed: int, test: float) -> dict:
        return {"problem": "digits_pca_mlp", "seed": seed, "method": method, "budget": 240, "epochs": 240,
                "wall_s": 1.0, "trials": 9, "best_val": 0.98, "test": test, "near_epochs": 100, "near_s": 1.0,
                "searched_epochs": 240, "best_any_val": 0.99, "best_params": {}, "rounds": None}  # fmt: skip

    first = result("a.json", 30, [row(m, s, 0.97) for m in ("tunebench", "optuna_tpe_median") for s in (0, 1)])
    rerun = result("b.json", 30, [row("tunebench", 0, 0.99), row("tunebench", 1, 0.98)])
    out = tmp_path / "merged.json"
    assert main(["--merge", str(first), str(rerun), "--out", str(out)]) == 0
    assert load(out)["figures"]["merged"] == ["run a.json", "run b.json"]  # where the rows came from
    runs = load(out)["figures"]["runs"]
    assert sorted((r["method"], r["seed"], r["test"]) for r in runs) == [
        ("optuna_tpe_median", 0, 0.97), ("optuna_tpe_median", 1, 0.97), ("tunebench", 0, 0.99), ("tunebench", 1, 0.98)
    ]  # fmt: skip
    other = result("c.json", None, [row("tunebench", 2, 0.9)])
    with pytest.raises(SystemExit):
        main(["--merge", str(first), str(other), "--out", str(tmp_path / "x.json")])


@pytest.mark.slow  # three real retrains of 2 epochs
def test_rescore_averages_retrains_of_each_chosen_configuration(digits, tmp_path):
    """`--rescore` retrains each chosen configuration of a seed on seeds no search trained with (two methods
    that chose the same one share its retrains), makes `test` their mean and keeps the old one-retrain score
    apart, resumes from its own output without retraining, extends to more retrains keeping the earlier ones,
    refuses fewer; `--merge` refuses rows scored by different numbers of retrains."""
    from benchmarks.runner import SCHEMA
    from benchmarks.search_efficiency import main

    same = {"lr": 3e-3, "l2": 1e-5, "dropout": 0.1, "units": 32, "depth": 1, "batch_size": 64}
    other = {**same, "lr": 1e-2}

    def row(method: str, params: dict) -> dict:
        return {"problem": "digits_pca_mlp", "seed": 0, "method": method, "budget": 8, "epochs": 8, "wall_s": 1.0,
                "trials": 4, "best_val": 0.9, "test": 0.5, "near_epochs": 4, "near_s": 1.0, "searched_epochs": 8,
                "best_any_val": 0.9, "best_params": params, "rounds": None}  # fmt: skip

    def write(name: str, rows: list[dict]) -> Path:
        path = tmp_path / name
        figures = {"quick": False, "budget_trials": 2, "total_s": 1.0, "runs": rows}
        path.write_text(json.dumps({k: {"figures": figures, "command": f"run {name}"}.get(k, {}) for k in SCHEMA}))
        return path

    earlier = write("earlier.json", [row("tunebench", same), row("optuna_tpe_median", same), row("random", other)])
    out = tmp_path / "rescored.json"
    with pytest.raises(SystemExit):  # trial length not recorded in these rows: refused rather than assumed
        main(["--rescore", str(earlier), "--project", str(digits), "--retrains", "2", "--out", str(out)])
    assert not out.exists()
    args = ["--project", str(digits), "--epochs", "2", "--retrains"]
    assert main(["--rescore", str(earlier), *args, "2", "--out", str(out)]) == 0
    result = load(out)["figures"]
    runs = {r["method"]: r for r in result["runs"]}
    assert result["retrains"] == 2 and result["merged"] == ["run earlier.json"]
    for r in runs.values():
        assert r["retrain_seeds"] == [1000, 2000] and r["trial_epochs"] == 2  # never the search's seed 0 (+ fold)
        assert r["test_single"] == 0.5 and all(0.5 < x <= 1.0 for x in r["test_retrains"])  # real retrains
        assert r["test"] == pytest.approx(sum(r["test_retrains"]) / 2, abs=1e-5)  # the old score left out
    assert runs["tunebench"]["test_retrains"] == runs["optuna_tpe_median"]["test_retrains"]
    summary = {s["method"]: s["test"][0] for s in result["summary"]}
    assert summary["tunebench"] == pytest.approx(runs["tunebench"]["test"], abs=1e-4)  # the summary reads the mean
    resumed = tmp_path / "resumed.json"
    assert main(["--rescore", str(out), *args, "2", "--out", str(resumed)]) == 0
    assert load(resumed)["figures"]["runs"] == result["runs"]  # nothing left to retrain: the same values
    with pytest.raises(SystemExit):  # the rows' recorded trial length wins; another --epochs is refused
        main(["--rescore", str(out), "--project", str(digits), "--epochs", "3", "--retrains", "3",
              "--out", str(tmp_path / "longer.json")])  # fmt: skip
    with pytest.raises(SystemExit):  # fewer retrains than the rows have: refused, not silently cut
        main(["--rescore", str(out), *args, "1", "--out", str(tmp_path / "fewer.json")])
    extended = tmp_path / "extended.json"
    assert main(["--rescore", str(out), *args, "3", "--out", str(extended)]) == 0
    for before, after in zip(result["runs"], load(extended)["figures"]["runs"], strict=True):
        assert after["retrain_seeds"] == [1000, 2000, 3000]
        assert after["test_retrains"][:2] == before["test_retrains"] and after["test_single"] == 0.5
    with pytest.raises(SystemExit):
        main(["--merge", str(write("single.json", [row("keras_tuner_random", other)])), str(out),
              "--out", str(tmp_path / "mixed.json")])  # fmt: skip
