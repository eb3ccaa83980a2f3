"""`tunebench ui` serves the run tree of a real search, checked in a real headless browser.

A tiny real store (scikit-learn's digits through PCA, the Keras MLP, 2 rounds x 2 trials) is
built once; `python -m pipeline ui --port <free port>` is started in its folder (its output in
`ui.log` there), polled until it answers, and always stopped with its whole process group.
Debian's Chromium, driven by Playwright, opens the experiment's model-training runs table
(`#/experiments/<id>/runs?workflowType=machine_learning`: MLflow 3 otherwise opens the GenAI
view), adds metric columns, expands the round runs and checks the nested trials. The screenshot
goes to the test's folder and to `test-artifacts/mlflow_ui.png`; with
`TUNEBENCH_DOCS_SCREENSHOT=1` it also replaces `docs/mlflow_ui.png`, the README's picture.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from conftest import digits_search_params
import yaml

from pipeline import stages, tracking
from pipeline.config import load_params

pytestmark = [pytest.mark.slow, pytest.mark.servers, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120  # mlflow takes ~20-30 s to start on 2 busy cores
SECRET = "hunter2"
KEY = "digits_keras_mlp"
PARAMS = digits_search_params(
    seed=1,
    hparams={"units": 32, "depth": 1, "optimizer": "adam", "batch_size": 16},
    lr=(3.0e-3, 3.0e-2),
    rounds=[
        {"name": "coarse", "n_trials": 2, "epochs": 2, "pruner": "none"},
        {"name": "fine", "n_trials": 2, "epochs": 3, "pruner": "none", "top_quantile": 0.5},
    ],
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, dict]:
    """A project folder holding the store of one two-round search; returns it and the search result."""
    require_chromium()
    root = tmp_path_factory.mktemp("ui-store")
    mp = pytest.MonkeyPatch()
    try:
        for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE"):
            mp.delenv(var, raising=False)
        mp.chdir(root)
        (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
        params = load_params(root / "params.yaml")
        stages.fetch(params, "digits")
        stages.preprocess(params, "digits")
        result = stages.search(params, KEY)
    finally:
        mp.undo()
    return root, result


@pytest.fixture(scope="module")
def server(store):
    """`python -m pipeline ui` on a free port in the store's folder; yields its base URL; always stopped."""
    root, _ = store
    port = _free_port()
    log = open(root / "ui.log", "wb")  # noqa: SIM115 - closed by the finalizer below
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "ui", "--port", str(port)], cwd=root, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not up in {START_TIMEOUT} s"
                pytest.fail(f"MLflow UI {why}; its log:\n{(root / 'ui.log').read_text(errors='replace')[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group (the UI, its web worker): TERM, then KILL after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            time.sleep(0.5)  # let the group's other members go too
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def test_runs_view_shows_rounds_with_nested_trials_and_metric_columns(server, store, tmp_path):
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415

    expect.set_options(timeout=30_000)

    root, result = store
    exp = tracking.client(f"sqlite:///{root / 'mlflow.db'}").get_experiment_by_name("digits-keras_mlp")
    log = (root / "ui.log").read_text()  # the experiment's link as `tunebench ui` printed it
    printed = re.search(r"^  digits-keras_mlp +(http://\S+)$", log, re.M)
    assert printed, log[:1000]
    url = printed[1]
    assert url == f"{server}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    rounds = [f"{r['round']} · r{k}" for k, r in enumerate(result["rounds"], start=1)]  # `coarse · r1`
    shot = tmp_path / "mlflow_ui.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 560})
            page.set_default_timeout(60_000)
            page.goto(url, wait_until="domcontentloaded")
            for name in rounds:
                expect(page.get_by_role("link", name=name)).to_be_visible()
            close = page.get_by_role("button", name="Close")  # the assistant panel of a first visit
            if close.count():
                close.first.click()
            expect(page.get_by_text("digits-keras_mlp", exact=True).first).to_be_visible()
            expect(page.get_by_role("button", name="Model training")).to_be_visible()

            page.get_by_role("button", name="Columns").click()
            for column in ("Dataset", "Source", "Models", "best_value", "n_complete", "val_accuracy", "val_loss", "lr",
                           "state"):  # fmt: skip
                page.get_by_title(column, exact=True).first.click()
            page.keyboard.press("Escape")
            for metric in ("val_accuracy", "val_loss", "best_value"):
                expect(page.locator(f'[role=columnheader][col-id="metrics.`{metric}`"]')).to_be_visible()

            expanders = page.locator('[role=gridcell][col-id="attributes.`Run Name`"] button')
            expect(expanders).to_have_count(len(rounds))
            for i in range(len(rounds)):
                expanders.nth(i).click()
            trials = page.get_by_role("link", name=re.compile(r"^t\d\d lr=\S+ l2=\S+$"))  # `t01 lr=3.2e-3 l2=1e-5`
            expect(trials).to_have_count(sum(r["n_trials"] for r in PARAMS["benchmarks"][KEY]["rounds"]))
            for link in trials.all():  # AG Grid splits a row: pinned cells and scrolled cells share its row-id
                row_id = link.evaluate("e => e.closest('[role=row]').getAttribute('row-id')")
                cells = page.locator(f'[role=row][row-id="{row_id}"]')
                expect(cells.locator('[col-id="tags.`state`"]')).to_have_text("COMPLETE")
                value = cells.locator('[col-id="metrics.`val_accuracy`"]').inner_text()
                assert 0.0 < float(value) <= 1.0, value
                assert float(cells.locator('[col-id="params.`lr`"]').inner_text()) > 0
            page.mouse.click(800, 500)  # an empty spot: moves the focus outline off the table
            page.mouse.move(0, 0)
            page.screenshot(path=str(shot))

            best = result["rounds"][-1]["best"]  # a trial's page: its dataset input and its logged model
            model = f"fine-r2-t{best['trial']:02d}"
            base = f"{server}/#/experiments/{exp.experiment_id}"
            page.goto(f"{base}/runs/{best['run_id']}", wait_until="domcontentloaded")
            expect(page.get_by_text(model, exact=True).first).to_be_visible()
            expect(page.get_by_text(re.compile(r"^digits")).first).to_be_visible()
            page.goto(f"{base}/models", wait_until="domcontentloaded")
            for name in ("coarse-r1-t00", model):  # the Models tab lists the trials' logged models
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
        finally:
            browser.close()

    assert shot.stat().st_size > 20_000
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    shutil.copy2(shot, out / "mlflow_ui.png")
    if os.environ.get("TUNEBENCH_DOCS_SCREENSHOT") == "1":
        shutil.copy2(shot, ROOT / "docs" / "mlflow_ui.png")


def test_server_uri_credentials_stay_out_of_output_params_and_tags(server, monkeypatch, capfd):
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
        monkeypatch.setenv(var, "placeholder")  # restored after the test, whatever `client` sets
    previous = mlflow.get_tracking_uri()
    uri = server.replace("http://", f"http://bob:{SECRET}@")
    try:
        mlc = tracking.client(uri)
        monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")  # let MLflow print its run links
        exp = tracking.ensure_experiment(mlc, "credentials/check")
        run_id = tracking.start_run(mlc, exp, "with-credentials", tags={"tracking_uri": uri})
        tracking.log_params(mlc, run_id, {"tracking_uri": uri})
        mlc.set_terminated(run_id)
    finally:
        mlflow.set_tracking_uri(previous)
    out = capfd.readouterr()
    assert f"View run with-credentials at: {server}/#/experiments/{exp}/runs/{run_id}" in out.out
    run = tracking.client(server).get_run(run_id)
    mlflow.set_tracking_uri(previous)
    assert run.data.params["tracking_uri"] == run.data.tags["tracking_uri"] == server.replace("http://", "http://***@")
    assert SECRET not in out.out + out.err + repr(run.data.params) + repr(run.data.tags)
