"""Throwaway local servers: a PostgreSQL cluster and an MLflow tracking server, started and removed whole.

The tests and the benchmarks (`benchmarks/faults.py`) run the distributed setup against them; they
also let anyone try that setup on one machine. Both are plain context managers that pick a free
loopback port, start the server in a new temporary folder, wait for it by polling, and always stop
it and delete the folder on exit, even when the start fails halfway. PostgreSQL refuses to run as
root: as root, the cluster belongs to the `postgres` system user (commands go through `runuser`),
otherwise to the current user.

    with postgres_server() as pg:          # pg.url: postgresql://tunebench:<password>@127.0.0.1:<port>/tunebench
        with mlflow_server() as ml:        # ml.uri: http://127.0.0.1:<port>
            ...
            pg.restart(down_s=3)           # same port and data folder: clients see an outage
            ml.restart()

Both objects have `stop()`, `start()` and `restart(down_s=0)` that stop and start the server in
place (same port, same data), to check how clients ride out an outage; the context manager stops
whatever runs at exit. Standard library only (psycopg2 is imported when a cluster starts).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "postgres"  # the system user that owns the cluster when run as root
ROLE = "tunebench"  # the login role (with a password) and its database


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, *, timeout: float, what: str, interval: float = 0.25, alive=None) -> None:
    """Poll `check()` until it returns true; raise after `timeout` seconds or once `alive()` is false.

    Args:
        `check`: returns true when the server is ready (exceptions count as not ready).
        `timeout`: seconds to wait in all.
        `what`: names the server in the error.
        `alive`: returns false when the server process has exited (no point waiting on).

    Raises:
        `RuntimeError`: the server did not come up in time, or exited.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = exc
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited while starting (last error: {last})")
        time.sleep(interval)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s (last error: {last})")


# ---------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (`initdb`, `pg_ctl`, `psql`, `createdb`), or None."""
    found = []
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10).stdout
            found.append(Path(out.strip()))
    # Debian keeps them under /usr/lib/postgresql/<major>/bin; newest major first
    found += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)]
    if shutil.which("pg_ctl"):
        found.append(Path(shutil.which("pg_ctl")).resolve().parent)
    for d in found:
        if all((d / exe).is_file() for exe in ("initdb", "pg_ctl", "psql", "createdb")):
            return d
    return None


def _major(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


def pg_unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None when it can."""
    if pg_bindir() is None:
        return "PostgreSQL server programs (initdb, pg_ctl, psql, createdb) not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no {PG_USER!r} user to own the cluster"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing"
    try:
        import psycopg2  # noqa: F401, PLC0415
    except ImportError:
        return "psycopg2 is not installed"
    return None


def _read_log(path: Path) -> str:
    """A server's log file so far, or "" when there is none yet."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@dataclass
class Postgres:
    """A running throwaway cluster: `url` carries the role's password (TCP, scram-sha-256)."""

    url: str
    host: str
    port: int
    user: str
    password: str
    database: str
    socket_dir: Path
    data_dir: Path
    log_file: Path
    _ctl: list[str] = field(default_factory=list, repr=False)  # pg_ctl -D <data> (as the cluster's owner)
    _opts: str = field(default="", repr=False)  # the server options it was started with
    _env: dict = field(default_factory=dict, repr=False)

    def log(self) -> str:
        """The server log so far (for failure messages)."""
        return _read_log(self.log_file)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: connections are cut, as at a restart; `immediate`: as at a crash)."""
        _pg_ctl(self, ["-m", mode, "-w", "-t", "30", "stop"], "pg_ctl stop")

    def start(self, timeout: float = 60) -> None:
        """Start the stopped server again on the same port and data folder; return once the role can log in."""
        _pg_ctl(self, ["-l", str(self.log_file), "-o", self._opts, "-w", "start"], "pg_ctl start")
        _wait_tcp_login(self.url, timeout)

    def restart(self, down_s: float = 0, mode: str = "fast") -> None:
        """`stop(mode)`, `down_s` seconds of downtime, `start()`."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()


def _pg_ctl(pg: Postgres, args: list[str], what: str) -> None:
    proc = subprocess.run(_as_owner([*pg._ctl, *args]), env=pg._env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n"
                           f"--- server log ---\n{pg.log()[-3000:]}")  # fmt: skip


def _as_owner(cmd: list[str]) -> list[str]:
    """`cmd` run as the cluster's owner (`runuser -u postgres --` when we are root)."""
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_server(*, database: str = ROLE, user: str = ROLE, timeout: float = 60) -> Iterator[Postgres]:
    """Start a fresh PostgreSQL cluster on a free port; stop it and delete it on exit.

    Local (Unix socket) connections are trusted; TCP connections on 127.0.0.1 need
    a password, so the URL's credentials are really used. Durability is turned
    off (`fsync`, `synchronous_commit`, `full_page_writes`): a throwaway cluster dies
    with its user.

    Raises:
        `RuntimeError`: a step failed (the message carries its output and the server log).
    """
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError(pg_unavailable() or "PostgreSQL not found")
    base = Path(tempfile.mkdtemp(prefix="tunebench-pg-"))
    if os.geteuid() == 0:  # the cluster's owner must reach its folder (mkdtemp makes it 0700 root)
        pw = pwd.getpwnam(PG_USER)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data, sock, log = base / "data", base / "sock", base / "postgres.log"
    port = free_port()
    password = f"pw{secrets.token_hex(12)}"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGTZ": "UTC"}
    env.pop("PGPASSWORD", None)

    def run(cmd: list[str], what: str, *, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(_as_owner(cmd), cwd=base, env=env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            server_log = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n"
                               f"{proc.stderr[-3000:]}\n--- server log ---\n{server_log}")  # fmt: skip
        return proc

    started = False
    try:
        run(["mkdir", "-p", str(sock)], "mkdir")
        run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-locale",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], "initdb")  # fmt: skip
        opts = (f"-k {sock} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                f"-c full_page_writes=off -c max_connections=200")  # fmt: skip
        started = True  # from here on, stop it on the way out (stopping a cluster that never came up is harmless)
        run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-W", "start"], "pg_ctl start")
        local = ["-h", str(sock), "-p", str(port), "-U", "postgres"]

        def ready() -> bool:
            return run([str(bindir / "pg_isready"), *local, "-d", "postgres"], "pg_isready",
                       check=False).returncode == 0  # fmt: skip

        wait_for(ready, timeout=timeout, what="PostgreSQL")
        run([str(bindir / "psql"), *local, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c",
             f"CREATE ROLE {user} LOGIN PASSWORD '{password}'"], "create role")  # fmt: skip
        run([str(bindir / "createdb"), *local, "-O", user, database], "createdb")
        url = f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}"
        _wait_tcp_login(url, timeout)
        yield Postgres(url=url, host="127.0.0.1", port=port, user=user, password=password, database=database,
                       socket_dir=sock, data_dir=data, log_file=log, _ctl=[str(bindir / "pg_ctl"), "-D", str(data)],
                       _opts=opts, _env=env)  # fmt: skip
    finally:
        if started:
            stop = run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"],
                       "pg_ctl stop", check=False)  # fmt: skip
            if stop.returncode != 0:  # a stuck server: immediate shutdown
                run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], "pg_ctl stop",
                    check=False)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def _wait_tcp_login(url: str, timeout: float) -> None:
    """Poll until the role logs in over TCP with its password."""
    import psycopg2  # noqa: PLC0415

    def login() -> bool:
        psycopg2.connect(url, connect_timeout=3).close()
        return True

    wait_for(login, timeout=timeout, what="PostgreSQL login over TCP")


# ---------------------------------------------------------------- MLflow


@dataclass
class MlflowServer:
    """A running tracking server: `uri` is its http address."""

    uri: str
    port: int
    root: Path
    log_file: Path
    _cmd: list[str] = field(default_factory=list, repr=False)
    _env: dict = field(default_factory=dict, repr=False)
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        return _read_log(self.log_file)

    def stop(self) -> None:
        """Stop the server and its workers (SIGTERM, then SIGKILL); its store and artifacts stay."""
        if self._proc is not None:
            stop_group(self._proc)
            self._proc = None

    def start(self, timeout: float = 180) -> None:
        """Start the server again on the same port, store and artifacts; return once `/health` answers."""
        if self._proc is not None:
            raise RuntimeError("the MLflow server is running already")
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(self._cmd, cwd=self.root, env=self._env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        proc = self._proc

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as resp:
                return resp.status == 200

        try:
            wait_for(healthy, timeout=timeout, what="MLflow server", interval=0.5, alive=lambda: proc.poll() is None)
        except RuntimeError as err:
            raise RuntimeError(f"{err}\n--- server log ---\n{self.log()[-4000:]}") from None

    def restart(self, down_s: float = 0) -> None:
        """`stop()`, `down_s` seconds of downtime, `start()`."""
        self.stop()
        time.sleep(down_s)
        self.start()


@contextlib.contextmanager
def mlflow_server(*, timeout: float = 180, workers: int = 1) -> Iterator[MlflowServer]:
    """Start `mlflow server` over a new SQLite store with proxied artifacts; stop it on exit.

    The server takes about 30 s to start on 2 cores (it migrates the new database
    first): its `/health` endpoint is polled until it answers 200.

    Raises:
        `RuntimeError`: the server exited or did not answer within `timeout` seconds.
    """
    root = Path(tempfile.mkdtemp(prefix="tunebench-mlflow-"))
    port = free_port()
    log = root / "server.log"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner: 2 processes, not 10; ready in half the time
    server = MlflowServer(uri=f"http://127.0.0.1:{port}", port=port, root=root, log_file=log, _cmd=cmd, _env=env)
    try:
        server.start(timeout)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """Stop `proc` and the workers it forked (its own session/process group): SIGTERM, then SIGKILL."""
    if proc.poll() is not None:  # it is gone; workers it left in its group must go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
