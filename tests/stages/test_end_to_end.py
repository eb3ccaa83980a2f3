"""End to end: real `dvc repro` of the whole pipeline on a tiny profile, in a fresh git repository.

Checks every stage's outputs, the MLflow structure (one parent run per study
round, one nested run per trial, per-epoch metrics), the registered champion
(loads with `mlflow.pyfunc.load_model` and predicts raw input), that a second
`dvc repro` reruns nothing, and that changing only a search parameter reruns
search and what follows but not fetch or preprocess.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from conftest import sh

pytestmark = [pytest.mark.slow, pytest.mark.dvc]


def test_stage_outputs_exist(project):
    dest, _ = project
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for ds in params["datasets"]:
        assert (dest / "data/raw" / ds / "manifest.json").is_file()
        assert (dest / "data/processed" / ds / "manifest.json").is_file()
    for key in params["benchmarks"]:
        assert (dest / "studies" / key / "optuna.journal").is_file()
        result = json.loads((dest / "results/search" / f"{key}.json").read_text())
        assert len(result["rounds"]) == 2 and result["best"] is not None
        assert (dest / "models" / key / "mlflow_model" / "MLmodel").is_file()
        metrics = json.loads((dest / "metrics" / f"{key}.json").read_text())
        evaluated = json.loads((dest / "results/evaluation" / f"{key}.json").read_text())
        assert evaluated["metric"] in metrics["test"] and evaluated["benchmark"] == key
        assert json.loads((dest / "promotions" / f"{key}.json").read_text())["version"]
    board = (dest / "reports/leaderboard.md").read_text()
    for key in params["benchmarks"]:
        assert key in board


def test_mlflow_runs_mirror_studies(project):
    import optuna
    from mlflow.tracking import MlflowClient

    from pipeline.search.storage import open_storage

    dest, _ = project
    params = yaml.safe_load((dest / "params.yaml").read_text())
    mlc = MlflowClient(tracking_uri=f"sqlite:///{dest / 'mlflow.db'}")
    cwd = os.getcwd()
    os.chdir(dest)
    try:
        for key, bench in params["benchmarks"].items():
            result = json.loads((dest / "results/search" / f"{key}.json").read_text())
            runs = mlc.search_runs(
                [e.experiment_id for e in mlc.search_experiments() if e.name.startswith(bench["dataset"] + "-")]
            )
            parents = [r for r in runs if r.data.tags.get("kind") == "study_round"
                       and r.data.tags.get("benchmark") == key]  # fmt: skip
            assert len(parents) == len(bench["rounds"])
            storage = open_storage(None, key)
            for rnd in result["rounds"]:
                parent = next(p for p in parents if p.info.run_id == rnd["parent_run_id"])
                assert any(k.startswith("range.") for k in parent.data.params)
                children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
                trials = optuna.load_study(study_name=rnd["study"], storage=storage).trials
                assert len(children) == len(trials) == 2
                for child, trial in zip(sorted(children, key=lambda r: int(r.data.tags["trial_number"])), trials):
                    assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
                    assert child.data.tags["state"] == trial.state.name
                    if trial.state == optuna.trial.TrialState.COMPLETE:
                        assert child.info.status == "FINISHED"
                        hist = mlc.get_metric_history(child.info.run_id, "val_loss")
                        epochs = 1 if bench["model"] in ("linear", "majority") else rnd["epochs"]
                        assert [m.step for m in hist] == list(range(1, epochs + 1))  # epochs from 1
    finally:
        os.chdir(cwd)


def test_champion_loads_and_predicts_raw_input(project, monkeypatch):
    import mlflow.pyfunc

    from pipeline.serving import example_frame

    dest, _ = project
    monkeypatch.chdir(dest)  # artifact locations are relative to the project folder
    mlflow.set_tracking_uri(f"sqlite:///{dest / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{dest / 'mlflow.db'}")
    for name, ds in [("rt_polarity-keras_mlp", "rt_polarity"), ("boston_housing-keras_mlp", "boston_housing"),
                     ("digits-numpy_mlp", "digits"), ("digits-linear", "digits")]:  # fmt: skip
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        meta = json.loads((dest / "data/processed" / ds / "raw_meta.json").read_text())
        pred = model.predict(example_frame(meta))
        assert len(pred) == len(meta["rows"])
        if ds == "rt_polarity":  # a label with its probability (tests/stages/test_serving.py)
            assert set(pred["label"]) <= {"rotten", "fresh"} and pred["probability"].between(0.5, 1).all()


def test_second_repro_reruns_nothing_and_search_change_reruns_search_only(project):
    dest, state = project
    env = state["env"]
    proc = sh(["dvc", "repro"], dest, env)
    out = proc.stdout + proc.stderr
    assert "Running stage" not in out, out[-3000:]
    assert "didn't change, skipping" in out or "Data and pipelines are up to date" in out

    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["benchmarks"]["digits_keras_mlp"]["space"]["lr"]["high"] = 0.05
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = sh(["dvc", "status", "--json"], dest, env).stdout
    changed = set(json.loads(status))
    assert "search@digits_keras_mlp" in changed
    assert not any(s.startswith(("fetch@", "preprocess@")) for s in changed)
    proc = sh(["dvc", "repro", "--dry"], dest, env)
    ran = [line for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    assert any("search@digits_keras_mlp" in line for line in ran)
    assert not any("fetch@" in line or "preprocess@" in line for line in ran)
