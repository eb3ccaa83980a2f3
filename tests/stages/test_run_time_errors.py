"""The last `unexpected ...` paths and wrong exit codes at run time (issue 24): each is one `error:` line
with the right exit code, or a recovery.

A tiny project (scikit-learn's digits through PCA, the NumPy MLP, 3 trials of 1 epoch) is run once
through fetch, preprocess, search, train_best, evaluate and promote by the real CLI; each test works
on a copy of it and breaks one thing: a damaged Optuna journal, a deleted `mlflow.db`, a round that
does not exist, a bad or busy UI port, a dry-run promote of the champion, a report killed while
writing.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import numpy_digits_params, run_cli, stages_in_one_process

KEY = "digits_numpy_mlp"
JOURNAL = Path("studies") / KEY / "optuna.journal"
PARAMS = numpy_digits_params(n_trials=3, epochs=1)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env={"TUNEBENCH_STORAGE": "", "TUNEBENCH_DEBUG": ""}, timeout=300)


def one_error(proc: subprocess.CompletedProcess, code: int) -> str:
    """The single `error:` line of a failed command (asserting exit code, one such line, no traceback)."""
    out = proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == code, f"exit {proc.returncode}:\n{out[-3000:]}"
    assert len(lines) == 1, f"expected one error line:\n{out[-3000:]}"
    assert "Traceback" not in out and "unexpected" not in lines[0], out[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """The tiny project after fetch, preprocess, search, train_best, evaluate and promote (one process)."""
    root = tmp_path_factory.mktemp("run_time_errors") / "proj"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    stages_in_one_process(root, "fetch", "preprocess", "search", "train_best", "evaluate", "promote")
    return root


@pytest.fixture
def proj(done, tmp_path) -> Path:
    return shutil.copytree(done, tmp_path / "proj", symlinks=True)


def test_a_damaged_journal_record_names_the_file_and_line(proj):
    lines = (proj / JOURNAL).read_bytes().splitlines(keepends=True)
    (proj / JOURNAL).write_bytes(b"".join([*lines[:3], b'{"op_code": 5, "worker_id": "x\n', *lines[3:]]))
    line = one_error(cli("studies", cwd=proj), 1)
    assert f"Optuna journal {JOURNAL}: line 4 of {len(lines) + 1} is not a valid record" in line, line
    assert "restore the file from a backup, or move it aside" in line, line


def test_a_torn_last_journal_record_is_named_and_never_glued_onto(proj):
    lines = (proj / JOURNAL).read_bytes().splitlines(keepends=True)
    (proj / JOURNAL).write_bytes(b"".join([*lines, b'{"op_code": 6, "trial_id": 2, "sta\n']))
    line = one_error(cli("search", cwd=proj), 1)
    n = len(lines) + 1
    assert f"Optuna journal {JOURNAL}: line {n} of {n} is not a valid record (the last one" in line, line
    assert "remove that line and rerun" in line, line
    assert len((proj / JOURNAL).read_bytes().splitlines()) == n, "nothing may be appended after the torn record"
    (proj / JOURNAL).write_bytes(b"".join(lines))  # as the message says
    assert cli("studies", cwd=proj).returncode == 0


@pytest.mark.slow  # a search through the CLI on a new MLflow store: over 10 s
def test_a_deleted_tracking_store_gets_the_round_a_new_parent_run(proj):
    import optuna
    from mlflow.tracking import MlflowClient

    from pipeline.search.storage import open_storage

    (proj / "mlflow.db").unlink()
    proc = cli("search", cwd=proj)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is gone from" in proc.stderr and "the round gets a new one" in proc.stderr, proc.stderr[-3000:]
    storage = open_storage(f"journal:{proj / JOURNAL}", KEY)
    (name,) = optuna.get_all_study_names(storage)
    parent = optuna.load_study(study_name=name, storage=storage).user_attrs["mlflow_parent_run_id"]
    run = MlflowClient(f"sqlite:///{proj / 'mlflow.db'}").get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["kind"] == "study_round"
    again = cli("search", cwd=proj)
    assert again.returncode == 0 and "is gone" not in again.stderr, again.stderr[-3000:]


def test_a_round_that_does_not_exist_is_a_usage_error(proj):
    line = one_error(cli("search", "--round", "99", cwd=proj), 2)
    assert "--round 99" in line and f"benchmark {KEY} has rounds 1 (coarse)" in line, line


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_a_bad_ui_port_is_a_usage_error(proj, port):
    line = one_error(cli("ui", "--port", port, cwd=proj), 2)
    assert f"'{port}' is not a port: use a number from 1 to 65535" in line, line


def test_a_busy_ui_port_is_one_line_naming_it(proj):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        line = one_error(cli("ui", "--port", str(port), cwd=proj), 1)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line, line


def test_a_dry_run_promote_reports_the_real_champion(proj):
    before = (proj / "promotions" / f"{KEY}.json").read_text()
    proc = cli("promote", "--dry-run", cwd=proj)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "keep champion - this model is champion already (version 1, test accuracy " in proc.stderr, proc.stderr
    assert "no champion yet" not in proc.stderr and "(dry run: nothing changed)" in proc.stderr
    assert (proj / "promotions" / f"{KEY}.json").read_text() == before
    assert json.loads(before)["reason"] == "no champion yet"  # how v1 became champion, kept


def test_a_report_rerun_removes_what_a_killed_one_left(proj):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that has ended, as a killed report's
    reports = proj / "reports"
    reports.mkdir(exist_ok=True)
    left = [reports / f".{name}.tmp-{dead.pid}-0a1b2c3d" for name in ("leaderboard.csv", "index.html")]
    for path in left:
        path.write_text("half a file")
    proc = cli("report", cwd=proj)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [p.name for p in reports.iterdir() if ".tmp-" in p.name]
    assert (reports / "leaderboard.csv").is_file() and (reports / "index.html").is_file()
