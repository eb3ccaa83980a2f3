"""Connecting to an MLflow tracking store: the client, a reachability check, the `mlflow ui` command.

Credentials never reach MLflow's own output or a command line: `client` moves the user and
password of an `http(s)://user:pw@host` URI into MLflow's `MLFLOW_TRACKING_USERNAME` /
`MLFLOW_TRACKING_PASSWORD`, and `ui_command` hands the store URI to `mlflow ui` through the
environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from mlflow.tracking import MlflowClient

from pipeline import compat, fileio, paths
from pipeline.tracking import retrying_client
from pipeline.redaction import redact, split_credentials


def client(uri: str) -> MlflowClient:
    """A client for `uri` (a local SQLite store by default, or a server URL); also MLflow's global URIs.

    For an `http(s)` URI with `user:password@`, the credentials go to MLflow's
    `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` (inherited by worker processes) and the
    client gets the URI without them, so MLflow never prints them (it echoes a server URI in
    "View run ... at" lines, which are switched off here too: the progress bar reports trials).
    A relative SQLite URI is made absolute (`absolute_sqlite_uri`) and the store tuned
    (`_tune_sqlite`). A server's client rides out outages (`retrying_client.RetryingClient`).
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
    if uri.startswith("sqlite:"):
        _create_sqlite_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if uri.startswith("sqlite:"):
        _tune_sqlite(mlc)
    return retrying_client.wrap(mlc, uri)


_DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}


def connect(uri: str) -> MlflowClient:
    """`check_reachable(uri)`, then `client(uri)`: what a command that is about to create runs opens."""
    check_reachable(uri)
    return client(uri)


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
    return local_artifact_dir(uri)


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


def _create_sqlite_store(uri: str) -> None:
    """Create a missing SQLite store whole: its tables are made (by MLflow) in a temporary file next to
    it, which is then linked into place. MLflow creates them in place over seconds, and a store
    interrupted then (Ctrl-C, a kill) was left half-made: every later command failed on it ("table
    ... already exists"). If another process links its store first, that one is used.
    """
    path = _local_store_path(uri)
    if path is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fileio.clean_staging(path)  # what a creation killed earlier left
    tmp = fileio.temp_sibling(path)
    try:
        maker = MlflowClient(tracking_uri=f"sqlite:///{tmp}")
        maker.search_experiments()  # creates the tables
        engine = compat.sqlalchemy_engine(maker)
        if engine is not None:
            engine.dispose()
        try:
            os.link(tmp, path)  # never replaces a store another process made meanwhile
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: a rename, unless a store appeared meanwhile
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def _tune_sqlite(mlc: MlflowClient) -> None:
    """Make a SQLite store keep its rollback journal file between commits (`journal_mode=PERSIST`).

    By default SQLite creates and deletes `<db>-journal` at every commit; on disks where a delete
    is slow (ext4 mounted with `discard`: about 15-20 ms a commit measured here, and a trial makes
    6-8 commits) that dominated the cost of tracking. PERSIST zeroes the journal's header instead:
    the same durability (`synchronous` stays FULL), the database file stays complete after every
    commit (copying it is safe), other processes may keep the default mode; what changes is that
    an empty-headed `mlflow.db-journal` stays next to the database. Per connection, not stored in the file.
    """
    engine = compat.sqlalchemy_engine(mlc)
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


def ui_links(uri: str, base: str) -> list[tuple[str, str]]:
    """`(experiment, link)` for each experiment of store `uri` with runs: its runs table in the UI at `base`.

    The links open MLflow's model-training view; MLflow 3 opens an experiment in its GenAI view otherwise.
    """
    store = client(uri)
    found = store.search_experiments(order_by=["name ASC"])
    used = [e for e in found if store.search_runs([e.experiment_id], max_results=1)]
    return [(e.name, f"{base}/#/experiments/{e.experiment_id}/runs?workflowType=machine_learning") for e in used]


def check_ui_port(host: str, port: int) -> None:
    """Refuse to start the UI on a port that is busy or cannot be served here (one line, `TrackingError`)."""
    import errno  # noqa: PLC0415
    import socket  # noqa: PLC0415

    from pipeline.errors import TrackingError  # noqa: PLC0415

    try:
        with socket.create_server((host, port)):  # address reuse on, as the UI's server binds
            pass
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise TrackingError(f"port {port} on {host} is already in use (another MLflow UI?): stop what uses it, "
                                "or pick another with --port") from None  # fmt: skip
        raise TrackingError(f"cannot serve the MLflow UI on {host}:{port}: {exc.strerror or exc}; pick another "
                            "--host or --port") from None  # fmt: skip


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The folder of a `file:` URI or plain path on this machine (a run's artifacts, a file store), else None."""
    parsed = urlsplit(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(url2pathname(parsed.path))
    if not parsed.scheme and artifact_uri:
        return Path(artifact_uri)
    return None
