"""The documentation: README.md is a short front page that starts with the two set-up commands, and the MkDocs
site builds with `--strict` (no broken link or anchor), offline, with its result tables read from the JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.runner import RESULTS, figures

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["getting-started", "configuration", "datasets", "search", "tracking", "operations", "results", "architecture"]


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move detail into docs/"
    assert lines[0] == "# tunebench"
    commands = [ln.split("#")[0].strip() for ln in lines[:12] if ln.startswith("bash scripts/")]
    assert commands == ["bash scripts/run.sh", "bash scripts/test.sh"]
    for page in PAGES:  # every page is linked from the front page
        assert f"(docs/{page}.md)" in "\n".join(lines), page


def _cell(html: str, row: str, column: int) -> str:
    """The text of cell `column` in the table row whose first cell is `row`."""
    tr = re.search(rf"<tr>\s*<td>{re.escape(row)}</td>(.*?)</tr>", html, re.S)
    assert tr, f"no table row {row!r}"
    return re.sub(r"<[^>]+>", "", re.findall(r"<td>(.*?)</td>", tr[1], re.S)[column - 1]).strip()


def test_mkdocs_site_builds_strict_with_tables_from_the_results(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # the `mkdocs` command, as the README has users run it (not `python -m`, which puts the checkout on sys.path)
    cmd = [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(site)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in ["", *PAGES]:
        assert (site / page / "index.html").is_file(), page
    html = (site / "results" / "index.html").read_text()
    assert "<!-- table:" not in html
    # the default run's row, read from metrics/<b>.json at build time
    metrics = json.loads((ROOT / "metrics" / "digits_linear.json").read_text())
    assert _cell(html, "digits_linear", 2) == f"{metrics['test']['accuracy']:.4f}"
    # the overhead table, from the figures of benchmarks/results/overhead.json
    parts = figures(RESULTS / "overhead.json")["benchmarks"]
    parts = parts["rt_polarity_keras_mlp"]["instrumented"]["parts"]
    tf_import = "tensorflow import"
    assert _cell(html, tf_import, 1) == f"{parts['wall'][tf_import]} ({parts['cpu'][tf_import]})"
    faults = figures(RESULTS / "faults.json")
    ops = (site / "operations" / "index.html").read_text()
    assert _cell(ops, "kill_one_worker", 1) == str(faults["scenarios"][0]["expected"])
    # offline: no font or script from another host
    index = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in index
    assert not re.search(r"<script[^>]+src=\"https?://", index)
