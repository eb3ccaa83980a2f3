"""Promotion rules and the real MLflow registry (SQLite store per test)."""

from __future__ import annotations

import json

import mlflow
import pytest

from pipeline import registry, tracking
from pipeline.registry import decide


@pytest.mark.parametrize(
    "direction,sequence,expected",
    [
        ("maximize", [0.80, 0.85, 0.85, 0.84, 0.90], [True, True, False, False, True]),
        ("minimize", [3.0, 2.5, 2.5, 2.7, 2.0], [True, True, False, False, True]),
    ],
)
def test_decisions_over_sequences(direction, sequence, expected):
    champion, got = None, []
    for value in sequence:
        ok, _ = decide(value, champion, direction, 0.0)
        got.append(ok)
        if ok:
            champion = value
    assert got == expected


def test_min_improvement_and_force():
    assert not decide(0.86, 0.85, "maximize", 0.02)[0]
    assert decide(0.88, 0.85, "maximize", 0.02)[0]
    assert not decide(2.45, 2.5, "minimize", 0.1)[0]
    assert decide(2.3, 2.5, "minimize", 0.1)[0]
    assert decide(0.1, 0.9, "maximize", 0.0, force=True) == (True, "forced")


def test_a_gain_must_be_significant_and_reach_the_margin():
    noise = {"test": "paired bootstrap", "gain": 0.007, "ci_low": -0.007, "ci_high": 0.021, "p_value": 0.19}
    clear = {"test": "paired bootstrap", "gain": 0.03, "ci_low": 0.01, "ci_high": 0.05, "p_value": 0.004}
    ok, why = decide(0.867, 0.86, "maximize", 0.0, test=noise, alpha=0.05)
    assert not ok and "beats it" in why and "p=0.19 (not significant at alpha 0.05)" in why
    assert decide(0.89, 0.86, "maximize", 0.0, test=clear, alpha=0.05)[0]
    assert not decide(0.89, 0.86, "maximize", 0.0, test=clear, alpha=0.001)[0]  # a stricter level
    assert not decide(0.89, 0.86, "maximize", 0.05, test=clear)[0]  # significant, but short of the margin
    ok, why = decide(2.4, 2.5, "minimize", 0.0, test={"test": None, "why": "the champion was tested on other examples"})
    assert ok and why.endswith("untested: the champion was tested on other examples")


def _candidate(mlc, exp_id, tmp_path, i):
    run_id = tracking.start_run(mlc, exp_id, f"cand-{i}")
    path = tmp_path / f"m{i}"
    code = tmp_path / "echo_model.py"
    code.write_text(ECHO)
    mlflow.pyfunc.save_model(str(path), python_model=str(code))  # models from code: nothing pickled
    mlc.log_artifacts(run_id, str(path), "model")
    mlc.set_terminated(run_id)
    return run_id, f"{mlc.get_run(run_id).info.artifact_uri}/model"


ECHO = """import mlflow


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


mlflow.models.set_model(Echo())
"""


def test_registry_aliases_follow_the_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlc = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = tracking.ensure_experiment(mlc, "toy/model")
    assert tracking.ensure_experiment(mlc, "toy/model") == exp  # idempotent
    history = []
    for i, value in enumerate([0.70, 0.75, 0.72]):
        run_id, uri = _candidate(mlc, exp, tmp_path, i)
        d = registry.promote(mlc, "toy-model", model_uri=uri, run_id=run_id, metric="accuracy",
                             direction="maximize", value=value, tags={"study": "s"})  # fmt: skip
        history.append((d.version, d.promote))
        run3, uri3 = run_id, uri
        assert d.version in {str(v) for v in mlc.get_registered_model("toy-model").aliases.values()}
    assert history == [("1", True), ("2", True), ("3", False)]
    assert str(registry.champion(mlc, "toy-model").version) == "2"
    assert str(mlc.get_model_version_by_alias("toy-model", "challenger").version) == "3"
    # dry run changes nothing
    run_id, uri = _candidate(mlc, exp, tmp_path, 9)
    d = registry.promote(mlc, "toy-model", model_uri=uri, run_id=run_id, metric="accuracy", direction="maximize",
                         value=0.99, tags={}, dry_run=True)  # fmt: skip
    assert d.promote and d.version is None
    assert len(mlc.search_model_versions("name='toy-model'")) == 3
    audit = json.loads(mlc.get_registered_model("toy-model").tags["alias_history"])
    assert [a["champion"] for a in audit] == [True, True, False]
    # the same run again: its version is reused and keeps its decision; --force moves champion to it
    again = registry.promote(mlc, "toy-model", model_uri=uri3, run_id=run3, metric="accuracy", direction="maximize",
                             value=0.72, tags={})  # fmt: skip
    assert (again.version, again.promote) == ("3", False)
    forced = registry.promote(mlc, "toy-model", model_uri=uri3, run_id=run3, metric="accuracy",
                              direction="maximize", value=0.72, tags={}, force=True)  # fmt: skip
    assert (forced.version, forced.promote, forced.reason) == ("3", True, "forced")
    assert len(mlc.search_model_versions("name='toy-model'")) == 3
    audit = json.loads(mlc.get_registered_model("toy-model").tags["alias_history"])
    assert [(a["version"], a["champion"]) for a in audit] == [("1", True), ("2", True), ("3", False), ("3", True)]
    mlc.set_registered_model_alias("toy-model", "champion", "2")  # as if a promote was killed mid-way
    registry.promote(mlc, "toy-model", model_uri=uri3, run_id=run3, metric="accuracy", direction="maximize",
                     value=0.72, tags={})  # fmt: skip
    audit = json.loads(mlc.get_registered_model("toy-model").tags["alias_history"])
    assert [(a["version"], a["champion"], a.get("moved", True)) for a in audit] == [
        ("1", True, True),
        ("2", True, True),
        ("3", False, True),
        ("3", False, False),
    ]
    rows = registry.list_models(mlc)
    assert {r["version"]: r["aliases"] for r in rows}["2"] == ["champion"]
    assert {r["version"]: r["aliases"] for r in rows}["3"] == ["challenger"]
    loaded = mlflow.pyfunc.load_model("models:/toy-model@champion")
    assert list(loaded.predict([[1.0, 2.0]])) == [[1.0, 2.0]]
