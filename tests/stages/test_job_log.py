"""The main job's log reads cleanly when it is not a terminal, and ends in a short summary table."""

from __future__ import annotations

import re

import pytest

from conftest import run_cli

from pipeline.report import _champion_note


@pytest.mark.slow
@pytest.mark.dvc
def test_repro_log_has_no_colour_codes_or_python_warnings(project):
    _, state = project
    log = state["first"].stdout + state["first"].stderr  # `dvc repro` with its output captured: no TTY
    assert "\x1b[" not in log, log[max(0, log.find("\x1b[") - 300) :][:600]
    assert not re.findall(r"^.*\b\w*Warning: .*$", log, flags=re.M)  # e.g. MLflow's "Add type hints to `predict`"


@pytest.mark.slow
@pytest.mark.dvc
def test_summary_is_one_short_row_per_benchmark(project):
    dest, state = project
    proc = run_cli("summary", cwd=dest, env=state["env"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["benchmark", "metric", "test", "baseline", "champion"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == {"rt_polarity_keras_mlp", "boston_housing_keras_mlp", "digits_keras_mlp", "digits_numpy_mlp",
                         "digits_linear"}  # fmt: skip
    assert "mae (min)" in rows["boston_housing_keras_mlp"] and "accuracy (max)" in rows["digits_linear"]
    assert all(row.endswith("v1 (first)") for row in rows.values())
    assert max(map(len, lines)) <= 100 and "reports/leaderboard.md" in lines[-1]


def test_champion_note_says_whether_the_champion_moved():
    base = {"version": "3", "champion_version": 2, "champion_value": 0.775, "reason": "better"}
    assert _champion_note(base | {"promote": True}) == "moved to v3 (was v2: 0.7750)"
    assert _champion_note(base | {"promote": True, "reason": "forced"}) == "moved to v3 (was v2: 0.7750, forced)"
    assert _champion_note(base | {"promote": False}) == "kept v2 (0.7750); v3 is challenger"
    assert _champion_note(base | {"promote": True, "champion_version": None, "champion_value": None}) == "v3 (first)"
    assert _champion_note(base | {"promote": True, "champion_version": 3}) == "v3 (unchanged)"
