"""The report against the literature: a real tiny search (digits, the NumPy network, 2 rounds of 2
trials; fetch, preprocess, search, train_best, evaluate, promote in process), plus a benchmark whose
data cannot be fetched here (imdb). Checks leaderboard.md/csv (reference and source, trials,
registry version and alias, the "not run here" row with its fetch hint), test_metrics.json, and opens
reports/index.html in headless Chromium: the table and every figure render, with no network
request and no console error."""

from __future__ import annotations

import csv
import json
import math

import pytest
import yaml

from browser import offline_page, require_chromium
from conftest import ROOT, digits_search_params
from pipeline import paths, report, report_sources, stages
from pipeline.config import load_params
from pipeline.reference import REFERENCES, goal_for, reference_for

KEY = "digits_numpy_mlp"


def test_every_reference_of_issue_15_has_its_value_and_source():
    expected = {"imdb": 0.8836, "reuters": 0.791, "boston_housing": 2.61, "mnist": 0.9925, "cifar10": 0.50}
    for dataset, value in expected.items():
        ref = reference_for(dataset, "keras_mlp" if dataset != "mnist" else "keras_cnn")
        assert ref is not None and ref.value == value and ref.source, dataset
    assert reference_for("fashion_mnist", "keras_cnn").value == 0.925
    assert reference_for("fashion_mnist", "numpy_mlp").value == 0.90
    assert reference_for("mnist", "linear") is None  # the small-CNN figure is no reference for other families
    assert reference_for("breast_cancer", "linear") is None and reference_for("rt_polarity") is None
    assert goal_for("rt_polarity", "keras_mlp") == ("accuracy", 0.80)
    assert goal_for("boston_housing", "keras_mlp") == ("mae", 2.3)
    assert all(r.source and r.shown for refs in REFERENCES.values() for r in refs)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A project folder after a tiny real search of digits with the NumPy network, promoted and reported."""
    require_chromium()
    root = tmp_path_factory.mktemp("report")
    data = digits_search_params(seed=3, hparams={}, lr=(1e-3, 1e-1), rounds=[
        {"name": "coarse", "n_trials": 2, "epochs": 2, "pruner": "none"},
        {"name": "fine", "n_trials": 2, "epochs": 3, "pruner": "none", "top_quantile": 0.5}])  # fmt: skip
    bench = data["benchmarks"].pop("digits_keras_mlp")
    data["benchmarks"][KEY] = {**bench, "model": "numpy_mlp", "hparams": {"units": [32], "batch_size": 50}}
    data["datasets"]["imdb"] = {"source": "builtin", "preprocess": {"kind": "multi_hot", "num_words": 1000}}
    data["benchmarks"]["imdb_keras_mlp"] = {"dataset": "imdb", "model": "keras_mlp",
                                            "rounds": [{"name": "coarse", "n_trials": 1, "epochs": 1}]}  # fmt: skip
    mp = pytest.MonkeyPatch()
    try:
        for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE"):
            mp.setenv(var, "")  # recorded, so undo also removes what MLflow's set_tracking_uri exports
            mp.delenv(var)
        mp.setenv("HOME", str(root))  # no Keras cache of this machine can hold imdb
        mp.chdir(root)
        (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        params = load_params(root / "params.yaml")
        stages.fetch(params, "digits")
        stages.preprocess(params, "digits")
        for step in (stages.search, stages.train_best, stages.evaluate, stages.promote):
            step(params, KEY)
        stages.report(params)
    finally:
        mp.undo()
    return root


@pytest.mark.browser  # `reported` needs Chromium
def test_leaderboard_rows_carry_reference_cost_and_registry(reported):
    rows = {r["benchmark"]: r for r in csv.DictReader((reported / paths.LEADERBOARD_CSV).open())}
    run, missing = rows[KEY], rows["imdb_keras_mlp"]
    assert run["status"] == "run" and float(run["reference"]) == 0.97
    assert "Recognizing hand-written digits" in run["reference_source"]
    assert abs(float(run["vs_reference"]) - (float(run["test"]) - 0.97)) < 1e-12
    assert (run["trials"], run["failed"]) == ("4", "0") and int(run["epochs"]) == 2 * 2 + 2 * 3
    assert float(run["search_wall_s"]) > 0 and run["best_at_s"] != ""
    assert (run["registry_version"], run["aliases"]) == ("1", "challenger,champion"), run
    low, mean, high = (float(run[k]) for k in ("seeds_ci_low", "seeds_mean", "seeds_ci_high"))
    assert run["seeds_n"] == "3" and low < mean < high and run["serve"] == "ensemble"  # 3 seeds, 3 scores
    assert run["beats_reference"] == ("yes" if low > 0.97 else "no" if high < 0.97 else "inconclusive")
    assert float(run["test"]) == float(run["ensemble"])  # the served model is the seeds' average
    assert missing["status"] == "not run here" and "tunebench fetch --dataset imdb" in missing["fetch_hint"]
    tested = json.loads((reported / paths.TEST_METRICS).read_text())  # the DVC metric: one a benchmark run here
    assert list(tested) == [KEY] and math.isclose(tested[KEY], float(run["test"]), rel_tol=1e-12), tested
    md = (reported / paths.LEADERBOARD_MD).read_text()
    line = next(x for x in md.splitlines() if x.startswith(f"| {KEY} "))
    assert "| 0.97 [1] |" in line and "| 4 (0, 0) |" in line and "v1 challenger,champion | champion |" in line, line
    assert f"| {mean:.4f} [{low:.4f}, {high:.4f}] (3 seeds) |" in line and f"| {run['beats_reference']} |" in line
    assert "1. scikit-learn example 'Recognizing hand-written digits'" in md
    assert "* imdb_keras_mlp (not run here; reference 0.884-0.885): data download needed" in md


@pytest.mark.browser
def test_report_page_renders_offline_in_chromium(reported):
    page_file = reported / paths.REPORT_HTML
    html = page_file.read_text()
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    with offline_page(page_file.as_uri()) as visit:
        page = visit.page
        statuses = page.eval_on_selector_all("#leaderboard tbody tr", "rs => rs.map(r => r.dataset.status)")
        cells = page.eval_on_selector_all(f'tr[data-benchmark="{KEY}"] td', "cs => cs.map(c => c.innerText)")
        figs = page.eval_on_selector_all(
            f"#{KEY} svg",
            "ss => ss.map(s => [s.getAttribute('class'), s.getBoundingClientRect().width,"
            " s.getBoundingClientRect().height, s.querySelectorAll('circle, rect, polygon, polyline').length])",
        )
        page.screenshot(path=str(reported / "report.png"), full_page=True)
    assert visit.outside == [] and visit.errors == [], (visit.outside, visit.errors)
    assert statuses == ["run", "not run here"]
    assert cells[0] == KEY and "0.97" in cells and "v1 challenger,champion" in cells, cells
    kinds = [f[0] for f in figs]
    assert kinds == ["chart history", "chart narrowing", "chart scatter", "chart seeds", "chart curve",
                     "chart curve"], figs  # fmt: skip
    assert all(w > 300 and h > 200 for _, w, h, _ in figs), figs
    history, narrowing = figs[0][3], figs[1][3]
    assert history >= 1 + 4 and narrowing >= 1 + 2 + 4, figs  # frame + trials; frame + 2 round bands + trials


def test_data_from_the_package_index_is_not_called_out_of_reach(tmp_path, monkeypatch):
    """rt_polarity comes from a wheel that `tunebench fetch` downloads like pip: before it is fetched its
    benchmark is "not evaluated yet" (run `dvc repro`), not "not run here" with a hint to copy files."""
    monkeypatch.chdir(tmp_path)
    params = load_params(ROOT / "params.yaml")
    where, hint = report_sources.availability(params, "rt_polarity")
    assert hint is None, where
    row = next(r for r in report.collect(params) if r["benchmark"] == "rt_polarity_keras_mlp")
    assert row["status"] == "not evaluated yet" and row["fetch_hint"] is None
