"""Robust selection: the last round's top configurations are trained again with fresh seeds and reshuffled
folds, the best is chosen by their mean, the repeats are kept (result, MLflow) and a rerun resumes them."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from conftest import cli_ok
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer
from fixtures_datasets import CSV_BENCH as BENCH
from fixtures_datasets import csv_bytes as _csv
from fixtures_datasets import csv_project as _params

from pipeline.search.objective import HPARAMS_ATTR, trial_hparams


@pytest.mark.slow  # a search and the retraining of its top trials: over 10 s
def test_top_configurations_are_retrained_and_chosen_by_their_mean(tmp_path):
    d = load_breast_cancer()
    _params(tmp_path, "a.csv", _csv(d.data[:300], d.target[:300]), kfold=3)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["benchmarks"][BENCH]["rounds"][0]["n_trials"] = 5
    params["benchmarks"][BENCH]["selection"] = {"top_k": 2, "repeats": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("fetch", "preprocess"):
        cli_ok(stage, "--dataset", "mine", cwd=tmp_path)
    first = cli_ok("search", "--benchmark", BENCH, cwd=tmp_path).stderr
    assert "selection 4/4" in first
    result = json.loads((tmp_path / "results" / "search" / f"{BENCH}.json").read_text())
    sel = result["selection"]
    assert (sel["top_k"], sel["repeats"], len(sel["candidates"])) == (2, 2, 2)
    values = [c["search_value"] for c in sel["candidates"]]
    assert values == sorted(values, reverse=True)  # the round's two best, best first
    assert all(len(c["scores"]) == 2 and c["mean"] == sum(c["scores"]) / 2 for c in sel["candidates"])
    assert any(s != c["search_value"] for c in sel["candidates"] for s in c["scores"])  # other folds, other scores
    chosen = sel["candidates"][sel["chosen"]]
    assert chosen["mean"] == max(c["mean"] for c in sel["candidates"])
    assert result["best"]["params"] == chosen["params"] and result["best"]["value"] == chosen["mean"]
    assert result["best"]["hparams"] == chosen["hparams"] == {**chosen["hparams"], **chosen["params"]}  # resolved
    assert result["best"]["selected_by"] == "mean of 2 repeats, top 2"
    assert sel["epochs"] == 4 * 1 * 3  # 4 repeats of 1 epoch over 3 folds

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("mine-linear").experiment_id],
        "tags.kind = 'selection'",
    )
    assert len(runs) == 1 and runs[0].data.tags["chosen_trial"] == str(chosen["trial"])
    assert runs[0].data.metrics[f"t{chosen['trial']}.mean_val_accuracy"] == chosen["mean"]

    # a rerun after a kill during the last repeat trains only that repeat, and logs a new selection run
    cache = tmp_path / "studies" / BENCH / "selection.json"
    saved = json.loads(cache.read_text())
    last = str(sel["candidates"][1]["trial"])
    saved["scores"][last] = saved["scores"][last][:1]
    cache.write_text(json.dumps(saved))
    again = cli_ok("search", "--benchmark", BENCH, cwd=tmp_path).stderr
    assert "selection 4/4" in again and "selection 3/4" not in again
    resumed = json.loads((tmp_path / "results" / "search" / f"{BENCH}.json").read_text())["selection"]
    assert resumed["candidates"] == sel["candidates"] and resumed["chosen"] == sel["chosen"]  # the same seeds again
    quiet = cli_ok("search", "--benchmark", BENCH, cwd=tmp_path).stderr  # nothing left: nothing trained or logged
    assert "selection" not in quiet
    assert len(MlflowClient(tracking_uri=uri).search_runs([runs[0].info.experiment_id], "tags.kind = 'selection'")) == 2


def test_a_trial_is_trained_with_the_hyperparameters_it_recorded():
    """A trial records its resolved hyperparameters (what selection and `train_best` train); one recorded by an
    earlier version without them, in a resumed study, has them resolved from its sampled values."""
    study = optuna.create_study()
    recorded = {"regularizer": "l2", "l2": 0.5, "l1": None, "max_iter": 50}
    study.add_trial(
        optuna.trial.create_trial(
            params={"l2": 0.5},
            value=0.9,
            user_attrs={HPARAMS_ATTR: recorded},
            distributions={"l2": optuna.distributions.FloatDistribution(0.1, 1)},
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            params={"l2": 0.2}, value=0.8, distributions={"l2": optuna.distributions.FloatDistribution(0.1, 1)}
        )
    )
    new, old = study.trials
    assert trial_hparams(new, "linear", "binary", {"max_iter": 10}) == recorded
    assert trial_hparams(old, "linear", "binary", {"max_iter": 10}) == {**recorded, "l2": 0.2, "max_iter": 10}
