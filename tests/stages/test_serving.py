"""Champions served over REST by the real `mlflow models serve` answer like the model in process.

The classification champion (rt_polarity) answers a `label` with its `probability`; the regression
champion (Boston) takes the dataset's own column names (`CRIM` ... `LSTAT`) by name, in any order.
Both request forms docs/tracking.md shows (`dataframe_split`, `instances`) are sent, and the docs'
own `curl` bodies are posted as written: each gets an answer of the shape the docs show.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tracking.md"
BOSTON = ["CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT"]


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


class Served:
    """`mlflow models serve` of one registered model in the project folder; `ask` posts a JSON body."""

    def __init__(self, dest, env, model_uri, log_path):
        self.port = _free_port()
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(self.port), "-w", "1"],
            cwd=dest, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def __enter__(self):
        try:
            _wait_http(f"http://127.0.0.1:{self.port}/ping", self.proc)
        except Exception:
            self.__exit__()
            raise
        return self

    def ask(self, body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _doc_requests(port: int) -> list[tuple[dict, dict | None]]:
    """The JSON bodies docs/tracking.md posts to `127.0.0.1:<port>/invocations`, each with the answer the docs
    show after it (`# {...}`), if any."""
    import re

    text = DOCS.read_text()
    found = re.findall(rf"127\.0\.0\.1:{port}/invocations \\\n\s+-d '(.*?)'\n(?:# (\{{.*?\}})(?:\s|$))?", text, re.S)
    assert found, f"no request to port {port} in {DOCS}"
    return [(json.loads(body), json.loads(answer) if answer else None) for body, answer in found]


def _assert_like(got: dict, shown: dict | None) -> None:
    """`got` has the shape of the answer the docs show: as many predictions, the same keys, the same types."""
    if shown is None:
        return
    assert len(got["predictions"]) == len(shown["predictions"]), (got, shown)
    for a, b in zip(got["predictions"], shown["predictions"], strict=True):
        assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, (a, b)
        if isinstance(b, dict):
            assert set(a) == set(b), (a, b)


def _setup(project, dataset, monkeypatch):
    import mlflow

    from pipeline.serving import example_frame

    dest, state = project
    monkeypatch.chdir(dest)  # artifact locations are relative to the project folder
    uri = f"sqlite:///{dest / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    meta = json.loads((dest / f"data/processed/{dataset}/raw_meta.json").read_text())
    env = {**state["env"], "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    return dest, env, meta, example_frame(meta)


@pytest.mark.slow
@pytest.mark.dvc
def test_classification_champion_answers_label_and_probability(project, tmp_path, monkeypatch):
    import mlflow.pyfunc

    dest, env, meta, frame = _setup(project, "rt_polarity", monkeypatch)
    model_uri = "models:/rt_polarity-keras_mlp@champion"
    expected = mlflow.pyfunc.load_model(model_uri).predict(frame)
    assert list(expected.columns) == ["label", "probability"]
    assert set(expected["label"]) <= {"rotten", "fresh"} and expected["probability"].between(0.5, 1.0).all()

    with Served(dest, env, model_uri, tmp_path / "serve.log") as server:
        split = server.ask({"dataframe_split": frame.to_dict(orient="split")})
        instances = server.ask({"instances": [{"text": t} for t in frame["text"]]})
        for body, shown in _doc_requests(5001):  # the docs' requests, as written
            status, answer = server.ask(body)
            assert status == 200, (body, answer)
            _assert_like(answer, shown)
            assert {p["label"] for p in answer["predictions"]} <= {"rotten", "fresh"}
    for status, answer in (split, instances):
        assert status == 200, answer
        got = pd.DataFrame(answer["predictions"])
        assert list(got["label"]) == list(expected["label"])
        np.testing.assert_allclose(got["probability"], expected["probability"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.dvc
def test_multiclass_champion_labels_are_class_names(project, monkeypatch):
    import mlflow.pyfunc

    _, _, meta, frame = _setup(project, "digits", monkeypatch)
    assert meta["columns"][:2] == ["pixel_0_0", "pixel_0_1"] and meta["labels"] == [str(i) for i in range(10)]
    got = mlflow.pyfunc.load_model("models:/digits-keras_mlp@champion").predict(frame)
    assert set(got["label"]) <= set(meta["labels"]) and got["probability"].between(0.1, 1.0).all()


@pytest.mark.slow
@pytest.mark.dvc
def test_regression_champion_takes_the_datasets_column_names(project, tmp_path, monkeypatch):
    import mlflow.pyfunc

    dest, env, meta, frame = _setup(project, "boston_housing", monkeypatch)
    assert meta["columns"] == BOSTON and list(frame.columns) == BOSTON
    model_uri = "models:/boston_housing-keras_mlp@champion"
    expected = np.asarray(mlflow.pyfunc.load_model(model_uri).predict(frame), dtype=float).reshape(-1)

    shuffled = frame[BOSTON[::-1]]  # columns are matched by name, not position
    with Served(dest, env, model_uri, tmp_path / "serve.log") as server:
        split = server.ask({"dataframe_split": shuffled.to_dict(orient="split")})
        instances = server.ask({"instances": frame.to_dict(orient="records")})
        positional = server.ask({"dataframe_split": {"columns": [f"x{i}" for i in range(13)],
                                                     "data": frame.to_numpy().tolist()}})  # fmt: skip
        for body, shown in _doc_requests(5002):  # the docs' request, as written: a price in thousands of dollars
            status, answer = server.ask(body)
            assert status == 200, (body, answer)
            _assert_like(answer, shown)
            assert 5 < answer["predictions"][0] < 60, answer
    for status, answer in (split, instances):
        assert status == 200, answer
        got = np.asarray(answer["predictions"], dtype=float).reshape(-1)
        assert got.shape == expected.shape == (len(meta["rows"]),)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert positional[0] == 400 and "CRIM" in positional[1]["message"], positional


def test_frames_in_and_answers_out():
    """Columns are matched by name (missing ones named); classes come back as a label and its probability."""
    from pipeline.serving import example_frame, to_answer, to_raw

    meta = {"kind": "tabular", "task": "regression", "shape": [3], "columns": ["a", "b", "c"], "rows": [[1, 2, 3]]}
    assert list(example_frame(meta).columns) == ["a", "b", "c"]
    frame = pd.DataFrame({"c": [3.0], "a": [1.0], "b": [2.0]})
    np.testing.assert_array_equal(to_raw(frame, meta), [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"missing feature column\(s\) \['b'\]"):
        to_raw(frame.drop(columns="b"), meta)
    old = {"kind": "tabular", "shape": [3], "rows": [[1, 2, 3]]}  # saved before names and tasks were recorded
    assert list(example_frame(old).columns) == ["x0", "x1", "x2"]
    np.testing.assert_array_equal(to_raw(example_frame(old), old), [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(to_answer(np.array([0.25]), old), [0.25])

    binary = to_answer(np.array([0.2, 0.9]), {"task": "binary", "labels": ["rotten", "fresh"]})
    assert list(binary["label"]) == ["rotten", "fresh"]
    np.testing.assert_allclose(binary["probability"], [0.8, 0.9])
    multi = to_answer(np.array([[0.1, 0.7, 0.2]]), {"task": "multiclass", "labels": None})
    assert multi.to_dict("records") == [{"label": 1, "probability": 0.7}]


def _small_model(dest, raw, cfg):
    """Preprocess `raw`, fit the linear family, save the pyfunc model at `dest` (seconds, no Keras)."""
    from pipeline.features import preprocess
    from pipeline.models import get_family
    from pipeline.serving import raw_example, save_pyfunc

    data = preprocess(raw, cfg)
    model = get_family("linear").train({}, data.X_train, data.y_train, data.X_val, data.y_val, task=raw.task,
                                       n_classes=data.n_classes, epochs=1)  # fmt: skip
    save_pyfunc(dest, model=model, transformer=data.transformer, meta=raw_example(raw))
    return str(dest)


@pytest.mark.slow  # trains and serves two models: over 10 s
def test_bad_input_gets_a_400_with_one_line_naming_the_column(tmp_path):
    """NaN, null, Infinity, a value beyond float32, no rows, a non-text or empty text: 400 with one short line,
    never the server's stack trace nor a prediction made from 'None' or '42'."""
    import os

    from sklearn.datasets import load_diabetes
    from fixtures_datasets import descr_corpus

    from pipeline.datasets import RawData

    d = load_diabetes()
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    tab = _small_model(tmp_path / "tab", RawData("diab", "regression", "tabular", d.data, d.target,
                                                 meta={"feature_names": names}), {"kind": "standardize"})  # fmt: skip
    docs, labels = descr_corpus()
    txt = _small_model(tmp_path / "txt", RawData("descr", "binary", "text", docs, np.asarray(labels) % 2, n_classes=2),
                       {"kind": "multi_hot", "num_words": 500})  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    row = dict(zip(names, d.data[0], strict=True))
    nan = "input: feature column 0 ('age') has 1 row(s) with NaN, inf or a value beyond float32's range (first at row 0"
    tab_cases = [
        ({"dataframe_records": [{**row, "age": float("nan")}]}, nan),
        ({"dataframe_records": [{**row, "age": None}]}, nan),
        ({"instances": [{**row, "age": float("inf")}]}, nan),
        ({"dataframe_split": {"columns": names, "data": [[1e308, *d.data[0][1:]]]}}, nan),
        ({"dataframe_split": {"columns": names, "data": []}}, "no input rows: send at least one"),
    ]
    txt_cases = [
        ({"instances": [{"text": 42}]}, "column 'text', row 0: int 42 is not a text; send a non-empty string"),
        ({"instances": [{"text": "fine"}, {"text": None}]}, "column 'text', row 1: null (missing) is not a text"),
        ({"dataframe_split": {"columns": ["text"], "data": [[float("nan")]]}}, "column 'text', row 0: null (missing)"),
        ({"dataframe_records": [{"text": " "}]}, "column 'text', row 0: empty text; send a non-empty string"),
        ({"dataframe_split": {"columns": ["text"], "data": []}}, "no input rows: send at least one"),
    ]
    for model_uri, cases, good in ((tab, tab_cases, {"dataframe_records": [row]}),
                                   (txt, txt_cases, {"instances": [{"text": docs[0]}]})):  # fmt: skip
        with Served(tmp_path, env, model_uri, tmp_path / "serve.log") as server:
            assert server.ask(good)[0] == 200
            for body, message in cases:
                status, answer = server.ask(body)
                assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE", (body, answer)
                assert answer["message"].startswith(message) and "\n" not in answer["message"], (body, answer)
                assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer), (body, answer)
