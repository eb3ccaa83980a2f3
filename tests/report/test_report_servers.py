"""The report against shared servers: a throwaway PostgreSQL (Optuna storage, a role with a password)
and an `mlflow server` with proxied artifacts (`pipeline/servers.py`). A tiny real search (digits, the
NumPy network, 2 rounds of 2 trials) runs in process through fetch, preprocess, search, train_best,
evaluate, promote and report with `tracking.uri` = the server and `TUNEBENCH_STORAGE` = the
PostgreSQL URL with its password (params.yaml refuses one). The report's rows must take their
trials (through the search stage's trials table), failures, registry version, aliases and learning
curves from those servers, write nothing to local stores, never show the password, and need no
database once the search is done."""

from __future__ import annotations

import csv
import time

import pytest
import yaml

from conftest import digits_search_params, postgres_and_mlflow
from pipeline import paths, report, stages
from pipeline.config import load_params

pytestmark = [pytest.mark.slow, pytest.mark.servers]

KEY = "digits_numpy_mlp"
BUDGETS, EPOCHS = (2, 2), (1, 2)  # trials and epochs of round 1 (coarse) and round 2 (fine)


@pytest.fixture(scope="module")
def servers():
    """PostgreSQL (role with a password) and an MLflow tracking server, stopped after the module."""
    with postgres_and_mlflow() as both:
        yield both


@pytest.fixture(scope="module")
def reported(servers, tmp_path_factory):
    """A project folder whose tiny search ran on the servers, promoted and reported; its params."""
    pg, ml = servers
    root = tmp_path_factory.mktemp("report_servers")
    rounds = [{"name": "coarse", "n_trials": BUDGETS[0], "epochs": EPOCHS[0], "pruner": "none"},
              {"name": "fine", "n_trials": BUDGETS[1], "epochs": EPOCHS[1], "pruner": "none",
               "top_quantile": 0.5}]  # fmt: skip
    data = digits_search_params(seed=3, hparams={}, lr=(1e-3, 1e-1), rounds=rounds)
    bench = data["benchmarks"].pop("digits_keras_mlp")
    data["benchmarks"][KEY] = {**bench, "model": "numpy_mlp", "hparams": {"units": [32], "batch_size": 50}}
    data["tracking"]["uri"] = ml.uri
    data["search"]["storage"] = None  # params.yaml refuses a password: TUNEBENCH_STORAGE carries it
    mp = pytest.MonkeyPatch()
    try:
        for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE"):
            mp.setenv(var, "")  # recorded, so undo removes what MLflow's set_tracking_uri exports
            mp.delenv(var)
        mp.setenv("TUNEBENCH_STORAGE", pg.url)  # plain postgresql://tunebench:<password>@127.0.0.1:<port>/tunebench
        mp.chdir(root)
        (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        params = load_params(root / "params.yaml")
        assert (params.tracking_uri(), params.storage_url()) == (ml.uri, pg.url)
        stages.fetch(params, "digits")
        stages.preprocess(params, "digits")
        for step in (stages.search, stages.train_best, stages.evaluate, stages.promote):
            step(params, KEY)
        stages.report(params)
        yield root, params, report.collect(params, details=True)
    finally:
        mp.undo()


def _pg_trials(url: str) -> dict:
    """Every trial of the benchmark's round studies, read straight from PostgreSQL: {study name: trials}."""
    import optuna

    storage = optuna.storages.RDBStorage(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    names = sorted(n for n in optuna.get_all_study_names(storage) if n.startswith(f"{KEY}."))
    return {n: optuna.load_study(study_name=n, storage=storage).get_trials(deepcopy=False) for n in names}


def test_report_reads_trials_registry_and_curves_from_the_servers(reported, servers):
    from mlflow.tracking import MlflowClient

    pg, ml = servers
    root, params, rows = reported
    row = next(r for r in rows if r["benchmark"] == KEY)
    assert row["status"] == "run" and row["note"] is None, row.get("note")
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists(), "MLflow wrote locally"
    assert not list(root.glob("studies/**/*.journal")), "a journal file was written although storage is PostgreSQL"

    studies = _pg_trials(pg.url)  # the trials table is PostgreSQL's, round by round
    assert len(studies) == len(BUDGETS), studies.keys()
    table = row["trials_table"]
    assert len(table) == sum(BUDGETS) == row["trials"]
    assert [sum(t["round"] == k for t in table) for k in (1, 2)] == list(BUDGETS)
    by_round = {k: sorted(t.number for t in trials) for k, trials in enumerate(studies.values(), start=1)}
    assert {k: sorted(t["trial"] for t in table if t["round"] == k) for k in (1, 2)} == by_round
    assert row["failed"] == 0 == sum(t.state.name == "FAIL" for ts in studies.values() for t in ts)
    assert all(t["params"].get("lr") for t in table), table

    mlc = MlflowClient(tracking_uri=ml.uri)  # registry and curves are the server's
    rm = mlc.get_registered_model(row["registered_name"])
    assert {a: str(v) for a, v in rm.aliases.items()} == {"champion": "1", "challenger": "1"}
    assert (row["registry_version"], row["aliases"], row["champion_version"]) == ("1", "challenger,champion", "1")
    assert mlc.get_model_version(row["registered_name"], "1").run_id == row["run_id"]
    curves, best = row["curves"], row["best_trial_run_id"]
    assert best and {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(curves), curves
    history = [m.value for m in sorted(mlc.get_metric_history(best, "val_accuracy"), key=lambda m: m.step)]
    assert curves["val_accuracy"] == history and len(history) in EPOCHS


def test_report_files_written_without_the_database_password(reported, servers):
    pg, _ = servers
    root, _, _ = reported
    run = next(r for r in csv.DictReader((root / paths.LEADERBOARD_CSV).open()) if r["benchmark"] == KEY)
    assert (run["status"], run["trials"], run["failed"], run["registry_version"]) == ("run", "4", "0", "1")
    md = (root / paths.LEADERBOARD_MD).read_text()
    line = next(x for x in md.splitlines() if x.startswith(f"| {KEY} "))
    assert "| 4 (0, 0) |" in line and "v1 challenger,champion" in line and "Notes:" not in md, line
    html = (root / paths.REPORT_HTML).read_text()
    assert html.count('class="chart curve"') == 2 and 'class="chart history"' in html
    files = [p for p in (root / "reports").rglob("*") if p.is_file()]
    assert len(files) >= 3
    for p in files:
        assert pg.password not in p.read_text(errors="replace"), f"{p} carries the database password"


def test_report_needs_no_database_after_the_search(reported, servers):
    """PostgreSQL down at report time: the report reads the search stage's trials table
    (`results/search/<b>.trials.json`), not the Optuna storage, so every column is filled, at once,
    with the same trials as when the database was up (it used to note an outage and leave them empty)."""
    pg, _ = servers
    root, params, rows = reported
    before = next(r for r in rows if r["benchmark"] == KEY)
    pg.stop()
    try:
        t0 = time.monotonic()
        row = next(r for r in report.collect(params, details=True) if r["benchmark"] == KEY)
        waited = time.monotonic() - t0
    finally:
        pg.start()
    assert waited < 20, f"the report waited {waited:.0f} s"
    assert row["note"] is None and row["failed"] == 0 and row["registry_version"] == "1" and row["curves"]
    assert row["trials_table"] == before["trials_table"] and len(row["trials_table"]) == sum(BUDGETS)
    assert pg.password not in (root / paths.search_trials(KEY)).read_text()
