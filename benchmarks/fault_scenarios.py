"""Fault scenarios of a distributed search on real servers, for `benchmarks/faults.py` and the tests.

Each scenario runs the real CLI (`python -m pipeline search --benchmark B --storage <PostgreSQL>
--workers 2`, MLflow runs on an `mlflow server`) on a tiny project (scikit-learn's digits, the
NumPy network) and injects one fault once round 1 is under way (a trial of round 1 RUNNING in the
Optuna storage, at least one finished), then counts what the search left. A kill first freezes its
processes (SIGSTOP) and strikes only if a trial is still RUNNING with them frozen, so it always
cuts a trial off (a trial of a second lasts less than a poll under load takes):

* `kill_one_worker`: SIGKILL of the worker process running a trial;
* `kill_all_rerun_now`: SIGKILL of the launcher and all its workers, then the same command at once;
* `kill_all_rerun_after_grace`: the same, the rerun after the heartbeat grace period
  (`TUNEBENCH_GRACE_S`, shortened to `GRACE_S`);
* `postgres_restart`: PostgreSQL stopped and started again in place (`DOWN_S` s of downtime);
* `mlflow_restart`: the MLflow server stopped and started again in place;
* `two_launchers_postgres_restart`: 4 workers on 2 launchers (`--workers 2` each), PostgreSQL restart.

`run_scenario(..., fault=False)` runs the same launches without the fault (the wall-time baseline).
Every run gets its own benchmark (fresh studies and MLflow experiment). Counts (`count`):
trials expected (the budgets), finished (counted against a budget), lost (expected minus finished,
plus interrupted configurations never run again), duplicate configurations, trials left RUNNING or
WAITING, MLflow runs left RUNNING, and the launchers' exit codes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import ROOT
from pipeline.servers import MlflowServer, Postgres, mlflow_server, pg_unavailable, postgres_server


SCENARIOS = ("kill_one_worker", "kill_all_rerun_now", "kill_all_rerun_after_grace", "postgres_restart",
             "mlflow_restart", "two_launchers_postgres_restart")  # fmt: skip
GRACE_S, HEARTBEAT_S = 6, 1  # shortened heartbeat grace period and interval (kill_all_* scenarios)
DOWN_S = 3.0  # seconds a restarted server stays down
CLI_TIMEOUT = 600.0


@dataclass(frozen=True)
class Sizes:
    """The rounds of every scenario's search: trials per round and epochs per trial."""

    budgets: tuple[int, ...] = (12, 6)
    epochs: int = 15


QUICK = Sizes(budgets=(6, 4), epochs=10)
TINY = Sizes(budgets=(8,), epochs=15)  # the tests: 4 workers on 2 launchers must still find round 1 under way


@dataclass
class Services:
    pg: Postgres
    ml: MlflowServer
    url: str = field(init=False)

    def __post_init__(self) -> None:  # the installed driver named (SQLAlchemy maps a bare URL to psycopg 3)
        self.url = self.pg.url.replace("postgresql://", "postgresql+psycopg2://", 1)


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """A throwaway PostgreSQL cluster and `mlflow server` (`pipeline.servers`); RuntimeError when impossible."""
    if (why := pg_unavailable()) is not None:
        raise RuntimeError(f"no PostgreSQL here: {why}")
    with postgres_server() as pg, mlflow_server() as ml:
        yield Services(pg, ml)


def env(ml_uri: str, **extra: str) -> dict:
    """The launchers' environment: this checkout first on the path, runs to `ml_uri`."""
    out = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MLFLOW_TRACKING_URI": ml_uri, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    for var in ("TUNEBENCH_STORAGE", "TUNEBENCH_GRACE_S", "TUNEBENCH_HEARTBEAT_S", "MLFLOW_REGISTRY_URI"):
        out.pop(var, None)
    return out | extra


def make_project(dest: Path, ml_uri: str) -> Path:
    """A project folder at `dest` with `digits` fetched and preprocessed by the real CLI."""
    import yaml  # noqa: PLC0415

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["search"].update(storage=None, workers=1)
    params["datasets"] = {"digits": params["datasets"]["digits"]}
    params["benchmarks"] = {"digits_numpy_mlp": params["benchmarks"]["digits_numpy_mlp"]}  # never searched here
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("fetch", "preprocess"):
        proc = subprocess.run([sys.executable, "-m", "pipeline", stage, "--dataset", "digits"], cwd=dest,
                              env=env(ml_uri), capture_output=True, text=True, timeout=CLI_TIMEOUT)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{stage} failed:\n{proc.stderr[-3000:]}")
    return dest


def add_benchmark(project: Path, key: str, sizes: Sizes) -> None:
    """Add benchmark `key` (digits, the NumPy network, rounds of `sizes`) to the project's params.yaml."""
    import yaml  # noqa: PLC0415

    params = yaml.safe_load((project / "params.yaml").read_text())
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())["benchmarks"]["digits_numpy_mlp"]
    first = {**next(iter(shipped["rounds"].values())), "epochs": sizes.epochs, "pruner": "none"}
    first.pop("timeout", None)
    rounds = [{**first, "name": f"r{i + 1}", "n_trials": n} for i, n in enumerate(sizes.budgets)]
    params["benchmarks"][key] = {**shipped, "rounds": rounds}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


class Launcher:
    """`python -m pipeline search --benchmark KEY --storage URL --workers 2` in its own process group."""

    def __init__(self, project: Path, key: str, svc: Services, name: str, **extra_env: str):
        self.log = project / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "search", "--benchmark", key, "--storage", svc.url,
                 "--workers", "2"], cwd=project, env=env(svc.ml.uri, **extra_env), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait(self, timeout: float = CLI_TIMEOUT) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the launcher and every worker of its group."""
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def signal(self, sig: int) -> None:
        """Send `sig` to the launcher and every worker of its group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def studies(url: str, key: str) -> list:
    """The round studies of benchmark `key`, in round order."""
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from sqlalchemy.pool import NullPool  # noqa: PLC0415

    # polled many times a second: no pool, so no connection outlives its query (the server has 200 slots)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})
    names = sorted(n for n in optuna.get_all_study_names(storage) if n.startswith(f"{key}."))
    return [optuna.load_study(study_name=n, storage=storage) for n in names]


def _busy(trials: list) -> list:
    """The RUNNING trials among `trials` that named their worker."""
    import optuna  # noqa: PLC0415

    return [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and "worker" in t.user_attrs]


def _round_one(url: str, key: str) -> list:
    found = studies(url, key)
    return found[0].get_trials(deepcopy=False) if found else []


def wait_mid_round(url: str, key: str, launchers: list[Launcher], timeout: float = 300) -> dict:
    """Wait until round 1 has a finished trial and a RUNNING one that named its worker; return that worker."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        trials = _round_one(url, key)
        if (busy := _busy(trials)) and any(t.state.is_finished() for t in trials):
            return busy[0].user_attrs["worker"]
        if all(launcher.proc.poll() is not None for launcher in launchers):
            raise RuntimeError(f"{key}: the launchers ended before round 1 was under way:\n"
                               f"{launchers[0].output()[-3000:]}")  # fmt: skip
        time.sleep(0.2)
    raise RuntimeError(f"{key}: round 1 not under way after {timeout:.0f} s")


def freeze_mid_trial(run: Run, *, one_worker: bool) -> Callable[[int], None]:
    """SIGSTOP one worker (or every launcher's processes) once round 1 is under way, and again until a
    trial is still RUNNING on what is frozen; return how to signal the frozen processes."""
    while True:
        worker = wait_mid_round(run.svc.url, run.key, run.launchers)

        def send(sig: int, pid: int = int(worker["pid"])) -> None:
            if one_worker:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            else:
                for launcher in run.launchers:
                    launcher.signal(sig)

        send(signal.SIGSTOP)
        still = [t.user_attrs["worker"] for t in _busy(_round_one(run.svc.url, run.key))]
        if (worker in still) if one_worker else bool(still):
            return send
        send(signal.SIGCONT)  # its trial ended before the freeze: let it go on, and try again


def _kill_one_worker(run: Run) -> None:
    freeze_mid_trial(run, one_worker=True)(signal.SIGKILL)


def _kill_all(run: Run, wait_s: float) -> None:
    freeze_mid_trial(run, one_worker=False)
    for launcher in run.launchers:
        launcher.kill()
    time.sleep(wait_s)
    run.launchers = [run.launch("rerun", **run.launch_env)]


def _restart(which: str) -> Callable[[Run], None]:
    def inject(run: Run) -> None:
        wait_mid_round(run.svc.url, run.key, run.launchers)
        (run.svc.pg if which == "postgres" else run.svc.ml).restart(down_s=DOWN_S)

    return inject


FAULTS: dict[str, Callable[[Run], None]] = {
    "kill_one_worker": _kill_one_worker,
    "kill_all_rerun_now": lambda run: _kill_all(run, 0.0),
    "kill_all_rerun_after_grace": lambda run: _kill_all(run, GRACE_S + 2 * HEARTBEAT_S),
    "postgres_restart": _restart("postgres"),
    "mlflow_restart": _restart("mlflow"),
    "two_launchers_postgres_restart": _restart("postgres"),
}


@dataclass
class Run:
    """One scenario run: its benchmark, launchers and what they returned."""

    svc: Services
    project: Path
    key: str
    launch_env: dict
    launchers: list[Launcher] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def launch(self, name: str, **extra_env: str) -> Launcher:
        return Launcher(self.project, self.key, self.svc, f"{self.key}-{name}", **extra_env)


def run_scenario(name: str, svc: Services, project: Path, sizes: Sizes, *, fault: bool = True, tag: str = "") -> dict:
    """Run scenario `name` (with its fault, or without: the baseline) and return its counts and wall time."""
    key = f"{name}_{'fault' if fault else 'base'}{tag}"
    add_benchmark(project, key, sizes)
    extra = {"TUNEBENCH_GRACE_S": str(GRACE_S), "TUNEBENCH_HEARTBEAT_S": str(HEARTBEAT_S)} \
        if name.startswith("kill_all") else {}  # fmt: skip
    run = Run(svc, project, key, extra)
    t0 = time.monotonic()
    n = 2 if name.startswith("two_launchers") else 1
    run.launchers = [run.launch(f"launcher{i}", **extra) for i in range(n)]
    try:
        if fault:
            FAULTS[name](run)
        run.exit_codes.extend(launcher.wait() for launcher in run.launchers)
    finally:
        for launcher in run.launchers:
            launcher.kill()
    wall = time.monotonic() - t0
    outputs = "\n".join(p.read_text(errors="replace") for p in sorted(project.glob(f"{key}-*.log")))
    return {"scenario": name, "fault": fault, "key": key, "wall_s": round(wall, 1), "exit_codes": run.exit_codes,
            "tracebacks": outputs.count("Traceback"), **count(svc, key, sizes)}  # fmt: skip


def count(svc: Services, key: str, sizes: Sizes) -> dict:
    """What a benchmark's search left in PostgreSQL and MLflow (see the module docstring)."""
    from mlflow.entities import ViewType  # noqa: PLC0415
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    from pipeline import tracking  # noqa: PLC0415
    from pipeline.search.execution.budget import SURPLUS_ATTR, budget_used  # noqa: PLC0415
    from pipeline.search.execution.stale_trials import is_interrupted  # noqa: PLC0415

    found = studies(svc.url, key)
    finished = lost = duplicates = left = interrupted = 0
    for study in found:
        trials = study.get_trials(deepcopy=False)
        attrs = study.user_attrs
        finished += budget_used(study)
        left += sum(1 for t in trials if not t.state.is_finished())
        cut = [t for t in trials if is_interrupted(attrs, t)]
        interrupted += len(cut)
        ran = [t for t in trials if t.state.is_finished() and not is_interrupted(attrs, t)
               and SURPLUS_ATTR not in t.user_attrs and t.params]  # fmt: skip
        configs = [tuple(sorted(t.params.items())) for t in ran]
        duplicates += len(configs) - len(set(configs))
        lost += sum(1 for t in cut if t.params and not _rerun(t, ran))
    expected = sum(sizes.budgets)
    lost += max(0, expected - finished)
    mlc = MlflowClient(tracking_uri=svc.ml.uri)
    exp = mlc.get_experiment_by_name(tracking.experiment_name(key, "digits", "numpy_mlp"))
    runs = mlc.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=5000) if exp else []
    return {"expected": expected, "finished": finished, "lost": lost, "duplicates": duplicates,
            "running_left": left, "mlflow_running": sum(r.info.status == "RUNNING" for r in runs),
            "interrupted": interrupted, "rounds": len(found)}  # fmt: skip


def _rerun(cut, ran: list) -> bool:
    """Whether the configuration of interrupted trial `cut` ran again: a retry of it, or a trial with its parameters
    (those it had drawn when it was cut off)."""
    for t in ran:
        if t.system_attrs.get("failed_trial") == cut.number or cut.number in t.system_attrs.get("retry_history", []):
            return True
        if all(t.params.get(k) == v for k, v in cut.params.items()):
            return True
    return False
