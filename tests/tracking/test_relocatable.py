"""A copied and moved project keeps working and never writes outside itself (relative MLflow artifact locations).

The finished tiny project (`project` fixture) is copied, and the copy renamed, so the data were
written at one path, copied to a second and used at a third. In the moved copy the stock
clients search one more trial, retrain, evaluate, promote, serve the champion with
`mlflow models serve` and load it with `mlflow.pyfunc.load_model('models:/...@champion')`;
every location MLflow stores (experiments, runs, logged models, model versions, `MLmodel`,
`models/*/info.json`) must name neither earlier path, and the original folder must not change.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.dvc]
KEY, NAME = "digits_linear", "digits-linear"


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def _stored_locations(mlc: MlflowClient) -> list[str]:
    """Every location the store holds: experiments, runs, logged models, model versions."""
    exps = mlc.search_experiments()
    ids = [e.experiment_id for e in exps]
    out = [e.artifact_location for e in exps if e.name != "Default"]
    out += [r.info.artifact_uri for r in mlc.search_runs(ids, max_results=5000)]
    out += [m.artifact_location for m in mlc.search_logged_models(ids, max_results=5000)]
    for mv in mlc.search_model_versions():
        out += [mv.source, mlc.get_model_version_download_uri(mv.name, mv.version)]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_and_predict(moved: Path, env: dict, frame) -> list:
    """`mlflow models serve -m models:/<NAME>@champion` run in the moved project; its predictions of `frame`."""
    port = _free_port()
    with open(moved / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager",
             "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            cwd=moved, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            end = time.monotonic() + 180
            while True:
                assert proc.poll() is None, (moved / "serve.log").read_text()[-3000:]
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                    break
                except OSError:
                    assert time.monotonic() < end, "mlflow models serve not up in 180 s"
                    time.sleep(0.5)
            body = json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())["predictions"]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_moved_project_keeps_working_and_writes_only_inside_itself(project, tmp_path, monkeypatch):
    import mlflow.pyfunc  # noqa: PLC0415

    from pipeline.serving import example_frame  # noqa: PLC0415

    original, state = project
    before = _files(original)
    copied, moved = tmp_path / "copied", tmp_path / "moved"
    shutil.copytree(original, copied, symlinks=True)
    copied.rename(moved)
    old_paths = [str(original), str(copied), str(original.resolve())]
    uri = f"sqlite:///{moved / 'mlflow.db'}"
    env = {**state["env"], "MLFLOW_TRACKING_URI": "", "MLFLOW_REGISTRY_URI": ""}
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs_before = {r.info.run_id for r in mlc.search_runs([e.experiment_id for e in mlc.search_experiments()])}

    # the moved copy searches one more trial, retrains, evaluates and promotes its model
    for cmd in (("search", "--benchmark", KEY, "--round", "2", "--n-trials", "3"), ("train_best", "--benchmark", KEY),
                ("evaluate", "--benchmark", KEY), ("promote", "--benchmark", KEY, "--force")):  # fmt: skip
        proc = run_cli(*cmd, cwd=moved, env=env)
        assert proc.returncode == 0, f"{cmd}: {proc.stderr[-3000:]}"
    info = json.loads((moved / "models" / KEY / "info.json").read_text())
    assert info["run_id"] not in runs_before and info["model_source"] == f"models:/{info['model_id']}"
    champion = mlc.get_model_version_by_alias(NAME, "champion")
    assert (champion.run_id, champion.source) == (info["run_id"], info["model_source"])
    links = json.loads(mlc.get_logged_model(info["model_id"]).tags["mlflow.modelVersions"])
    assert {"name": NAME, "version": str(champion.version)} in links  # the logged model links to its version
    new_trial = [r for r in mlc.search_runs([mlc.get_experiment_by_name(NAME).experiment_id],
                                            "tags.round = '2'") if r.info.run_id not in runs_before]  # fmt: skip
    assert len(new_trial) == 1 and new_trial[0].data.tags["state"] == "COMPLETE"

    # the champion loads and serves from the moved project (artifact locations are relative to it)
    meta = json.loads((moved / "data/processed/digits/raw_meta.json").read_text())
    frame = example_frame(meta)
    monkeypatch.chdir(moved)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    expected = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(frame)
    assert len(expected) == len(meta["rows"])
    for name in ("rt_polarity-keras_mlp", "digits-numpy_mlp"):  # models trained before the move load too
        assert len(mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(example_frame(json.loads(
            (moved / f"data/processed/{name.split('-')[0]}/raw_meta.json").read_text())))) > 0  # fmt: skip
    served = _serve_and_predict(moved, env, frame)
    assert len(served) == len(expected)  # (what a prediction holds is the serving tests' business)

    # no stored location names a path of the project; nothing was written outside the moved copy
    locations = _stored_locations(mlc)
    assert locations and all(not loc.startswith(("/", "file:")) for loc in locations), locations[:5]
    texts = [(moved / "mlflow.db").read_bytes().decode("latin-1")]
    texts += [p.read_text() for p in (moved / "models").glob("*/info.json")]
    texts += [p.read_text() for p in (moved / "models").glob("*/mlflow_model/MLmodel")]
    texts += [p.read_text() for p in (moved / "mlartifacts").rglob("MLmodel")]
    for old in old_paths:
        assert not any(old in t for t in texts), f"{old} is still stored"
    assert not copied.exists()
    assert _files(original) == before, "the original project changed"
    assert os.listdir(moved / "mlartifacts") and new_trial[0].info.artifact_uri.startswith("mlartifacts/")
