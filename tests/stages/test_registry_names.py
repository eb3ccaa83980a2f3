"""Registered model names are unique per benchmark: two benchmarks of one dataset and model keep their own
champions, names that would still collide are refused at validation, and a champion a store got from
another benchmark (before names were unique) is never silently replaced."""

from __future__ import annotations

import json

import mlflow
import pytest
import yaml
from conftest import main_ok, run_cli, run_main
from mlflow.tracking import MlflowClient
from fixtures_datasets import csv_bytes as _csv
from fixtures_datasets import csv_project as _params
from sklearn.datasets import load_breast_cancer

STRONG = "mine_linear_strong"


@pytest.fixture(scope="module")
def cancer():
    d = load_breast_cancer()
    return d.data[:240], d.target[:240]


def _two_benchmarks(tmp_path, x, y) -> None:
    _params(tmp_path, "a.csv", _csv(x, y))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["benchmarks"][STRONG] = json.loads(json.dumps(params["benchmarks"]["mine_linear"]))
    params["benchmarks"][STRONG]["space"]["l2"] = {"low": 100.0, "high": 1000.0, "log": True}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _run(capsys, bench: str, *promote_args: str) -> tuple[int, str]:
    for stage in ("search", "train_best", "evaluate"):
        main_ok(capsys, stage, "--benchmark", bench)
    return run_main(capsys, "promote", "--benchmark", bench, *promote_args)


@pytest.mark.slow  # two benchmarks from fetch to promote through the CLI's main: over 10 s
def test_two_benchmarks_of_one_dataset_and_model_keep_their_own_champions(tmp_path, cancer, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    x, y = cancer
    _two_benchmarks(tmp_path, x, y)
    for stage in ("fetch", "preprocess"):
        main_ok(capsys, stage, "--dataset", "mine")
    assert _run(capsys, "mine_linear")[0] == 0
    code, strong = _run(capsys, STRONG)
    assert code == 0, strong[-2000:]
    line = next(x for x in strong.splitlines() if "PROMOTE" in x)  # the benchmark first, the model once
    assert line.startswith(f"{STRONG}: PROMOTE - no champion yet") and line.endswith(
        "; model mine-linear-mine_linear_strong v1 is champion"
    ), line
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow resolves a `models:/` source with the default client,
    previous = mlflow.get_tracking_uri()  # which an earlier test's in-process stage may have pointed elsewhere
    mlflow.set_tracking_uri(uri)
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name, bench in (("mine-linear", "mine_linear"), ("mine-linear-mine_linear_strong", STRONG)):
        champ = mlc.get_model_version_by_alias(name, "champion")
        assert (str(champ.version), champ.tags["benchmark"]) == ("1", bench)
        assert json.loads((tmp_path / "promotions" / f"{bench}.json").read_text())["model_name"] == name

    # a store from before: `mine-linear`'s champion came from the other benchmark
    held = mlc.get_model_version_by_alias("mine-linear-mine_linear_strong", "champion")
    try:
        stray = mlc.create_model_version("mine-linear", held.source, run_id=held.run_id, tags={"benchmark": STRONG})
    finally:
        mlflow.set_tracking_uri(previous)
    mlc.set_registered_model_alias("mine-linear", "champion", stray.version)
    code, refused = run_main(capsys, "promote", "--benchmark", "mine_linear")
    assert code == 1
    assert refused.strip().splitlines()[-1] == (
        f"error: registered model mine-linear: its champion, version {stray.version}, was promoted by benchmark "
        f"{STRONG} (which now registers as its own model); rerun with --force to make mine_linear's model the "
        "champion of mine-linear"
    )
    assert mlc.get_model_version_by_alias("mine-linear", "champion").version == stray.version  # nothing moved
    code, forced = run_main(capsys, "promote", "--benchmark", "mine_linear", "--force")
    assert code == 0, forced[-2000:]
    assert mlc.get_model_version_by_alias("mine-linear", "champion").tags["benchmark"] == "mine_linear"


def test_benchmarks_whose_names_would_still_collide_are_refused(tmp_path, cancer):
    x, y = cancer
    _params(tmp_path, "a.csv", _csv(x, y))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["benchmarks"]["mine"] = params["benchmarks"]["mine_linear"]  # `mine` and `mine_linear`: mine-linear
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run_cli("validate", cwd=tmp_path)
    assert proc.returncode == 2
    assert "benchmarks.mine" in proc.stderr and "would be 'mine-linear', as benchmark mine_linear's" in proc.stderr
