"""benchmarks/search_efficiency.py on a tiny run: every method searches within the shared budget,
its figures add up, and each best configuration is retrained and scored on the test split."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

METHODS = ["keras_tuner_hyperband", "tunebench", "optuna_tpe_median", "random_unpruned"]


@pytest.mark.slow
@pytest.mark.dvc  # `project`: dvc repro
def test_quick_comparison_on_digits(project, tmp_path):
    proj, _ = project
    out = tmp_path / "eff.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"), "--project", str(proj), "--problems",
         "digits", "--seeds", "1", "--quick", "--random-extra", "2", "--methods", *METHODS, "--out", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
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
    assert result["machine"]["libraries"]["keras-tuner"]
