"""Each fault scenario of `benchmarks.faults`, once, at tiny size: nothing lost, duplicated or left running.

The scenarios (`benchmarks/fault_scenarios.py`) run the real CLI (`python -m pipeline search
--workers 2`) against a throwaway PostgreSQL cluster and `mlflow server`, one round of 8 trials of
the NumPy network on digits, and inject their fault once round 1 is under way: SIGKILL of one
worker, SIGKILL of every process then a rerun (at once, and after the shortened grace period),
a PostgreSQL restart, an MLflow server restart, and a PostgreSQL restart under 4 workers on 2
launchers. The benchmark runs them with a baseline and repeats; here only the faulted run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import fault_scenarios as fs
from conftest import missing

pytestmark = [pytest.mark.slow, pytest.mark.servers]


@pytest.fixture(scope="module")
def svc():
    if (why := fs.pg_unavailable()) is not None:
        missing(f"no PostgreSQL here: {why} (Debian package postgresql)")
    with fs.services() as services:
        yield services


@pytest.fixture(scope="module")
def project(svc, tmp_path_factory) -> Path:
    return fs.make_project(tmp_path_factory.mktemp("fault-scenarios") / "proj", svc.ml.uri)


@pytest.mark.parametrize("name", fs.SCENARIOS)
def test_fault_scenario_loses_nothing(svc, project, name):
    got = fs.run_scenario(name, svc, project, fs.TINY)
    logs = "\n".join(p.read_text(errors="replace")[-2500:] for p in sorted(project.glob(f"{got['key']}-*.log")))
    assert got["exit_codes"] and all(c == 0 for c in got["exit_codes"]), f"{got}\n{logs}"
    assert got["finished"] == got["expected"] == sum(fs.TINY.budgets), f"{got}\n{logs}"
    assert {k: got[k] for k in ("lost", "duplicates", "running_left", "mlflow_running", "tracebacks")} == {
        "lost": 0,
        "duplicates": 0,
        "running_left": 0,
        "mlflow_running": 0,
        "tracebacks": 0,
    }, f"{got}\n{logs}"
    if name.startswith("kill"):
        assert got["interrupted"] >= 1, f"the fault hit no trial: {got}"
