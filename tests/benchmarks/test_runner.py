"""benchmarks.runner: every result is one schema (command, machine, versions, figures), written atomically, and
every benchmark runs as `python -m benchmarks.<name>` from the repository."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from benchmarks.runner import RESULTS, SCHEMA, Run, figures, load, parser
from conftest import ROOT


def test_a_result_holds_the_command_machine_versions_and_figures(tmp_path):
    run = Run("benchmarks.example", ["--seeds", "2", "--note", "two words"])
    out = tmp_path / "deep" / "example.json"
    figs = {"rows": [{"value": 0.1234567890123}], "p": 1.2851227425163185e-123}
    saved = run.save(out, figs)
    result = json.loads(out.read_text())
    assert result == saved and list(result) == list(SCHEMA)
    assert result["command"] == "python -m benchmarks.example --seeds 2 --note 'two words'"
    assert result["figures"] == figs == figures(out)
    machine, versions = result["machine"], result["versions"]
    assert machine["cpus"] == os.cpu_count() and machine["cpu"] and machine["platform"]
    assert machine["memory_gb"] > 0 and len(machine["loadavg_1_5_15m_end"]) == 3
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["optuna"] and versions["mlflow"] and versions["numpy"]
    assert versions["tunebench"] is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", versions["tunebench"])
    assert [p.name for p in out.parent.iterdir()] == ["example.json"]  # no temporary file left beside it


def test_figures_refuse_a_file_that_is_not_a_result(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"machine": {}, "rows": []}))
    with pytest.raises(ValueError, match="not a benchmark result"):
        figures(path)


def test_the_parser_takes_the_docstring_and_defaults_out_to_the_results_folder():
    ap = parser("First line.\n\nMore detail.\n", "example.json")
    assert ap.description == "First line." and ap.epilog == "More detail."
    assert ap.parse_args([]).out == RESULTS / "example.json"
    assert not any(a.dest == "out" for a in parser("Doc.", None)._actions)


def test_every_committed_result_follows_the_schema():
    paths = sorted(RESULTS.glob("*.json"))
    assert paths
    for path in paths:
        result = load(path)
        assert isinstance(result["figures"], dict) and result["figures"], path.name
        assert result["command"] is None or result["command"].startswith("python "), path.name


def test_no_benchmark_edits_sys_path_or_imports_the_tests():
    for path in (ROOT / "benchmarks").rglob("*.py"):
        text = path.read_text()
        assert "sys.path.insert" not in text and "sys.path.append" not in text, path
        assert not re.search(r"^\s*(from|import) tests\b", text, re.M), path


def test_a_benchmark_runs_as_a_module(tmp_path):
    """`python -m benchmarks.profile_regression` on two tiny projects: the command it records is the one run."""
    for project, score in (("default", 0.8), ("full", 0.9)):
        folder = tmp_path / project / "results" / "evaluation"
        folder.mkdir(parents=True)
        rows = [{"accuracy": score + d, "seed": i} for i, d in enumerate((0.0, 0.01, 0.02))]
        (folder / "b.json").write_text(json.dumps({"benchmark": "b", "metric": "accuracy", "direction": "maximize",
                                                   "per_seed": rows}))  # fmt: skip
    out = tmp_path / "out.json"
    args = ["--default", str(tmp_path / "default"), "--bigger", str(tmp_path / "full"), "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "benchmarks.profile_regression", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = load(out)
    assert result["command"] == " ".join(["python", "-m", "benchmarks.profile_regression", *args])
    assert result["figures"]["rows"][0]["verdict"] == "better" and f"saved {out}" in proc.stderr


def test_python_m_benchmarks_lists_the_runnable_benchmarks():
    proc = subprocess.run([sys.executable, "-m", "benchmarks"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[2] for line in proc.stdout.splitlines()]
    assert {"benchmarks.faults", "benchmarks.overhead", "benchmarks.replay.bench"} <= set(listed)
    assert "benchmarks.runner" not in listed and "benchmarks.fault_scenarios" not in listed
