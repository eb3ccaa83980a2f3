"""The champion served over REST by `mlflow models serve` predicts like the model in process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {seconds} s")


def test_rest_predictions_equal_in_process(project, tmp_path, monkeypatch):
    import mlflow.pyfunc

    from pipeline.serving import example_frame

    dest, state = project
    monkeypatch.chdir(dest)  # artifact locations are relative to the project folder
    uri = f"sqlite:///{dest / 'mlflow.db'}"
    model_uri = "models:/rt_polarity-keras_mlp@champion"
    meta = json.loads((dest / "data/processed/rt_polarity/raw_meta.json").read_text())
    frame = example_frame(meta)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    expected = np.asarray(mlflow.pyfunc.load_model(model_uri).predict(frame), dtype=float).reshape(-1)

    port = _free_port()
    env = {**state["env"], "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        cwd=dest, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{port}/ping", proc)
        body = json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=60) as resp:
            got = np.asarray(json.loads(resp.read())["predictions"], dtype=float).reshape(-1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert got.shape == expected.shape == (len(meta["rows"]),)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert os.path.getsize(tmp_path / "serve.log") > 0
