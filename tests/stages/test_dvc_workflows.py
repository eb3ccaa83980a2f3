"""DVC users' everyday workflows with the stock `dvc` client, on a copy of the tiny finished project.

* Experiments compare: after a commit, `dvc exp run -S 'benchmarks.<b>.rounds.coarse.n_trials=3'`,
  then `dvc exp show`, `dvc metrics diff` and `dvc params diff` give numbers for the workspace,
  HEAD and the experiment; `-S` changes one line of params.yaml, not its format, and `dvc params
  diff` names the round's setting.
* Identical data reruns nothing: fetching again (here in a moved copy of the project) writes the
  same bytes, and `dvc status` sees nothing changed; a mirror, a moved mirror and the URL give
  byte-identical raw folders.
* `dvc exp show` in a 160-column terminal (its pager, `less -S`, shows each line's first 160
  characters) shows each benchmark's test metric, its header whole and its value, for the workspace,
  HEAD and an experiment: `test_metrics.json` holds one a benchmark and its columns come first.
* `dvc plots show` draws each benchmark's plots with their templates, from Vega scripts vendored
  in `vendor/vega/` (checked by SHA-256): the page renders in headless Chromium with every
  network request refused.
"""

from __future__ import annotations

import csv
import filecmp
import hashlib
import io
import json
import math
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from conftest import ROOT, sh

pytestmark = [pytest.mark.slow, pytest.mark.dvc]

KEY = "digits_linear"  # the fastest benchmark: an experiment on it reruns in seconds
EXPERIMENT = "more-trials"  # the one experiment the tests on the finished project share (fixture `experiment`)
VENDOR = ROOT / "vendor" / "vega"


# ------------------------------------------------------------------------------ without a pipeline run


def test_vendored_vega_scripts_match_their_pins_and_the_template_loads_only_them():
    pins = dict(reversed(line.split()) for line in (VENDOR / "SHA256SUMS").read_text().splitlines())
    assert set(pins) == {"vega.min.js", "vega-lite.min.js", "vega-embed.min.js"}
    for name, digest in pins.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    for lib in ("vega", "vega-lite", "vega-embed"):
        assert "Redistribution and use" in (VENDOR / f"LICENSE.{lib}").read_text()
    template = (VENDOR / "dvc_plots.html").read_text()
    assert "{plot_divs}" in template and "{scripts}" not in template and "http" not in template.split("<body>")[0]
    config = (ROOT / ".dvc" / "config").read_text()
    assert "html_template = ../vendor/vega/dvc_plots.html" in config


def test_dvc_yaml_plots_are_generated_from_params(tmp_path):
    from pipeline.config import load_params
    from pipeline.dvc_plots import plot_declarations

    check = subprocess.run([sys.executable, "-m", "pipeline.dvc_plots", "--check"], cwd=ROOT, capture_output=True,
                           text=True)  # fmt: skip
    assert check.returncode == 0, check.stderr
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    named = {next(iter(p)): next(iter(p.values())) for p in declared if isinstance(p, dict)}
    for key, bench in params["benchmarks"].items():
        mine = {n: p for n, p in named.items() if n.startswith(f"{key}: ")}
        templates = sorted(p["template"] for p in mine.values())
        first = "scatter" if bench["dataset"] == "boston_housing" else "confusion"
        assert templates == sorted([first, "linear", "linear", "search_history"]), (key, templates)
        curves = [p["y"] for p in mine.values() if p["template"] == "linear"]  # loss and metric on their own axes
        metric = "mae" if first == "scatter" else "accuracy"
        assert [list(y.values()) for y in curves] == [["loss"], [metric]], curves
        pngs = [p for p in declared if isinstance(p, str) and f"/{key}/" in p]
        assert pngs == ([f"plots/{key}/residuals.png"] if first == "scatter" else []), "each figure drawn once"
        history = next(p for n, p in mine.items() if "search history" in n)
        assert list(history["y"]) == [f"plots/{key}/search/{k}-{name}.csv"
                                      for k, name in enumerate(bench["rounds"], start=1)]  # fmt: skip
    # a new benchmark in params.yaml gets its plots, and `--check` notices the stale dvc.yaml
    params["benchmarks"]["digits_linear2"] = params["benchmarks"][KEY]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    assert any("digits_linear2: " in str(p) for p in plot_declarations(load_params(tmp_path / "params.yaml")))
    stale = subprocess.run([sys.executable, "-m", "pipeline.dvc_plots", "--check", "--params", "params.yaml"],
                           cwd=tmp_path, capture_output=True, text=True, env=_env_with_root())  # fmt: skip
    assert stale.returncode == 1 and "run `python -m pipeline.dvc_plots`" in stale.stderr


def _env_with_root() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _dvc_env() -> dict:
    import os

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip


def test_set_param_changes_one_line_of_params_yaml(tmp_path):
    """`dvc exp run -S` rewrites params.yaml through ruamel: the shipped layout is one it keeps."""
    env = _dvc_env()
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages:\n  noop:\n    cmd: echo ok\n    params:\n      - benchmarks\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "i"]):
        sh(cmd, tmp_path, env)
    before = (tmp_path / "params.yaml").read_text().splitlines()
    bad = subprocess.run(["dvc", "exp", "run", "-S", f"benchmarks.{KEY}.rounds[0].n_trials=3"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)  # fmt: skip
    assert bad.returncode != 0 and (tmp_path / "params.yaml").read_text().splitlines() == before
    sh(["dvc", "exp", "run", "-S", f"benchmarks.{KEY}.rounds.coarse.n_trials=3"], tmp_path, env)
    after = (tmp_path / "params.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(after) == len(before) and len(changed) == 1, changed
    assert changed[0][0].strip() == "n_trials: 5" and changed[0][1].strip() == "n_trials: 3"
    diff = sh(["dvc", "params", "diff"], tmp_path, env).stdout  # the workspace against HEAD, one row per setting
    rows = [line.split() for line in diff.splitlines() if "benchmarks." in line]
    assert rows == [["params.yaml", f"benchmarks.{KEY}.rounds.coarse.n_trials", "5", "3"]], diff


def test_identical_files_from_any_source_give_byte_identical_raw_folders(tmp_path, server):
    from sklearn.datasets import load_digits

    from fixtures_datasets import npz_bytes, sha256
    from pipeline import datasets as ds

    b = load_digits()
    data = npz_bytes(x_train=b.data[:1500], y_train=b.target[:1500], x_test=b.data[1500:], y_test=b.target[1500:])
    url = server.add("digits.npz", data)
    custom = {"url": url, "sha256": sha256(data), "format": "keras-npz", "task": "multiclass"}
    mirror = tmp_path / "mirror" / "mine"
    mirror.mkdir(parents=True)
    (mirror / "digits.npz").write_bytes(data)
    moved = tmp_path / "elsewhere" / "mirror"
    shutil.copytree(tmp_path / "mirror", moved)
    folders = []
    for name, mirrors in [("url", []), ("mirror", [tmp_path / "mirror"]), ("moved", [moved])]:
        dest = tmp_path / name / "raw" / "mine"
        ds.fetch("mine", dest, mirrors=mirrors, custom=custom, progress=False)
        ds.fetch("mine", dest, mirrors=mirrors, custom=custom, progress=False)  # again: a cache hit
        folders.append(dest)
    assert server.requests("digits.npz") == [None]  # only the first folder downloaded
    for other in folders[1:]:
        same = filecmp.dircmp(folders[0], other)
        assert sorted(same.common) == ["digits.npz", "manifest.json"] and not same.left_only and not same.right_only
        assert (folders[0] / "manifest.json").read_bytes() == (other / "manifest.json").read_bytes()
    kinds = [json.loads(line)["files"][0]["source"]["kind"]
             for line in (folders[1].parent / "mine.fetch-log.jsonl").read_text().splitlines()]  # fmt: skip
    assert kinds == ["mirror", "cache"]  # where the files came from: in the log beside the folder


# ------------------------------------------------------------------------- on the finished tiny project


@pytest.fixture(scope="module")
def committed(project, tmp_path_factory) -> tuple[Path, dict]:
    """A moved copy of the finished project, its results committed (so HEAD has metrics)."""
    src, state = project
    dest = tmp_path_factory.mktemp("dvc-workflows") / "proj"
    shutil.copytree(src, dest, symlinks=True)
    env = state["env"]
    sh(["git", "checkout", "--", "params.yaml"], dest, env)  # undo what other tests of the project changed
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-qm", "results"], dest, env)
    return dest, env


@pytest.fixture(scope="module")
def experiment(committed) -> str:
    """The name of one `dvc exp run` on the committed project: KEY's coarse round with 3 trials instead of 2."""
    dest, env = committed
    sh(["dvc", "exp", "run", "-S", f"benchmarks.{KEY}.rounds.coarse.n_trials=3", "-n", EXPERIMENT], dest, env)
    return EXPERIMENT


def test_refetching_identical_data_changes_nothing_downstream(committed):
    dest, env = committed
    assert json.loads(sh(["dvc", "status", "--json"], dest, env).stdout) == {}
    before = {p: p.read_bytes() for p in sorted((dest / "data" / "raw").rglob("*")) if p.is_file()}
    for dataset in ("digits", "boston_housing"):
        sh([sys.executable, "-m", "pipeline", "fetch", "--dataset", dataset], dest, env)
    after = {p: p.read_bytes() for p in sorted((dest / "data" / "raw").rglob("*")) if p.is_file()}
    logs = {p for p in after if p.name.endswith(".fetch-log.jsonl")}
    assert {p: v for p, v in after.items() if p not in logs} == {p: v for p, v in before.items() if p not in logs}
    manifest = (dest / "data/raw/boston_housing/manifest.json").read_text()
    assert str(dest) not in manifest and "fetched_at" not in manifest and ".venv" not in manifest
    assert json.loads(sh(["dvc", "status", "--json"], dest, env).stdout) == {}


def _exp_rows(shown: list) -> dict[str, dict]:
    """`dvc exp show --json` as {name: {"metrics": {file: data}, "params": {...}}} (workspace, HEAD, exps)."""
    rows = {}

    def add(entry: dict, name: str) -> None:
        data = entry.get("data") or {}
        metrics = {f: (v or {}).get("data") for f, v in (data.get("metrics") or {}).items()}
        params = {f: (v or {}).get("data") for f, v in (data.get("params") or {}).items()}
        rows[name] = {"metrics": metrics, "params": params}

    for entry in shown:
        add(entry, "workspace" if entry.get("rev") == "workspace" else "HEAD")
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev, rev.get("name") or rev.get("rev"))
    return rows


def test_experiments_show_metrics_for_workspace_head_and_each_experiment(committed, experiment):
    dest, env = committed
    head = json.loads(sh(["git", "show", f"HEAD:metrics/{KEY}.json"], dest, env).stdout)
    assert set(head) == {"test", "test_seeds", "test_ensemble", "test_single", "baseline", "search"}  # numbers only
    assert set(head["test_seeds"]) == {"mean", "ci_low", "ci_high"}  # the final seeds' interval (std, n: elsewhere)
    assert set(head["test"]) == {"accuracy", "loss"} and set(head["baseline"]) == {"accuracy"}
    assert set(head["search"]) == {"trials", "pruned", "epochs", "wall_s", "best_at_epochs"}  # a few columns
    accounting = json.loads((dest / "results" / "accounting" / f"{KEY}.json").read_text())  # not DVC metrics
    assert list(accounting["rounds"]) == ["1-coarse", "2-fine"] and "epochs_saved" in accounting
    assert f"results/accounting/{KEY}.json" not in sh(["dvc", "metrics", "show"], dest, env).stdout
    evaluated = json.loads((dest / "results" / "evaluation" / f"{KEY}.json").read_text())
    assert evaluated["metric"] == "accuracy" and len(evaluated["run_id"]) == 32
    assert head["search"]["trials"] == 4 and head["search"]["epochs"] >= 4 and head["search"]["wall_s"] > 0

    rows = _exp_rows(json.loads(sh(["dvc", "exp", "show", "--json"], dest, env).stdout))
    assert {"workspace", "HEAD", experiment} <= set(rows), list(rows)
    for name in ("workspace", "HEAD", experiment):
        for key in ("digits_linear", "digits_keras_mlp", "boston_housing_keras_mlp"):
            m = rows[name]["metrics"][f"metrics/{key}.json"]
            assert isinstance(m["test"]["accuracy" if "digits" in key else "mae"], float), (name, key, m)
    assert rows["HEAD"]["metrics"][f"metrics/{KEY}.json"]["search"]["trials"] == 4
    assert rows[experiment]["metrics"][f"metrics/{KEY}.json"]["search"]["trials"] == 5
    assert rows[experiment]["params"]["params.yaml"]["benchmarks"][KEY]["rounds"]["coarse"]["n_trials"] == 3

    diff = json.loads(sh(["dvc", "metrics", "diff", "HEAD", experiment, "--json"], dest, env).stdout)
    assert diff[f"metrics/{KEY}.json"]["search.trials"] == {"old": 4, "new": 5, "diff": 1}
    assert not any(k.startswith("metrics/digits_keras_mlp") for k in diff)  # the other benchmarks did not rerun
    params = json.loads(sh(["dvc", "params", "diff", "HEAD", experiment, "--json"], dest, env).stdout)
    changed = {f"benchmarks.{KEY}.rounds.coarse.n_trials": {"old": 2, "new": 3, "diff": 1}}  # the round, by name
    assert params["params.yaml"] == changed, params
    table = list(csv.DictReader(io.StringIO(sh(["dvc", "exp", "show", "--csv"], dest, env).stdout)))
    trials = f"metrics/{KEY}.json:search.trials"
    by_row = {r["Experiment"] or r["rev"]: r for r in table}
    assert [by_row[n][trials] for n in ("workspace", experiment)] == ["5", "5"], table
    head = next(r for r in table if r["typ"] == "baseline" and r["rev"] != "workspace")
    assert head[trials] == "4" and "!" not in head.values() and "!" not in by_row[experiment].values(), head


def _in_terminal(cmd: list[str], cwd: Path, env: dict, timeout: float = 300) -> str:
    """What `cmd` prints with its output on a pseudo-terminal (so DVC pipes its table into `$PAGER`), ANSI codes
    removed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, out.decode(errors="replace")[-4000:]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode()).replace("\r", "")


def test_exp_show_in_a_160_column_terminal_shows_each_benchmarks_test_metric(committed, experiment):
    dest, env = committed
    benchmarks = list(yaml.safe_load((dest / "params.yaml").read_text())["benchmarks"])
    assert len(benchmarks) == 5, benchmarks
    for b in benchmarks:  # test_metrics.json is each benchmark's test metric of metrics/<b>.json
        metric = json.loads((dest / "results" / "evaluation" / f"{b}.json").read_text())["metric"]
        test = json.loads((dest / "metrics" / f"{b}.json").read_text())["test"][metric]
        assert json.loads((dest / "test_metrics.json").read_text())[b] == test, b
    rows = _exp_rows(json.loads(sh(["dvc", "exp", "show", "--json"], dest, env).stdout))
    terminal = {**env, "COLUMNS": "160", "LINES": "50", "PAGER": "cat"}  # cat: the lines DVC gives its pager
    shown = _in_terminal(["dvc", "exp", "show"], dest, terminal).splitlines()
    screen = [line[:160] for line in shown]  # what `less -S`, DVC's pager, shows of each line before scrolling
    header = next(line for line in screen if " Experiment " in line)
    by_row = {"workspace": next(line for line in screen if line.strip().startswith("workspace")),
              experiment: next(line for line in screen if f"[{experiment}]" in line)}  # fmt: skip
    by_row["HEAD"] = screen[screen.index(by_row["workspace"]) + 1]  # the baseline row under the workspace
    for b in benchmarks:
        found = re.search(rf"(?<=\s){re.escape(b)}(?=\s)", header)
        assert found, f"no whole {b!r} header in the first 160 columns:\n" + "\n".join(screen)
        for name, line in by_row.items():
            cell = line[: found.end()].split()[-1]  # metric columns are right-aligned under their header
            expected = rows[name]["metrics"]["test_metrics.json"][b]
            assert "…" not in cell and math.isclose(float(cell), expected, rel_tol=1e-4), (name, b, cell, expected)


@pytest.mark.browser
def test_plots_show_renders_every_benchmark_offline_in_chromium(committed):
    require_chromium()
    from playwright.sync_api import sync_playwright

    dest, env = committed
    png = dest / "plots" / KEY / "confusion_matrix.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    confusion = (dest / "plots" / "rt_polarity_keras_mlp" / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and {*confusion[1].split(",")} <= {"rotten", "fresh"}
    sh(["dvc", "plots", "show"], dest, env)
    page_file = dest / "dvc_plots" / "index.html"
    html = page_file.read_text()
    assert "cdn.jsdelivr" not in html and "../vendor/vega/vega.min.js" in html
    # each search history (its own template, .dvc/plots/search_history.json) fits the y axis to the scores
    histories = [spec for spec in html.split('"$schema"') if "search history (one marker per round)" in spec]
    assert histories and all('"scale": {"zero": false}' in spec for spec in histories), histories[:1]
    params = yaml.safe_load((dest / "params.yaml").read_text())
    declared = [next(iter(p)) for p in yaml.safe_load((dest / "dvc.yaml").read_text())["plots"] if isinstance(p, dict)]
    assert len(declared) == 4 * len(params["benchmarks"])
    ids = ["".join("_" if c in r"!@#$%^&*()[]{};,<>?\/:.|`~=_+ " else c for c in name) for name in declared]
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

            def refuse(route):
                if not route.request.url.startswith(("file:", "data:")):
                    outside.append(route.request.url)
                    return route.abort()
                return route.continue_()

            page.route("**/*", refuse)
            page.goto(page_file.as_uri(), wait_until="load")
            page.wait_for_function(
                "ids => ids.every(id => { const d = document.getElementById(id);"
                " return d && d.querySelector('canvas, svg') })", arg=ids, timeout=60_000,
            )  # fmt: skip
            sizes = page.evaluate(
                "ids => ids.map(id => { const c = document.getElementById(id).querySelector('canvas, svg');"
                " const r = c.getBoundingClientRect(); return [r.width, r.height] })", ids,
            )  # fmt: skip
            images = page.evaluate("() => Array.from(document.images).map(i => [i.naturalWidth, i.alt || i.src])")
            text = page.inner_text("body")
            page.screenshot(path=str(dest / "dvc_plots" / "page.png"), full_page=True)
        finally:
            browser.close()
    assert outside == [], outside
    assert errors == [], errors
    assert all(w > 100 and h > 100 for w, h in sizes), dict(zip(declared, sizes))
    regression = [k for k, b in params["benchmarks"].items() if b["dataset"] == "boston_housing"]
    assert len(images) == len(regression) and all(w > 0 for w, _ in images), images  # residuals PNGs only
    assert "Error" not in text and "error" not in text.lower(), text[:2000]
    assert np.all([name.split(":")[0] in params["benchmarks"] for name in declared])
