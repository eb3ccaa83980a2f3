"""Test helpers for `pipeline.datasets`: a loopback HTTP file server and real-data file builders.

Text corpora come from the dataset descriptions scikit-learn ships (`sklearn/datasets/descr/*.rst`),
tokenised and encoded the Keras way (word ranks by training-set frequency, most frequent = 1).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import re
import socket
import tarfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import yaml

from pipeline.datasets import DatasetSpec

HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body>Quota exceeded</body></html>\n"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Route:
    """One served file and how the server misbehaves with it."""

    data: bytes
    mode: str = "ok"  # ok | truncate | drop-once | stall | slow | hangup | html | sniff-html | status-<code>
    hits: int = 0


@dataclass
class FileServer:
    """A threaded HTTP server on 127.0.0.1 serving in-memory files, with Range support."""

    routes: dict[str, Route] = field(default_factory=dict)
    log: list[tuple[str, str | None]] = field(default_factory=list)
    httpd: ThreadingHTTPServer | None = None

    def add(self, name: str, data: bytes, mode: str = "ok") -> str:
        """Serve `data` at `/name` and return its URL."""
        self.routes["/" + name] = Route(data, mode)
        return self.url(name)

    def url(self, name: str) -> str:
        """The URL of `/name` on this server."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def requests(self, name: str) -> list[str | None]:
        """The Range header (or None) of every request made for `/name`."""
        return [rng for path, rng in self.log if path == "/" + name]


def _handler(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):  # noqa: N802 - http.server API
            route = server.routes.get(self.path)
            server.log.append((self.path, self.headers.get("Range")))
            if route is None:
                self.send_error(404, "Not Found")
                return
            route.hits += 1
            data, mode = route.data, route.mode
            if mode == "hangup":  # close the connection without answering
                self.close_connection = True
                return
            if mode.startswith("status-"):
                self.send_error(int(mode.split("-")[1]))
                return
            if mode in ("html", "sniff-html"):
                ctype = "text/html; charset=utf-8" if mode == "html" else "application/octet-stream"
                self._send(200, HTML_PAGE, {"Content-Type": ctype, "Content-Length": str(len(HTML_PAGE))})
                return
            start = 0
            rng = self.headers.get("Range")
            if rng and mode != "truncate":
                start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            body = data[start:]
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
            status = 200
            if start:
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            if mode == "slow":  # the first half, then the rest after 30 s
                self._send(status, body[: len(body) // 2], headers, close=False)
                time.sleep(30)
                try:
                    self.wfile.write(body[len(body) // 2 :])
                except OSError:  # the client went away meanwhile
                    pass
                return
            if mode == "stall":  # headers, then silence: the client's timeout must fire
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.flush()
                time.sleep(1.5)
                return
            if mode == "truncate" or (mode == "drop-once" and route.hits == 1):
                body = body[: len(body) // 2]  # announce everything, send half, hang up
            self._send(status, body, headers)

        def _send(self, status: int, body: bytes, headers: dict[str, str], close: bool = True) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = close

    return Handler


def start_server() -> FileServer:
    """Start a `FileServer` in a daemon thread (call `stop_server` when done)."""
    server = FileServer()
    server.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.httpd.daemon_threads = True
    threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def stop_server(server: FileServer) -> None:
    """Shut the server down and free its port."""
    server.httpd.shutdown()
    server.httpd.server_close()


def dead_url(name: str = "file.bin") -> str:
    """A URL on a loopback port where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def with_files(spec: DatasetSpec, *files, folders=None) -> DatasetSpec:
    """A copy of a built-in spec whose first file set has other files (and folders); its other file sets stay."""
    fs = spec.filesets[0]
    fs = replace(fs, files=tuple(files), folders=fs.folders if folders is None else tuple(folders))
    return replace(spec, filesets=(fs, *spec.filesets[1:]))


# ---------------------------------------------------------------- real text, Keras encoding


def descr_corpus(min_words: int = 6) -> tuple[list[str], list[int]]:
    """Paragraphs of scikit-learn's dataset descriptions, labelled by the file they come from."""
    import sklearn.datasets  # noqa: PLC0415 - test helper

    folder = Path(sklearn.datasets.__file__).parent / "descr"
    docs, labels = [], []
    for k, path in enumerate(sorted(folder.glob("*.rst"))):
        for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            words = re.findall(r"[a-z][a-z']*", para.lower())
            if len(words) >= min_words:
                docs.append(" ".join(words))
                labels.append(k)
    return docs, labels


def word_index_of(docs: list[str]) -> dict[str, int]:
    """Keras-style word index: rank by frequency in `docs`, most frequent word = 1."""
    counts = Counter(w for d in docs for w in d.split())
    return {w: i + 1 for i, w in enumerate(sorted(counts, key=lambda w: (-counts[w], w)))}


def encode(docs: list[str], index: dict[str, int]) -> np.ndarray:
    """Object array of word-rank lists (unknown words skipped, as in Keras's files)."""
    out = np.empty(len(docs), dtype=object)
    for i, d in enumerate(docs):
        out[i] = [index[w] for w in d.split() if w in index]
    return out


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """An .npz archive in memory (object arrays pickled, as Keras's files are)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def imdb_like(docs: list[str], labels: list[int], n_test: int) -> tuple[bytes, bytes, dict[str, int]]:
    """Keras IMDB layout: (npz bytes with x_train/y_train/x_test/y_test, word-index JSON bytes, index)."""
    import json  # noqa: PLC0415

    train, test = docs[:-n_test], docs[-n_test:]
    index = word_index_of(train)
    y = np.asarray(labels, dtype=np.int64)
    data = npz_bytes(x_train=encode(train, index), y_train=y[:-n_test], x_test=encode(test, index), y_test=y[-n_test:])
    return data, json.dumps(index).encode(), index


def reuters_like(docs: list[str], labels: list[int]) -> tuple[bytes, bytes, dict[str, int]]:
    """Keras Reuters layout: (npz bytes with x/y, word-index JSON bytes, index)."""
    import json  # noqa: PLC0415

    index = word_index_of(docs)
    data = npz_bytes(x=encode(docs, index), y=np.asarray(labels, dtype=np.int64))
    return data, json.dumps(index).encode(), index


# ---------------------------------------------------------------- IDX and CIFAR files


def idx_bytes(arr: np.ndarray) -> bytes:
    """Raw IDX bytes of a uint8 array (MNIST layout)."""
    head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return head + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def gz(data: bytes, *, level: int = 9, mtime: int = 0) -> bytes:
    """Gzip `data` (different levels / mtimes give different bytes, same content)."""
    return gzip.compress(data, compresslevel=level, mtime=mtime)


def cifar_tar(batches: dict[str, tuple[np.ndarray, list[int]]], extra: dict[str, bytes] | None = None) -> bytes:
    """A `cifar-10-python.tar.gz` in memory: protocol-2 pickled dicts with bytes keys, as the real one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        members = {
            name: pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                b"filenames": [b"x.png"] * len(labels)}, protocol=2)
            for name, (data, labels) in batches.items()
        }  # fmt: skip
        members.update(extra or {})
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


class Evil:
    """Pickles to a call of `builtins.print`: a stand-in for a code-execution gadget."""

    def __reduce__(self):
        return (print, ("this must never run",))


# -- params.yaml of one custom dataset (fetch errors, crash safety) -------------------------------------------
def write_params(dest: Path, source: dict | str, dataset: str = "mine") -> Path:
    """A minimal params.yaml with one dataset (`source`: a custom declaration or `builtin`) and one benchmark."""
    dest.mkdir(parents=True, exist_ok=True)
    params = {
        "tracking": {"uri": "sqlite:///mlflow.db"},
        "datasets": {dataset: {"source": source, "preprocess": {"kind": "standardize", "max_rows": 300}}},
        "benchmarks": {f"{dataset}_linear": {
            "dataset": dataset, "model": "linear", "space": {"l2": {"low": 1.0e-3, "high": 1.0, "log": True}},
            "rounds": [{"name": "a", "n_trials": 1, "epochs": 1, "pruner": "none"}]}},
    }  # fmt: skip
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def custom(url: str, data: bytes, **kw) -> dict:
    """A custom `keras-npz` source declaration for `data` served at `url` (extra keys: `kw`)."""
    return {"url": url, "sha256": sha256(data), "format": "keras-npz", "task": "multiclass", **kw}


# -- a custom CSV dataset and one linear benchmark on it (data identity, registry names, promotion, selection) --
CSV_BENCH = "mine_linear"


def csv_bytes(rows: np.ndarray, labels: np.ndarray) -> bytes:
    """A CSV file of feature columns `f0`... and the label column `y`."""
    head = ",".join(f"f{i}" for i in range(rows.shape[1])) + ",y\n"
    return (head + "".join(",".join(f"{v:.6g}" for v in r) + f",{int(t)}\n" for r, t in zip(rows, labels))).encode()


def csv_project(dest: Path, csv_name: str, data: bytes, **preprocess) -> None:
    """Write `data` as `dest/csv_name` and a params.yaml declaring it (`mine`, binary, standardized) with
    benchmark `mine_linear` (one 3-trial round over `l2`; `preprocess` adds preprocessing settings)."""
    params = {
        "tracking": {"uri": "sqlite:///mlflow.db", "log_models": False},
        "search": {"sampler": "random", "seed": 0, "workers": 1},
        "datasets": {"mine": {
            "source": {"path": csv_name, "sha256": sha256(data), "format": "csv", "task": "binary", "target": "y"},
            "preprocess": {"kind": "standardize", "val_fraction": 0.25, "test_fraction": 0.25, **preprocess}}},
        "benchmarks": {CSV_BENCH: {
            "dataset": "mine", "model": "linear", "space": {"l2": {"low": 1.0e-3, "high": 10.0, "log": True}},
            "rounds": [{"name": "a", "n_trials": 3, "epochs": 1, "pruner": "none"}]}},
    }  # fmt: skip
    (dest / csv_name).write_bytes(data)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
