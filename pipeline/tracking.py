"""MLflow tracking: one experiment per benchmark, a parent run per study round, a child run per trial.

A thin layer over `MlflowClient` (no fluent global state, so it is safe in
worker processes): runs are created with explicit ids, a trial's per-epoch
metrics (each with its step and time) reach the store in batches every few
seconds and when it ends, and every run ends with a status that fits how its
trial ended (FINISHED, KILLED for pruned, FAILED with the error).

Completed trials log their model as one folder that is both a
`TrainedModel.save` folder (`TrainedModel.load` reads it) and, for the Keras
families, an MLflow model of the Keras flavor with a signature and an input
example (`mlflow.keras.load_model` / `mlflow.pyfunc.load_model` read
`runs:/<run_id>/model`). What this costs per trial is measured by
`benchmarks/tracking_overhead.py`.

Credentials never reach MLflow's own output, our logs, params or tags:
`redact` hides them in every value we log or print, `client` moves the
user and password of an `http(s)://user:pw@host` URI into MLflow's
`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`, and `ui_command`
hands the store URI to `mlflow ui` through the environment, not the command line.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline import paths
from pipeline.redaction import redact, split_credentials  # noqa: F401 - part of this module's API

MAX_PARAM_LENGTH = 6000  # MLflow's limits on a param and a tag value
MAX_TAG_LENGTH = 8000
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}  # any other trial state ends its run FAILED
_BATCH = 900  # metrics per `log_batch` (MLflow takes at most 1000 entries, tags included)

_TEXT_SUFFIXES = {".csv", ".json", ".txt", ".md", ".yaml", ".yml", ".html", ".log"}


def client(uri: str) -> MlflowClient:
    """A client for `uri` (a local SQLite store by default, or a server URL); also MLflow's global URIs.

    For an `http(s)` URI with `user:password@`, the credentials go to MLflow's
    `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (inherited by worker processes) and the
    client gets the URI without them, so MLflow never prints them (it echoes a server URI in
    "View run ... at" lines, which are switched off here too: the progress bar reports trials).
    A relative SQLite URI is made absolute (`absolute_sqlite_uri`) and the store tuned
    (`_tune_sqlite`).
    """
    import mlflow  # noqa: PLC0415

    uri = absolute_sqlite_uri(uri)
    if uri.startswith(("http://", "https://")):
        uri, user, password = split_credentials(uri)
        if user is not None:
            os.environ["MLFLOW_TRACKING_USERNAME"] = user
        if password is not None:
            os.environ["MLFLOW_TRACKING_PASSWORD"] = password
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if uri.startswith("sqlite:"):
        _tune_sqlite(mlc)
    return mlc


_DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Fail fast, before any run or study is made, when the tracking store at `uri` cannot be used.

    `http(s)`: the server must answer a request (any HTTP status) within `timeout` seconds;
    `postgresql`/`mysql`/`mssql`: its host must accept a TCP connection within `timeout`;
    `sqlite` and local folders: the database file, or the nearest existing folder above it,
    must be writable. Other schemes (`databricks`, ...) are left to MLflow.

    Raises:
        TrackingError: naming the (redacted) URI, why, and what to do.
    """
    import socket  # noqa: PLC0415
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from pipeline.errors import TrackingError  # noqa: PLC0415

    where = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") == uri else "`tracking.uri` in params.yaml"
    parts = urlsplit(uri)
    scheme = parts.scheme.lower().partition("+")[0]
    try:
        if scheme in ("http", "https"):
            try:
                url = f"{split_credentials(uri)[0].rstrip('/')}/health"
                urllib.request.urlopen(url, timeout=timeout).close()  # noqa: S310 - http(s) only
            except urllib.error.HTTPError as exc:  # it answered, unless a proxy or gateway answered for it
                if exc.code in (502, 503, 504):
                    raise OSError(f"HTTP {exc.code} {exc.reason}") from None
            return
        if scheme in _DB_PORTS:
            address = (parts.hostname or "localhost", parts.port or _DB_PORTS[scheme])
            socket.create_connection(address, timeout=timeout).close()
            return
        path = _local_store_path(uri)
        if path is None:
            return
        folder = _unwritable(path)
        if folder is None:
            return
        reason = f"{folder} is not writable"
    except (OSError, ValueError) as exc:  # URLError, refused, timed out, no such host, a bad port
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        reason = f"{reason} (waited at most {timeout:.0f} s)"
    raise TrackingError(f"MLflow tracking store {redact(uri)} (from {where}) cannot be used: {redact(str(reason))}; "
                        f"start the server or point {where} at a reachable, writable store")  # fmt: skip


def _local_store_path(uri: str) -> Path | None:
    """The file or folder of a `sqlite:///` or local file store URI; None for in-memory or other stores."""
    if uri.startswith("sqlite:"):
        path = uri.removeprefix("sqlite:").removeprefix("//").partition("?")[0][1:]  # sqlite:///rel, sqlite:////abs
        return None if path in ("", ":memory:") else Path(path)
    if uri.startswith("file:"):
        return Path(url2pathname(urlsplit(uri).path))
    return Path(uri) if "://" not in uri else None


def _unwritable(path: Path) -> Path | None:
    """The file or folder that stops a store at `path` from being written (MLflow makes missing folders), or None."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    targets = [probe, probe.parent] if probe.is_file() else [probe]
    return next((t for t in targets if not os.access(t, os.W_OK)), None)


def absolute_sqlite_uri(uri: str) -> str:
    """`sqlite:///mlflow.db` -> `sqlite:////<working dir>/mlflow.db`; other URIs unchanged.

    MLflow caches one store per URI string for the life of the process, opened relative to the
    working directory of its first use: a process that works in several project folders (tests,
    notebooks) would otherwise write every project's runs into the first one's database.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    path, sep, query = uri[len(prefix) :].partition("?")
    if not path or path == ":memory:":
        return uri
    return f"{prefix}{Path(path).resolve()}{sep}{query}"


def _tune_sqlite(mlc: MlflowClient) -> None:
    """Make a SQLite store keep its rollback journal file between commits (`journal_mode=PERSIST`).

    By default SQLite creates and deletes `<db>-journal` at every commit; on disks where a delete
    is slow (ext4 mounted with `discard`: about 15-20 ms a commit measured here, and a trial makes
    6-8 commits) that dominated the cost of tracking. PERSIST zeroes the journal's header instead:
    the same durability (`synchronous` stays FULL), the database file stays complete after every
    commit (copying it is safe), other processes may keep the default mode; what changes is that
    an empty-headed `mlflow.db-journal` stays next to the database. Per connection, not stored in the file.
    """
    store = getattr(getattr(mlc, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is None or engine.dialect.name != "sqlite" or getattr(engine, "_tunebench_tuned", False):
        return
    from sqlalchemy import event  # noqa: PLC0415

    def persist_journal(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=PERSIST")
            cur.execute("PRAGMA journal_size_limit=4194304")
        except Exception:  # noqa: BLE001 - tuning only: the store works without it
            pass
        finally:
            cur.close()

    event.listen(engine, "connect", persist_journal)
    engine._tunebench_tuned = True
    engine.dispose()  # pooled connections reconnect with the pragma


def ui_command(uri: str, host: str = "127.0.0.1", port: int = 5000) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that serve the MLflow UI over store `uri` for one local user.

    The store URI (which may hold a database password) travels in `MLFLOW_BACKEND_STORE_URI`,
    not on the command line that `ps` shows; a SQLite store serves `./mlartifacts`. One web
    worker and no GenAI job runner (MLflow's defaults start 4 workers and about 8 job processes),
    unless `MLFLOW_SERVER_ENABLE_JOB_EXECUTION` says otherwise.

    Returns:
        `(argv, env)` for `os.execve` or `subprocess.Popen`.
    """
    argv = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port), "--workers", "1"]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, "MLFLOW_BACKEND_STORE_URI": uri}
    if uri.startswith("sqlite:"):
        argv += ["--default-artifact-root", paths.MLARTIFACTS.resolve().as_uri()]
    return argv, env


def experiment_name(benchmark: str, dataset: str, model: str) -> str:
    """The experiment of a benchmark: `<dataset>/<model>` (`<benchmark>` when several share them)."""
    return f"{dataset}/{model}" if benchmark in (f"{dataset}_{model}", dataset) else f"{dataset}/{model}/{benchmark}"


def ensure_experiment(mlc: MlflowClient, name: str) -> str:
    """Return the id of experiment `name`, creating it if needed (safe when processes race)."""
    found = mlc.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    uri = mlc.tracking_uri
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        location = (paths.MLARTIFACTS / safe).resolve().as_uri()
    try:
        return mlc.create_experiment(name, artifact_location=location)
    except MlflowException:  # another worker created it first (mlflow#10334)
        found = mlc.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def git_commit() -> str:
    """The current git commit, or `unknown` outside a repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _params(hp: Mapping[str, Any]) -> list[Param]:
    return [Param(k, redact(str(v))[:MAX_PARAM_LENGTH]) for k, v in sorted(hp.items())]


def _tags(tags: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(k, redact(str(v))[:MAX_TAG_LENGTH]) for k, v in tags.items()]


def _metrics(metrics: Mapping[str, float], step: int) -> list[Metric]:
    ts = _now_ms()
    return [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None and v == v]


def _now_ms() -> int:
    return int(time.time() * 1000)


def start_run(
    mlc: MlflowClient, experiment_id: str, name: str, *, parent_id: str | None = None, tags: Mapping | None = None
) -> str:
    """Create a run (nested under `parent_id` if given) and return its id."""
    return _create_run(mlc, experiment_id, name, parent_id=parent_id, tags=tags).info.run_id


def _create_run(mlc: MlflowClient, experiment_id: str, name: str, *, parent_id: str | None, tags: Mapping | None):
    all_tags = {"mlflow.runName": name, **(tags or {}), **owner_tags()}
    if parent_id:
        all_tags["mlflow.parentRunId"] = parent_id
    return mlc.create_run(experiment_id, run_name=name, tags={t.key: t.value for t in _tags(all_tags)})


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts when they live on this machine's file system (`file:` URI), else None."""
    parsed = urlsplit(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(url2pathname(parsed.path))
    if not parsed.scheme and artifact_uri:
        return Path(artifact_uri)
    return None


def log_params(mlc: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params in one batch (values redacted)."""
    mlc.log_batch(run_id, params=_params(params))


def log_metrics(mlc: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log finite metrics at `step` in one batch."""
    batch = _metrics(metrics, step)
    if batch:
        mlc.log_batch(run_id, metrics=batch)


def set_tags(mlc: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set tags in one batch (values redacted)."""
    mlc.log_batch(run_id, tags=_tags(tags))


def smooth_curve(points: list[float], factor: float = 0.9) -> list[float]:
    """Exponential moving average of a learning curve, as in Chollet's `smooth_curve`.

    Each point is `previous * factor + point * (1 - factor)`; the first point is kept.
    """
    out: list[float] = []
    for p in points:
        out.append(out[-1] * factor + p * (1 - factor) if out else p)
    return out


# --- learning curves ------------------------------------------------------------------------------
# Drawn with Pillow (a matplotlib dependency) rather than matplotlib: about 5 ms a figure instead
# of about 100 ms, which is paid once per trial (see benchmarks/tracking_overhead.py).

_COLORS = ((31, 119, 180), (255, 127, 14))  # training, validation (matplotlib's C0, C1)
_SCALE = 2  # drawn at twice the size, then halved: cheap anti-aliasing


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** np.floor(np.log10(raw))
    return float(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw))


def _font(size: int):
    from PIL import ImageFont  # noqa: PLC0415

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _panel(draw, box, key, series, fonts) -> None:
    """One metric: faint raw points and bold smoothed curves of training and validation."""
    s = _SCALE
    x0, y0, x1, y1 = box
    small, normal = fonts
    draw.text(((x0 + x1) // 2, y0 - 18 * s), key, fill="black", font=normal, anchor="mm")
    finite = [v for _, raw, smooth in series for v in (*raw, *smooth) if np.isfinite(v)]
    n = max((len(raw) for _, raw, _ in series), default=1)
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - (abs(lo) or 1) * 0.05, hi + (abs(hi) or 1) * 0.05
    step = _nice_step(hi - lo, 4)
    lo, hi = np.floor(lo / step) * step, np.ceil(hi / step) * step

    def px(i: float, v: float) -> tuple[float, float]:
        fx = (i - 1) / (n - 1) if n > 1 else 0.5
        return x0 + fx * (x1 - x0), y1 - (v - lo) / (hi - lo) * (y1 - y0)

    for k in range(int(round((hi - lo) / step)) + 1):
        v = lo + k * step
        _, y = px(1, v)
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225), width=s)
        draw.text((x0 - 6 * s, y), f"{v:.3g}", fill=(60, 60, 60), font=small, anchor="rm")
    xstep = max(1, int(_nice_step(max(n - 1, 1), 6)))
    for i in range(1, n + 1):
        if i == n or ((i - 1) % xstep == 0 and n - i >= xstep / 2):
            x, _ = px(i, lo)
            draw.line([(x, y1), (x, y1 + 4 * s)], fill=(60, 60, 60), width=s)
            draw.text((x, y1 + 6 * s), str(i), fill=(60, 60, 60), font=small, anchor="ma")
    draw.text(((x0 + x1) // 2, y1 + 20 * s), "epoch", fill="black", font=small, anchor="ma")
    draw.rectangle([x0, y0, x1, y1], outline=(90, 90, 90), width=s)
    for (_, raw, smooth), color in zip(series, _COLORS):
        faint = tuple(int(c + (255 - c) * 0.6) for c in color)
        for pts, width, fill in ((raw, 1, faint), (smooth, 3, color)):
            xy = [px(i, v) for i, v in enumerate(pts, start=1 + (len(raw) - len(pts))) if np.isfinite(v)]
            if len(xy) > 1:
                draw.line(xy, fill=fill, width=width * s, joint="curve")
            if pts is raw and len(raw) < 30:
                for x, y in xy:
                    draw.ellipse([x - 3 * s, y - 3 * s, x + 3 * s, y + 3 * s], fill=faint)
    ly = y0 + 8 * s
    width = max((draw.textlength(name, font=small) for name, _, _ in series), default=0)
    draw.rectangle([x1 - 126 * s, y0 + s, min(x1 - s, x1 - 90 * s + width), ly + 14 * s * len(series) - 6 * s],
                   fill="white")  # fmt: skip
    for (name, _, _), color in zip(series, _COLORS):
        draw.line([(x1 - 120 * s, ly), (x1 - 100 * s, ly)], fill=color, width=3 * s)
        draw.text((x1 - 95 * s, ly), name, fill="black", font=small, anchor="lm")
        ly += 14 * s


def plot_learning_curves(history: Mapping[str, list[float]], path: Path, title: str = "") -> Path:
    """Save raw and smoothed learning curves as a PNG: one panel per metric with its `val_` twin.

    Raw values are drawn faint with a dot per epoch, `smooth_curve` (EMA 0.9) bold; with more
    than 20 epochs the smoothed curve starts at epoch 11, as in the book.

    Returns:
        `path`.
    """
    from PIL import Image, ImageDraw  # noqa: PLC0415

    s = _SCALE
    keys = [k for k in history if not k.startswith("val_") and history[k]]
    keys += [k for k in history if k.startswith("val_") and history[k] and k[4:] not in history]
    pw, ph, left, top, bottom = 400, 290, 64, 58, 44
    img = Image.new("RGB", (max(1, len(keys)) * pw * s, ph * s), "white")
    draw = ImageDraw.Draw(img)
    fonts = (_font(11 * s), _font(13 * s))
    note = "faint: raw, bold: smoothed (EMA 0.9)"
    draw.text((8 * s, 6 * s), f"{title}   {note}" if title else note, fill="black", font=fonts[1])
    for col, key in enumerate(keys):
        series = []
        for name in [key] if key.startswith("val_") else [key, f"val_{key}"]:
            raw = [float(v) for v in history.get(name, [])]
            if raw:
                series.append((name, raw, smooth_curve(raw[10:] if len(raw) > 20 else raw)))
        box = (col * pw * s + left * s, top * s, (col + 1) * pw * s - 14 * s, (ph - bottom) * s)
        _panel(draw, box, key, series, fonts)
    img.reduce(s).save(path, optimize=False, compress_level=3)
    return path


# --- models -----------------------------------------------------------------------------------------


def _keras_model(model):
    """The `keras.Model` inside a `TrainedModel` of a Keras family, else None (without importing Keras)."""
    keras = sys.modules.get("keras")
    inner = getattr(model, "model", None)
    return inner if keras is not None and isinstance(inner, keras.Model) else None


@functools.cache
def _keras_requirements() -> tuple[str, ...]:
    """Pinned requirements of a Keras-flavor model: keras (MLflow's default) and the TensorFlow backend."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    import mlflow.keras  # noqa: PLC0415

    reqs = list(mlflow.keras.get_default_pip_requirements())
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
            break
        except PackageNotFoundError:
            continue
    return tuple(reqs)


def _dense_rows(x, n: int) -> np.ndarray:
    rows = x[:n]
    return np.asarray(rows.toarray() if hasattr(rows, "toarray") else rows, dtype=np.float32)


class _SavedKerasFile:
    """Stands in for the `keras.Model` given to `mlflow.keras.save_model`, whose only use of it is `save(path)`.

    The `.keras` file that `TrainedModel.save` has just written is hard-linked (or copied) to
    `path` instead of serializing the model a second time (20-80 ms a trial measured); any other
    attribute comes from the real model.
    """

    def __init__(self, model, saved: Path):
        self._model, self._saved = model, saved

    def save(self, filepath, **kwargs) -> None:
        try:
            os.link(self._saved, filepath)
        except OSError:
            shutil.copyfile(self._saved, filepath)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def save_trial_model(model, dest: Path, input_example=None, *, keras_flavor: bool = True) -> str:
    """Save a trial's `TrainedModel` into `dest`, as an MLflow Keras-flavor model too when it is Keras.

    `dest` gets `TrainedModel.save`'s files (`meta.json`, the family's files: `TrainedModel.load`
    reads them) and, for a Keras model with `keras_flavor`, `mlflow.keras.save_model`'s files
    (`MLmodel` with the `keras` and `python_function` flavors, `data/model.keras` (a hard link to
    the family's `model.keras`), a tensor signature, `input_example.json`, pinned requirements:
    no requirement inference).

    Args:
        `input_example`: a few feature rows (array or CSR) the model takes; the first row is kept.
            Without it, a zero row of the input shape stands in.

    Returns:
        `keras` when the MLflow flavor was written, else `tunebench` (the folder alone).
    """
    dest = Path(dest)
    model.save(dest)
    km = _keras_model(model) if keras_flavor else None
    if km is None:
        return "tunebench"
    import mlflow.keras  # noqa: PLC0415
    from mlflow.models import ModelSignature  # noqa: PLC0415
    from mlflow.types import Schema, TensorSpec  # noqa: PLC0415

    from pipeline.models.keras_common import MODEL_FILE  # noqa: PLC0415

    in_shape, out_shape = tuple(km.inputs[0].shape[1:]), tuple(km.outputs[0].shape[1:])
    example = (
        np.asarray(type(model).prepare(_dense_rows(input_example, 1)), dtype=np.float32)
        if input_example is not None
        else np.zeros((1, *in_shape), dtype=np.float32)
    )
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *in_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *out_shape))]),
    )
    saved = dest / MODEL_FILE
    mlflow.keras.save_model(
        _SavedKerasFile(km, saved) if saved.is_file() else km, str(dest), signature=signature,
        input_example=example, pip_requirements=list(_keras_requirements()),
        metadata={"tunebench_family": getattr(model, "family", "")},
    )  # fmt: skip
    return "keras"


# --- trial runs -------------------------------------------------------------------------------------


class TrialRun:
    """The MLflow child run of one Optuna trial.

    Attributes:
        `run_id`: the run's id (also the trial's user attr `mlflow_run_id`).
        `timings`: seconds this object spent in tracking, by phase (`start`, `epochs`, `finish`,
            and inside `finish`: `curves`, `model`, `log`); read by the overhead benchmark.
        `model_format`: class setting; `keras` logs Keras models with the MLflow flavor as well,
            `folder` only the `TrainedModel` folder.
    """

    model_format: ClassVar[str] = "keras"
    flush_seconds: ClassVar[float] = 5.0  # per-epoch metrics reach the store at most this late

    def __init__(self, mlc: MlflowClient, experiment_id: str, parent_id: str, trial, tags: Mapping[str, Any]):
        t0 = time.perf_counter()
        self.mlc = mlc
        self.trial_number = trial.number
        run = _create_run(
            mlc,
            experiment_id,
            f"trial-{trial.number}",
            parent_id=parent_id,
            tags={**tags, "trial_number": trial.number, "state": "RUNNING"},
        )
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        trial.set_user_attr("mlflow_run_id", self.run_id)
        self._pending: list[Metric] = []
        self._flushed_at = time.perf_counter()
        self.timings: dict[str, float] = {"start": self._flushed_at - t0, "epochs": 0.0}

    def log_epoch(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Record one epoch's metrics with `step=epoch` (0-based) and its own timestamp.

        They go to the store in one batch every `flush_seconds` and when the run ends: one store
        write per epoch cost about 10 ms, 5-8 % of a trial whose epochs are short.
        """
        t0 = time.perf_counter()
        self._pending += _metrics(logs, epoch)
        if t0 - self._flushed_at >= self.flush_seconds:
            self._flush()
        self.timings["epochs"] += time.perf_counter() - t0

    def _flush(self, metrics: list[Metric] = (), tags: list[RunTag] = ()) -> None:
        """Write the pending epoch metrics (and `metrics`, `tags`) in as few batches as MLflow allows."""
        batch, tags, self._pending = [*self._pending, *metrics], list(tags), []
        while batch or tags:
            self.mlc.log_batch(self.run_id, metrics=batch[:_BATCH], tags=tags)
            batch, tags = batch[_BATCH:], []
        self._flushed_at = time.perf_counter()

    def finish(
        self,
        state: str,
        *,
        history: Mapping[str, list[float]] | None = None,
        final: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        model=None,
        log_model: bool = True,
        input_example=None,
    ) -> None:
        """End the run: final metrics and tags, curves, the model (completed trials), a matching status.

        `state` is the trial's (`COMPLETE`, `PRUNED`, `FAIL`); the run ends FINISHED, KILLED or
        FAILED. A failed run carries tags `error` (the `reason` tag, or the exception being
        handled) and `state`, and the traceback as artifact `error.txt`, all redacted. With a
        local artifact store the files are written in place (no temporary copy); otherwise they
        go up in one call. A problem writing them is recorded as tag `tracking_error` and warned
        about rather than failing a finished trial.

        Args:
            `input_example`: feature rows for the Keras flavor's input example (see `save_trial_model`).
        """
        t0 = time.perf_counter()
        status = STATUS.get(state, "FAILED")
        all_tags: dict[str, Any] = {"state": state, **(tags or {})}
        error = sys.exc_info()[1] if status == "FAILED" else None
        if status == "FAILED" and "error" not in all_tags:
            all_tags["error"] = all_tags.get("reason") or (f"{type(error).__name__}: {error}" if error else state)
        local = local_artifact_dir(self.artifact_uri)
        try:
            with nullcontext(str(local)) if local is not None else tempfile.TemporaryDirectory() as out:
                self._write_artifacts(Path(out), all_tags, history, model if log_model else None, input_example,
                                      error)  # fmt: skip
                t = time.perf_counter()
                self._flush(_metrics(final or {}, 0), _tags(all_tags))
                if local is None and any(Path(out).iterdir()):
                    self.mlc.log_artifacts(self.run_id, out)
                self.timings["log"] = time.perf_counter() - t
        finally:
            self.mlc.set_terminated(self.run_id, status=status, end_time=_now_ms())
            self.timings["finish"] = time.perf_counter() - t0

    def _write_artifacts(self, out: Path, tags: dict, history, model, input_example, error) -> None:
        """Write the curves, the model and the error into `out`; on a problem, tag it and go on."""
        try:
            t = time.perf_counter()
            out.mkdir(parents=True, exist_ok=True)
            if history and any(history.values()):
                plot_learning_curves(history, out / "learning_curves.png", f"trial {self.trial_number}")
            self.timings["curves"] = time.perf_counter() - t
            t = time.perf_counter()
            if model is not None:
                try:
                    tags["model_format"] = save_trial_model(
                        model, out / "model", input_example, keras_flavor=self.model_format == "keras"
                    )
                except BaseException:
                    shutil.rmtree(out / "model", ignore_errors=True)  # no half-written model among the artifacts
                    raise
            self.timings["model"] = time.perf_counter() - t
            if error is not None:
                text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
                (out / "error.txt").write_text(redact(text))
        except Exception as exc:  # noqa: BLE001 - a finished trial stays finished
            tags["tracking_error"] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"trial {self.trial_number}: artifacts not logged: {redact(str(exc))}", stacklevel=3)


def log_figure_files(mlc: MlflowClient, run_id: str, files: list[Path], artifact_path: str | None = None) -> None:
    """Upload a list of already written files to a run; text files (CSV, JSON, HTML...) are redacted first."""
    for f in map(Path, files):
        if f.suffix.lower() in _TEXT_SUFFIXES and f.is_file():
            text = f.read_text(errors="replace")
            clean = redact(text)
            if clean != text:  # upload a redacted copy; the caller's file (maybe a DVC output) stays
                with tempfile.TemporaryDirectory() as tmp:
                    (Path(tmp) / f.name).write_text(clean)
                    mlc.log_artifact(run_id, str(Path(tmp) / f.name), artifact_path)
                continue
        mlc.log_artifact(run_id, str(f), artifact_path)


# --- runs of interrupted processes ------------------------------------------------------------------
# Every run we create carries the host, pid and start time of its process (`owner_tags`); a stage
# that starts closes the runs whose process is gone (`close_orphan_runs`), as `search.storage`
# does for the Optuna trials of a dead worker (and with the same `worker_id` / `worker_alive`).

OWNER_TAGS = ("tunebench.host", "tunebench.pid", "tunebench.started")


def owner_tags() -> dict[str, str]:
    """Tags naming this process (host, pid, start time), set on every run `start_run` creates."""
    from pipeline.search.storage import worker_id  # noqa: PLC0415

    w = worker_id()
    return dict(zip(OWNER_TAGS, (str(w["host"]), str(w["pid"]), "" if w["started"] is None else str(w["started"]))))


def _owner(tags: Mapping[str, str]) -> dict | None:
    """A run's owner tags as a `worker_id()` dict, or None for a run without them."""
    try:
        started = tags.get(OWNER_TAGS[2]) or None
        return {"host": tags[OWNER_TAGS[0]], "pid": int(tags[OWNER_TAGS[1]]),
                "started": float(started) if started else None}  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def reopen_run(mlc: MlflowClient, run_id: str) -> None:
    """Set a finished or interrupted run RUNNING again, owned by this process (a resumed study round)."""
    mlc.update_run(run_id, status="RUNNING")
    set_tags(mlc, run_id, owner_tags())


def close_orphan_runs(mlc: MlflowClient, experiment_id: str, *, by: str) -> list[str]:
    """Mark FAILED the runs of an experiment left RUNNING by a process of this host that has ended.

    Runs of live processes (concurrent stages or search workers), of other hosts (their process
    cannot be checked from here: an RDB search's heartbeats handle those) and runs without owner
    tags are left alone. A closed run gets tags `interrupted` and `error` saying why (and `state`
    FAIL for a trial's run).

    Args:
        `by`: the stage closing them, named in the tag.

    Returns:
        The ids of the runs closed.
    """
    from pipeline.search.storage import worker_alive, worker_id  # noqa: PLC0415

    me, closed, token = worker_id(), [], None
    while True:
        page = mlc.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=500, page_token=token)
        for run in page:
            owner = _owner(run.data.tags)
            if owner is None or owner["host"] != me["host"] or owner == me or worker_alive(owner):
                continue
            why = (f"interrupted: its process (pid {owner['pid']} on {owner['host']}) ended while it ran; "
                   f"closed by `tunebench {by}`")  # fmt: skip
            tags = {"interrupted": why, "error": why, **({"state": "FAIL"} if "trial_number" in run.data.tags else {})}
            set_tags(mlc, run.info.run_id, tags)
            mlc.set_terminated(run.info.run_id, status="FAILED", end_time=_now_ms())
            closed.append(run.info.run_id)
        token = page.token
        if not token:
            return closed
