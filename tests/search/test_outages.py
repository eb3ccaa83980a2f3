"""Outages of the tracking server and the database: only a search rides them out, and a trial an
outage cut off is retried by the rerun like one cut off by a kill.

* `retry.call` gives up with one line: the outage's real length and its first cause (not
  `unreachable for 0 s (TrackingError: ... unreachable for 2 s ...)` from a clean-up call made
  while the process ends because of the same outage);
* every command but a search fails at once on a dead server (`tunebench studies` with a dead
  PostgreSQL waited 120 s);
* a real `mlflow server` stopped while a trial logs its model, for longer than `search.retry_s`:
  the search exits 1 with one `error:` line, the trial is left to the rerun (it ended FAIL with
  an `MlflowException` and was never retried), and the rerun completes the budget with the
  configurations an uninterrupted search draws.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import numpy_digits_params
import yaml

from pipeline.servers import free_port, mlflow_server

ROOT = Path(__file__).resolve().parents[2]
KEY = "digits_numpy_mlp"
N_TRIALS, CUT = 4, 1  # the round's budget; the trial whose model logging meets the outage
PARAMS = numpy_digits_params(n_trials=N_TRIALS, epochs=3, log_models="all", retry_s=2)  # every trial saves its model

# Runs the real CLI; the tracking server (process group TB_SERVER_PGID) is stopped while trial CUT saves its model
# (after its logged model was created, before its files are sent), the moment an unretried call met the outage.
STOP_SERVER_MID_MODEL = """
import os, signal, socket, sys, time
from pipeline.tracking import trial_run
real = trial_run.save_trial_model
calls = []
def save(*args, **kwargs):
    calls.append(1)
    if len(calls) == {cut} + 1:
        os.killpg(int(os.environ["TB_SERVER_PGID"]), signal.SIGKILL)
        while socket.socket().connect_ex(("127.0.0.1", int(os.environ["TB_SERVER_PORT"]))) == 0:
            time.sleep(0.1)
    return real(*args, **kwargs)
trial_run.save_trial_model = save
from pipeline.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), **extra}


def _cli(*args: str, cwd: Path, head: tuple[str, ...] = ("-m", "pipeline"), timeout: float = 300, **env: str):
    return subprocess.run([sys.executable, *head, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def retry_settings():
    """`pipeline.retry`'s process-wide settings, restored after the test."""
    from pipeline import retry

    saved = {k: (v.copy() if isinstance(v, dict) else v) for k, v in retry._settings.items()}
    yield retry
    retry._settings.clear()
    retry._settings.update(saved)


def test_giving_up_says_how_long_the_outage_lasted_and_its_first_cause(retry_settings, monkeypatch):
    import requests

    from pipeline.errors import TrackingError
    from pipeline.tracking import retrying_client

    url = f"http://127.0.0.1:{free_port()}/health"  # nothing listens: connection refused, for real
    retry_settings.configure(retry_s=1.5)
    t0 = time.monotonic()
    with pytest.raises(TrackingError) as first:
        retrying_client.call("MLflow server at x", requests.get, url, timeout=2)
    assert time.monotonic() - t0 >= 1.5
    assert str(first.value).startswith("MLflow server at x unreachable for 2 s (ConnectionRefusedError: ")
    real = time.monotonic
    monkeypatch.setattr(retry_settings.time, "monotonic", lambda: real() + 1.2)  # 1.2 s later, without waiting
    try:
        raise first.value
    except TrackingError:  # a clean-up call while the process ends because of the same outage: one try
        t0 = time.monotonic()
        with pytest.raises(TrackingError) as again:
            retrying_client.call("MLflow server at x", requests.get, url, timeout=2)
    assert time.monotonic() - t0 < 1
    text = str(again.value)
    assert text.startswith("MLflow server at x unreachable for 3 s (ConnectionRefusedError: "), text
    assert text.count("unreachable") == 1 and "TrackingError" not in text, text


def test_a_blip_is_not_an_outage_and_one_restart_is_announced_once(retry_settings, monkeypatch, capsys):
    """A server that drops a connection while it stops, answers once more, then stays down for a
    while: one `unreachable` line and one `back` line (two pairs were printed, `back after 0 s` first)."""
    clock = [1000.0]
    monkeypatch.setattr(retry_settings.time, "time", lambda: clock[0])
    board, where = retry_settings.Board(), "MLflow server at x"

    def lines() -> list[str]:
        return capsys.readouterr().err.splitlines()

    board.down("tracking", where, 90)  # the blip: one failed call, the next one gets through
    clock[0] += 0.3
    board.up("tracking", where)
    assert lines() == []
    for step in (0.0, 0.5, 1.0, 2.0, 4.0):  # the restart: a call's tries fail for 7.5 s
        clock[0] += step
        board.down("tracking", where, 90)
        board.down("storage", "PostgreSQL at y", 90)  # another kind: its own outage
    clock[0] += 8.5
    board.up("tracking", where)
    board.up("tracking", where)
    assert lines() == [f"{where} unreachable, retrying for 90 s", "PostgreSQL at y unreachable, retrying for 90 s",
                       f"{where} back after 16 s"]  # fmt: skip


def test_a_command_other_than_search_fails_at_once_on_a_dead_database(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    url = f"postgresql://tb:deadpw123@127.0.0.1:{free_port()}/tb"
    t0 = time.monotonic()
    proc = _cli("studies", cwd=tmp_path, timeout=90, TUNEBENCH_STORAGE=url)
    took = time.monotonic() - t0
    lines = _error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert took < 20, f"took {took:.0f} s"
    assert "retrying" not in proc.stderr and "deadpw123" not in proc.stderr
    assert "PostgreSQL at 127.0.0.1:" in lines[0] and "unreachable (" in lines[0], lines[0]


def _trials(project: Path) -> list[optuna.trial.FrozenTrial]:
    from pipeline.search.storage import open_storage

    storage = open_storage(f"journal:{project / 'studies' / KEY / 'optuna.journal'}", KEY)
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _counted(trials: list) -> list:
    from pipeline.search.execution.stale_trials import is_interrupted

    return [t for t in trials if t.state.is_finished() and not is_interrupted({}, t)]


@pytest.mark.slow
@pytest.mark.servers
def test_an_mlflow_outage_longer_than_retry_s_leaves_the_trial_to_the_rerun(tmp_path):
    from pipeline.search.execution.stale_trials import is_interrupted

    project = tmp_path / "proj"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    for stage in ("fetch", "preprocess"):
        assert _cli(stage, cwd=project).returncode == 0
    calm = shutil.copytree(project, tmp_path / "calm")
    assert _cli("search", cwd=calm).returncode == 0  # what an uninterrupted search draws (SQLite tracking)
    expected = sorted(t.params["lr"] for t in _counted(_trials(calm)))
    assert len(expected) == N_TRIALS

    with mlflow_server() as ml:
        env = {"MLFLOW_TRACKING_URI": ml.uri, "TB_SERVER_PGID": str(ml._proc.pid), "TB_SERVER_PORT": str(ml.port)}
        t0 = time.monotonic()
        proc = _cli("search", cwd=project, head=("-c", STOP_SERVER_MID_MODEL.format(cut=CUT)), **env)
        took = time.monotonic() - t0
        lines = _error_lines(proc)
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
        line = lines[0]
        assert line.startswith(f"error: MLflow server at {ml.uri} unreachable for "), line
        seconds = int(line.split(" unreachable for ")[1].split(" s ")[0])
        assert 2 <= seconds < took, line  # the outage's real length, at least search.retry_s
        assert line.count("unreachable") == 1 and "Error: MLflow" not in line and "rerun" in line, line
        cut = _trials(project)[CUT]
        assert cut.state == optuna.trial.TrialState.RUNNING, "the cut trial must be left to the rerun, not failed"
        assert "fail_reason" not in cut.user_attrs

        ml.stop()
        ml.start()
        again = _cli("search", cwd=project, MLFLOW_TRACKING_URI=ml.uri)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "1 trial(s) interrupted earlier marked FAIL and queued again" in again.stderr
    trials = _trials(project)
    assert is_interrupted({}, trials[CUT]) and trials[CUT].state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == CUT]
    assert [t.state for t in retried] == [optuna.trial.TrialState.COMPLETE]
    assert retried[0].params == trials[CUT].params
    counted = _counted(trials)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in counted)
    assert sorted(t.params["lr"] for t in counted) == expected  # the same draws as without the outage
