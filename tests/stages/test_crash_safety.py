"""Crash safety: a real CLI process killed at a chosen moment, then the same command again.

Each crash test runs a small driver (`DRIVER`) that replaces the function of the moment with one that
SIGKILLs its own process and then calls the real `pipeline.__main__.main`. After the rerun the
registry must be consistent (the champion's run is the promotion file's, one version per run,
`alias_history` agrees with the aliases) and equal to an uninterrupted run's, no MLflow run of a
dead process is left RUNNING, and no temporary folder or `.part` file is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fixtures_datasets import custom, npz_bytes, sha256, start_server, stop_server, write_params
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_digits

from conftest import ROOT, run_cli, stages_in_one_process

pytestmark = pytest.mark.slow
KEY, NAME = "digits_linear", "digits-linear"

DRIVER = """import importlib, os, signal, sys

module, attr, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
owner = importlib.import_module(module)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
setattr(owner, name, lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))
from pipeline.__main__ import main
sys.exit(main(argv))
"""
PARAMS = {
    "tracking": {"uri": "sqlite:///mlflow.db", "log_models": False},
    "search": {"sampler": "random", "seed": 1, "workers": 1, "storage": None},
    "promote": {"min_improvement": 0.0},
    "datasets": {"digits": {"source": "builtin", "preprocess": {
        "kind": "pca", "n_components": 8, "val_fraction": 0.25, "test_fraction": 0.2, "seed": 42, "max_rows": 300}}},
    "benchmarks": {KEY: {"dataset": "digits", "model": "linear", "space": {"l2": {"low": 1.0e-4, "high": 1.0e2,
                                                                                 "log": True}},
                         "rounds": [{"name": "coarse", "n_trials": 2, "epochs": 1, "pruner": "none"}]}},
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _own_stores():
    """The projects here use their own stores, whatever an earlier test left in the environment."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TUNEBENCH_STORAGE"):
            mp.delenv(var, raising=False)
        yield


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    proc = run_cli(*args, cwd=project, timeout=300)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stderr[-4000:]}"
    return proc


def killed_at(project: Path, module: str, attr: str, *args: str) -> subprocess.CompletedProcess:
    """Run `tunebench ARGS` in `project`, SIGKILLed when it calls `module.attr`."""
    (project / "driver.py").write_text(DRIVER)
    proc = subprocess.run([sys.executable, "driver.py", module, attr, *args], cwd=project, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, f"not killed at {module}.{attr}:\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """A tiny project (digits, linear model) after fetch, preprocess, search, train_best and evaluate (one process)."""
    import yaml  # noqa: PLC0415

    dest = tmp_path_factory.mktemp("crash") / "base"
    dest.mkdir()
    (dest / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    stages_in_one_process(dest, "fetch", "preprocess", "search", "train_best", "evaluate")
    return dest


def copy_of(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest, symlinks=True)
    return dest


def client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registry_state(project: Path) -> dict:
    """The registry and promotion file of a project, without times."""
    mlc = client(project)
    rm = mlc.get_registered_model(NAME)
    history = [(h["version"], h["champion"], h["reason"]) for h in json.loads(rm.tags["alias_history"])]
    versions = {str(v.version): v.run_id for v in mlc.search_model_versions(f"name='{NAME}'")}
    promotion = json.loads((project / "promotions" / f"{KEY}.json").read_text())
    return {"aliases": {k: str(v) for k, v in rm.aliases.items()}, "history": history, "versions": versions,
            "promotion": promotion}  # fmt: skip


def assert_consistent(project: Path) -> dict:
    """The invariants every interruption must leave after a rerun; returns the registry state."""
    state = registry_state(project)
    runs = list(state["versions"].values())
    assert len(runs) == len(set(runs)), f"a run registered twice: {state['versions']}"
    champion = state["aliases"]["champion"]
    promo = state["promotion"]
    assert promo["version"] in (champion, state["aliases"]["challenger"])
    assert state["versions"][promo["version"]] == promo["run_id"]
    if promo["promote"]:
        assert champion == promo["version"]
    claims = [v for v, is_champion, _ in state["history"] if is_champion]
    assert claims and claims[-1] == champion, state["history"]
    assert_no_leftovers(project)
    return state


def assert_no_leftovers(project: Path) -> None:
    mlc = client(project)
    exps = [e.experiment_id for e in mlc.search_experiments()]
    running = [r.info.run_name for r in mlc.search_runs(exps, "attributes.status = 'RUNNING'")]
    assert running == [], f"runs left RUNNING: {running}"
    tmp = [str(p) for p in project.rglob(".*.tmp-*")] + [str(p) for p in project.rglob(".*.old")]
    assert tmp == [], tmp
    assert [str(p) for p in project.rglob("*.part")] == []


@pytest.fixture(scope="module")
def uninterrupted(evaluated, tmp_path_factory) -> dict:
    """The registry state an uninterrupted `promote` leaves."""
    project = copy_of(evaluated, tmp_path_factory.mktemp("crash") / "reference")
    cli(project, "promote", "--benchmark", KEY)
    return assert_consistent(project)


@pytest.mark.parametrize(
    ("moment", "module", "attr"),
    [
        ("version created, aliases not moved", "mlflow.tracking.client", "MlflowClient.set_registered_model_alias"),
        ("aliases moved, history and promotion file not written", "pipeline.registry", "_record_history"),
    ],
)
def test_promote_killed_then_rerun(evaluated, uninterrupted, tmp_path, moment, module, attr):
    project = copy_of(evaluated, tmp_path / "proj")
    killed_at(project, module, attr, "promote", "--benchmark", KEY)
    mlc = client(project)
    (version,) = mlc.search_model_versions(f"name='{NAME}'")
    aliases = mlc.get_registered_model(NAME).aliases
    assert not (project / "promotions" / f"{KEY}.json").exists()
    assert ("champion" in aliases) == (attr == "_record_history"), (moment, aliases)

    cli(project, "promote", "--benchmark", KEY)
    state = assert_consistent(project)
    assert list(state["versions"]) == [str(version.version)]  # the stray version was reused
    assert state == uninterrupted
    cli(project, "promote", "--benchmark", KEY)  # and once more: nothing changes
    assert registry_state(project) == uninterrupted


def test_promote_repairs_a_history_claiming_a_champion_the_alias_lacks(evaluated, uninterrupted, tmp_path):
    project = copy_of(evaluated, tmp_path / "proj")
    cli(project, "promote", "--benchmark", KEY)
    mlc = client(project)
    history = json.loads(mlc.get_registered_model(NAME).tags["alias_history"])
    bogus = {"time": "2020-01-01T00:00:00Z", "version": "7", "champion": True, "reason": "killed before the alias"}
    mlc.set_registered_model_tag(NAME, "alias_history", json.dumps([*history, bogus]))

    cli(project, "promote", "--benchmark", KEY)
    state = assert_consistent(project)
    assert state["history"] == [*uninterrupted["history"], ("7", False, "killed before the alias")]
    repaired = json.loads(mlc.get_registered_model(NAME).tags["alias_history"])[1]
    assert repaired["moved"] is False and repaired["note"].startswith("the aliases never moved here")


def _foreign_run(mlc: MlflowClient, experiment_id: str, host: str, pid: int, started: float | None) -> str:
    tags = {"tunebench.host": host, "tunebench.pid": str(pid), "tunebench.started": str(started or "")}
    return mlc.create_run(experiment_id, run_name=f"owned-by-{host}-{pid}", tags=tags).info.run_id


def test_train_best_killed_then_rerun(evaluated, tmp_path):
    project = copy_of(evaluated, tmp_path / "proj")
    before = json.loads((project / "models" / KEY / "info.json").read_text())["run_id"]
    killed_at(project, "pipeline.tracking", "create_logged_model", "train_best", "--benchmark", KEY)  # run, staging
    mlc = client(project)
    (exp,) = [e for e in mlc.search_experiments() if e.name == "digits-linear"]
    (orphan,) = mlc.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert list((project / "models").glob(f".{KEY}.tmp-*"))
    assert json.loads((project / "models" / KEY / "info.json").read_text())["run_id"] == before  # untouched

    # runs of live processes and of other hosts are not anybody's orphans
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = _foreign_run(mlc, exp.experiment_id, socket.gethostname(), sleeper.pid,
                            round(psutil.Process(sleeper.pid).create_time(), 2))  # fmt: skip
        remote = _foreign_run(mlc, exp.experiment_id, "another-host.invalid", 1, None)
        proc = cli(project, "train_best", "--benchmark", KEY)
        assert "1 run(s) left RUNNING by an interrupted process marked FAILED" in proc.stderr
        assert mlc.get_run(live).info.status == "RUNNING" and mlc.get_run(remote).info.status == "RUNNING"
    finally:
        sleeper.kill()
        sleeper.wait()
    closed = mlc.get_run(orphan.info.run_id)
    assert closed.info.status == "FAILED" and "interrupted" in closed.data.tags["interrupted"]
    info = json.loads((project / "models" / KEY / "info.json").read_text())
    assert info["run_id"] not in (before, orphan.info.run_id)
    assert mlc.get_run(info["run_id"]).info.status == "FINISHED"

    # the next stage closes the run whose process is now gone; the other host's stays RUNNING
    cli(project, "evaluate", "--benchmark", KEY)
    assert mlc.get_run(live).info.status == "FAILED"
    mlc.set_terminated(remote)
    assert_no_leftovers(project)


@pytest.fixture(scope="module")
def payload() -> bytes:
    b = load_digits()
    return npz_bytes(x_train=b.data[:300], y_train=b.target[:300], x_test=b.data[300:400], y_test=b.target[300:400])


@pytest.fixture
def server():
    s = start_server()
    yield s
    stop_server(s)


def _start_slow_fetch(tmp_path: Path, server, payload: bytes) -> tuple[subprocess.Popen, Path]:
    """Start `tunebench fetch` of a source that sends half the file, then waits; return once the `.part` has bytes."""
    project = write_params(tmp_path, custom(server.add("mine.npz", payload, mode="slow"), payload))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "fetch", "--dataset", "mine"], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    raw = project / "data" / "raw" / "mine"
    end = time.time() + 60
    while not any(p.stat().st_size for p in raw.glob("*.part")) and proc.poll() is None and time.time() < end:
        time.sleep(0.05)
    assert any(p.stat().st_size for p in raw.glob("*.part")), "the download never started"
    return proc, project


def test_sigterm_during_download_removes_the_part_file(tmp_path, server, payload):
    proc, project = _start_slow_fetch(tmp_path, server, payload)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: interrupted; rerun the same command to resume"
    ]
    raw = project / "data" / "raw" / "mine"
    assert not raw.exists() or list(raw.iterdir()) == []


def test_part_file_of_a_killed_download_is_never_taken_and_is_removed(tmp_path, server, payload):
    proc, project = _start_slow_fetch(tmp_path, server, payload)
    proc.kill()  # SIGKILL: nothing can clean up now
    proc.wait()
    raw = project / "data" / "raw" / "mine"
    (part,) = raw.glob("*.part")
    assert 0 < part.stat().st_size < len(payload) and not (raw / "manifest.json").exists()
    server.routes["/mine.npz"].mode = "ok"
    cli(project, "fetch", "--dataset", "mine")
    assert sorted(p.name for p in raw.iterdir()) == ["manifest.json", "mine.npz"]
    assert sha256((raw / "mine.npz").read_bytes()) == sha256(payload)
