"""`optuna-dashboard studies/<b>/optuna.journal` shows the search's studies with their objective named.

A tiny real search (scikit-learn's digits through PCA and diabetes with 2 folds, the NumPy MLP,
2 trials of 1-2 epochs each) writes the journal files; the stock `optuna-dashboard` is started on
one journal file path, its JSON API is read, and the page is rendered in headless Chromium.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import datetime
from pathlib import Path

import optuna
import pytest
import yaml

from browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from conftest import missing

from pipeline import paths, stages
from pipeline.config import load_params
from pipeline.search.rounds import run_search
from pipeline.servers import free_port, stop_group, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")
ROUND = [{"name": "coarse", "n_trials": 2, "epochs": 2, "pruner": "none"}]
PARAMS = {
    "tracking": {"uri": "sqlite:///mlflow.db", "log_models": False},
    "search": {"sampler": "random", "seed": 0, "workers": 1, "storage": None},
    "promote": {"min_improvement": 0.0},
    "datasets": {
        "digits": {"source": "builtin", "preprocess": {"kind": "pca", "n_components": 16, "val_fraction": 0.25,
                                                       "test_fraction": 0.2, "seed": 42, "max_rows": 400}},
        "diabetes": {"source": "builtin", "preprocess": {"kind": "standardize", "kfold": 2, "test_fraction": 0.2,
                                                         "seed": 42}},
    },
    "benchmarks": {
        "digits_numpy_mlp": {"dataset": "digits", "model": "numpy_mlp", "hparams": {"units": [16], "batch_size": 64},
                             "space": {"lr": {"low": 1.0e-3, "high": 1.0e-1, "log": True}}, "rounds": ROUND},
        "diabetes_numpy_mlp": {"dataset": "diabetes", "model": "numpy_mlp",
                               "hparams": {"units": [16], "batch_size": 32},
                               "space": {"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}}, "rounds": ROUND},
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """A project folder after the search of both benchmarks (journal files under studies/)."""
    root = tmp_path_factory.mktemp("dashboard")
    mp = pytest.MonkeyPatch()
    try:
        for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE"):
            mp.delenv(var, raising=False)
        mp.chdir(root)
        (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
        params = load_params(root / "params.yaml")
        for ds in params.datasets:
            stages.fetch(params, ds)
            stages.preprocess(params, ds)
        for key in params.benchmarks:
            run_search(params, key)
    finally:
        mp.undo()
    return root


def _study(root: Path, key: str) -> optuna.Study:
    storage = _journal(root / paths.journal_file(key))
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _journal(path: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def test_objective_named_by_task_metric_and_times_iso(searched):
    for key, metric in (("digits_numpy_mlp", "best_val_accuracy"), ("diabetes_numpy_mlp", "best_val_mae")):
        study = _study(searched, key)
        assert study.metric_names == [metric]
        assert f"value_{metric}" in study.trials_dataframe().columns  # `value` is labelled by its name
        worker_times = [t.user_attrs["worker"]["started"] for t in study.trials] + [
            study.user_attrs["created_by"]["started"]]  # fmt: skip
        for started in worker_times:
            assert isinstance(started, str) and datetime.fromisoformat(started).tzinfo is not None, started


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_optuna_dashboard_serves_a_journal_file(searched):
    if not DASHBOARD.exists():
        missing(f"{DASHBOARD} not installed (pip install optuna-dashboard; part of the `test` extra)")
    key = "digits_numpy_mlp"
    port = free_port()
    log = open(searched / "dashboard.log", "wb")  # noqa: SIM115 - closed below
    # the command the README shows, run in the project folder
    proc = subprocess.Popen([str(DASHBOARD), f"studies/{key}/optuna.journal", "--port", str(port)], cwd=searched,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(lambda: _get_json(f"{base}/api/studies"), timeout=60, what="optuna-dashboard",
                     alive=lambda: proc.poll() is None)  # fmt: skip
        except RuntimeError as exc:
            pytest.fail(f"{exc}; its log:\n{(searched / 'dashboard.log').read_text(errors='replace')[-3000:]}")
        (listed,) = _get_json(f"{base}/api/studies")["study_summaries"]
        assert listed["study_name"] == _study(searched, key).study_name
        detail = _get_json(f"{base}/api/studies/{listed['study_id']}")
        assert detail["objective_names"] == ["best_val_accuracy"]
        assert len(detail["trials"]) == 2 and all(t["state"] == "Complete" for t in detail["trials"])
        require_chromium()
        _render(f"{base}/dashboard/studies/{listed['study_id']}", searched / "dashboard.png")
    finally:
        stop_group(proc)
        log.close()


def _render(url: str, shot: Path) -> None:
    """The study page in headless Chromium names the objective (the page draws it from the API above)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url, wait_until="domcontentloaded")
            expect(page.get_by_text("best_val_accuracy").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
