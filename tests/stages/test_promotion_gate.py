"""Promotion is gated by a paired test on the same test examples: a rerun whose gain is noise leaves the
champion where it is, a clearly better model moves it; evaluate reports the final seeds' spread."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import main_ok
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer
from fixtures_datasets import CSV_BENCH as BENCH
from fixtures_datasets import csv_bytes as _csv
from fixtures_datasets import csv_project as _params

pytestmark = pytest.mark.slow  # search to promote three times through the CLI's main: over 10 s

NAME = "mine-linear"


def _set(tmp_path, **changes) -> None:
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = params
        for p in parents:
            node = node[p]
        node[leaf] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _rerun(capsys) -> str:
    for stage in ("search", "train_best", "evaluate"):
        main_ok(capsys, stage, "--benchmark", BENCH)
    dry = main_ok(capsys, "promote", "--benchmark", BENCH, "--dry-run")
    main_ok(capsys, "promote", "--benchmark", BENCH)
    return dry


def test_a_noise_gain_keeps_the_champion_and_a_clear_gain_moves_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    d = load_breast_cancer()
    _params(tmp_path, "a.csv", _csv(d.data, d.target))
    _set(tmp_path, benchmarks__mine_linear__space={"l2": {"low": 3.0e3, "high": 1.0e4, "log": True}})  # too strong
    for stage in ("fetch", "preprocess"):
        main_ok(capsys, stage, "--dataset", "mine")
    _rerun(capsys)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(mlc.get_model_version_by_alias(NAME, "champion").version) == "1"
    metrics = json.loads((tmp_path / "metrics" / f"{BENCH}.json").read_text())
    evaluated = json.loads((tmp_path / "results" / "evaluation" / f"{BENCH}.json").read_text())
    accounting = json.loads((tmp_path / "results" / "accounting" / f"{BENCH}.json").read_text())
    seeds = evaluated["test_seeds"]
    assert accounting["selection"]["epochs"] == 3 * 2  # the 3 trials trained twice more, 1 epoch each
    assert seeds["n"] == 3 and seeds["ci_low"] <= seeds["mean"] <= seeds["ci_high"]
    assert metrics["test_seeds"] == {k: seeds[k] for k in ("mean", "ci_low", "ci_high")}  # DVC compares these
    assert [s["seed"] for s in evaluated["per_seed"]] == [0, 1, 2]

    _set(tmp_path, benchmarks__mine_linear__space={"l2": {"low": 1.0e-2, "high": 1.0e-1, "log": True}})
    dry = _rerun(capsys)  # a clearly better range
    assert "PROMOTE" in dry and "significant at alpha 0.05" in dry and "not significant" not in dry, dry
    assert str(mlc.get_model_version_by_alias(NAME, "champion").version) == "2"
    history = json.loads(mlc.get_registered_model(NAME).tags["alias_history"])
    assert "p=" in history[-1]["reason"] and history[-1]["champion"]
    promoted = json.loads((tmp_path / "promotions" / f"{BENCH}.json").read_text())
    assert promoted["promote"] and promoted["test"]["p_value"] < 0.05 and promoted["test"]["ci_low"] > 0

    _set(tmp_path, search__seed=7)  # another search seed over the same flat range: at best a noise gain
    dry = _rerun(capsys)
    assert "keep champion" in dry and "paired bootstrap" in dry and "not significant" in dry, dry
    assert str(mlc.get_model_version_by_alias(NAME, "champion").version) == "2"
    decision = json.loads(mlc.get_model_version(NAME, "3").tags["promotion"])
    assert decision["test"]["test"] == "paired bootstrap" and decision["test"]["p_value"] >= 0.05
    assert not json.loads((tmp_path / "promotions" / f"{BENCH}.json").read_text())["promote"]
