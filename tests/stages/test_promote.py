"""The promote stage on a real pipeline output: dry run, force, and a failed evaluation promotes nothing."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.dvc]
KEY, NAME = "digits_keras_mlp", "digits-keras_mlp"


def _versions(mlc: MlflowClient) -> list[str]:
    return sorted(str(v.version) for v in mlc.search_model_versions(f"name='{NAME}'"))


def test_dry_run_force_and_failed_evaluation(project):
    dest, state = project
    mlc = MlflowClient(tracking_uri=f"sqlite:///{dest / 'mlflow.db'}", registry_uri=f"sqlite:///{dest / 'mlflow.db'}")
    before = _versions(mlc)
    champion = str(mlc.get_model_version_by_alias(NAME, "champion").version)

    dry = run_cli("promote", "--benchmark", KEY, "--dry-run", cwd=dest, env=state["env"])
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing changed" in dry.stderr
    assert _versions(mlc) == before

    # the same run again (with or without --force): one version per run, its decision kept, nothing moves
    history = json.loads(mlc.get_registered_model(NAME).tags["alias_history"])
    for extra in ([], ["--force"]):
        same = run_cli("promote", "--benchmark", KEY, *extra, cwd=dest, env=state["env"])
        assert same.returncode == 0 and f" v{champion} is champion" in same.stderr, same.stderr
        assert _versions(mlc) == before
        assert str(mlc.get_model_version_by_alias(NAME, "champion").version) == champion
        assert json.loads(mlc.get_registered_model(NAME).tags["alias_history"]) == history

    metrics = dest / "metrics" / f"{KEY}.json"
    saved = metrics.read_text()
    metrics.unlink()
    try:
        failed = run_cli("promote", "--benchmark", KEY, cwd=dest, env=state["env"])
        assert failed.returncode == 1 and "metrics" in failed.stderr
        assert _versions(mlc) == before  # the failed promotion registered nothing
    finally:
        metrics.write_text(saved)

    models = run_cli("models", cwd=dest, env=state["env"])
    assert NAME in models.stdout and "champion" in models.stdout
