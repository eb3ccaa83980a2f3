"""A full disk under a search: one clear error, no half-written file taken as complete, and the study resumes.

As root, a small tmpfs is mounted over a folder of a tiny project (the journal folder `studies/`:
the project's disk; or the artifact store `mlartifacts/`) in a private mount namespace
(`unshare -m`) held open by a sleeping process, so several commands (`nsenter`) see the same
full disk and the test reads it through `/proc/<pid>/root`. The search fills it and must stop
with one `error: no space left on device` line; every journal record left is whole (a cut
record would make the study unloadable once the next append lands) and every logged artifact
complete. The tmpfs is then grown (space freed) and the same command resumes and finishes the
round's budget.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, missing, numpy_digits_params

pytestmark = pytest.mark.slow
KEY = "digits_numpy_mlp"
BUDGET = 6
PARAMS = numpy_digits_params(n_trials=BUDGET, epochs=2, log_models=True)
# where the disk fills, and a tmpfs size that fills during the round (its whole journal is ~9 kB, its artifacts ~370 kB)
FULL = {"studies": "8k", "mlartifacts": "100k"}


def _env() -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TUNEBENCH_STORAGE", "TUNEBENCH_DEBUG"):
        env.pop(var, None)
    return env


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        missing("filling a disk needs root, `unshare` and `nsenter` (a tmpfs in a private mount namespace)")
    proj = tmp_path_factory.mktemp("diskfull") / "proj"
    proj.mkdir()
    (proj / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    for stage in ("fetch", "preprocess"):
        proc = subprocess.run([sys.executable, "-m", "pipeline", stage], cwd=proj, env=_env(), capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proj


class FullDisk:
    """A tmpfs of `size` over `folder`, seen by the commands run through `run` (one mount namespace)."""

    def __init__(self, folder: Path, size: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        script = 'mount -t tmpfs -o size="$1" tmpfs "$0" && echo mounted && exec sleep 900'
        self.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(folder),
                                        size], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        if self.holder.stdout.readline().strip() != "mounted":
            self.holder.wait()
            missing(f"cannot mount a tmpfs in a private mount namespace here: {self.holder.stderr.read()[-500:]}")

    def run(self, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
        # `cd` inside: a working directory taken before entering the namespace would not see its mounts
        cmd = ["nsenter", "-t", str(self.holder.pid), "-m", "sh", "-c", 'cd "$0" && exec "$@"', str(cwd), *argv]
        return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)

    def grow(self, size: str) -> None:
        """Free space: the tmpfs grows to `size`, its files kept."""
        self.run(Path("/"), "mount", "-o", f"remount,size={size}", str(self.folder)).check_returncode()

    def path(self, p: Path) -> Path:
        """`p` as the namespace sees it."""
        return Path(f"/proc/{self.holder.pid}/root") / p.relative_to("/")

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def _journal_is_whole(journal: Path) -> int:
    """Every record of the journal is a complete JSON line; returns how many there are."""
    data = journal.read_bytes()
    assert not data or data.endswith(b"\n"), f"{journal} ends with a cut record: {data[-120:]!r}"
    lines = data.splitlines()
    for line in lines:
        json.loads(line)
    return len(lines)


@pytest.mark.parametrize("where", sorted(FULL))
def test_a_full_disk_is_one_error_and_the_rerun_resumes(prepared, tmp_path, where):
    import optuna

    proj = tmp_path / "proj"
    shutil.copytree(prepared, proj)
    disk = FullDisk(proj / where, FULL[where])
    try:
        first = disk.run(proj, sys.executable, "-m", "pipeline", "search")
        assert first.returncode == 1, first.stderr[-3000:]
        assert _errors(first) == ["error: no space left on device: free some disk space and rerun (finished work is "
                                  "kept)"], first.stderr[-3000:]  # fmt: skip
        seen = disk.path(proj)
        journal = seen / "studies" / KEY / "optuna.journal"
        _journal_is_whole(journal)
        assert not list(seen.rglob(".*.tmp-*")), "a temporary file was left behind"
        result = seen / "results" / "search" / f"{KEY}.json"
        assert not result.exists() or json.loads(result.read_text())["best"]
        for npz in (seen / "mlartifacts").rglob("params.npz"):  # a logged model is whole or absent
            import numpy as np

            with np.load(npz) as arrays:
                assert arrays.files

        disk.grow("64m")
        again = disk.run(proj, sys.executable, "-m", "pipeline", "search")
        assert again.returncode == 0 and _errors(again) == [], again.stderr[-3000:]
        _journal_is_whole(journal)
        from pipeline.search.execution.budget import budget_used
        from pipeline.search.journal import SafeJournalFileBackend

        storage = optuna.storages.JournalStorage(SafeJournalFileBackend(journal))
        (name,) = optuna.get_all_study_names(storage)
        study = optuna.load_study(study_name=name, storage=storage)
        assert budget_used(study) == BUDGET
        assert not [t.number for t in study.get_trials(deepcopy=False) if not t.state.is_finished()]
        assert json.loads(result.read_text())["best"]["value"] > 0.5
    finally:
        disk.close()


def test_a_cut_journal_record_is_removed_on_open(tmp_path):
    """A journal whose last record was cut (an append that failed half-way) loads, and later appends stay readable."""
    import optuna

    from pipeline.search.journal import SafeJournalFileBackend

    path = tmp_path / "optuna.journal"
    storage = optuna.storages.JournalStorage(SafeJournalFileBackend(path))
    optuna.create_study(study_name="s", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code":8,"worker_id":"cut-')  # as ENOSPC leaves it
    storage = optuna.storages.JournalStorage(SafeJournalFileBackend(path))
    study = optuna.load_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert path.read_bytes().startswith(whole) and _journal_is_whole(path) > whole.count(b"\n")
    assert (
        len(
            optuna.load_study(
                study_name="s", storage=optuna.storages.JournalStorage(SafeJournalFileBackend(path))
            ).trials
        )
        == 3
    )
