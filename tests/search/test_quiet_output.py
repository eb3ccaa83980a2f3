"""What a user sees of a search (issue 27): one short line, bars named `benchmark · round` counting whole trials,
no MLflow INFO lines."""

from __future__ import annotations

import re

import pytest
import yaml
from mlflow import MlflowClient

from conftest import run_cli
from pipeline.config import parse_params
from pipeline.search.progress import SEP

KEY = "digits_numpy_mlp"
PARAMS: dict = {
    "tracking": {"uri": "sqlite:///mlflow.db", "log_models": True},
    "search": {"sampler": "random", "seed": 0, "workers": "auto", "storage": None},
    "promote": {"min_improvement": 0.0},
    "datasets": {"digits": {"source": "builtin", "preprocess": {
        "kind": "pca", "n_components": 16, "val_fraction": 0.25, "test_fraction": 0.2, "seed": 42, "max_rows": 600}}},
    "benchmarks": {KEY: {
        "dataset": "digits", "model": "numpy_mlp", "hparams": {"units": [16], "batch_size": 64},
        "space": {"lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True}},
        "rounds": [{"name": "coarse", "n_trials": 3, "epochs": 2, "pruner": "none"},
                   {"name": "fine", "n_trials": 2, "epochs": 2, "pruner": "none", "top_quantile": 0.5}]}},
}  # fmt: skip


@pytest.mark.slow  # five CLI stages: most of a minute
def test_a_search_prints_a_short_line_named_bars_of_whole_trials_and_no_info(tmp_path):
    parse_params(PARAMS)  # valid
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    for stage in ("fetch", "preprocess"):
        assert run_cli(stage, cwd=tmp_path, timeout=300).returncode == 0
    out = run_cli("search", "--workers", "1", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [x for x in re.split(r"[\r\n]+", out.stderr) if x.strip()]
    assert lines[0] == f"search {KEY}: 1 worker x " + lines[0].split(" x ")[1] and "(" not in lines[0], lines[0]
    assert not [x for x in lines if "INFO" in x or "signature" in x.lower()], out.stderr
    bars = [x for x in lines if SEP in x]
    for rnd, n in (("coarse", 3), ("fine", 2)):
        last = [x for x in bars if x.startswith(f"{KEY}{SEP}{rnd} ")][-1]
        assert "100%|" in last and f"| {n} trials (0 pruned, 0 failed), budget {n}/{n}, best 0." in last, last
    assert not [x for x in lines if re.search(r"\.[0-9a-f]{8}\b", x) or re.search(r"\d\.\d+/\d", x)], bars

    # every run carries the task metric as `score`: complete trials and rounds (validation), the best run (test)
    for stage in ("train_best", "evaluate"):
        done = run_cli(stage, cwd=tmp_path, timeout=600)
        assert done.returncode == 0 and "INFO" not in done.stderr, done.stderr[-2000:]
    mlc = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlc.search_runs([e.experiment_id for e in mlc.search_experiments()], order_by=["metrics.score DESC"])
    trials = [r for r in runs if "trial_number" in r.data.tags]
    rounds = [r for r in runs if "best_value" in r.data.metrics]
    best = [r for r in runs if r.data.tags.get("kind") == "train_best"]
    assert len(trials) == 5 and len(rounds) == 2 and len(best) == 1, [r.info.run_name for r in runs]
    assert all(r.data.metrics["score"] == r.data.metrics["best_val_accuracy"] for r in trials)
    assert all(r.data.metrics["score"] == r.data.metrics["best_value"] for r in rounds)
    assert best[0].data.metrics["score"] == best[0].data.metrics["test_accuracy"]
    assert all(r.data.tags["state"] == "COMPLETE" for r in trials)  # the state column: COMPLETE, PRUNED or FAIL
    scores = [r.data.metrics["score"] for r in runs if "score" in r.data.metrics]
    assert len(scores) >= 8 and scores == sorted(scores, reverse=True), "the runs table sorts by score"


def test_the_bar_counts_whole_trials_of_the_budget_and_the_budget_used_apart(capsys):
    """Surplus trials count nowhere; a reinvested pruned trial is one trial, costing its share of the budget."""
    import optuna

    from pipeline.search.execution.budget import COST_ATTR, SURPLUS_ATTR
    from pipeline.search.progress import ProgressBar

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        if trial.number in (1, 2):
            trial.set_user_attr(COST_ATTR, 0.3)
            raise optuna.TrialPruned()
        if trial.number == 3:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise optuna.TrialPruned()
        return 0.5 + trial.number / 10

    bar = ProgressBar(study, 4, f"b{SEP}fine")
    study.optimize(objective, n_trials=5, callbacks=[bar])
    bar.close(study)
    last = re.split(r"[\r\n]+", capsys.readouterr().err.strip())[-1]
    assert last.startswith(f"b{SEP}fine  65%|"), last
    assert "| 4 trials (2 pruned, 0 failed), budget 2.6/4, best 0.9000 [" in last, last
