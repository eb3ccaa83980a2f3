"""Searches that survive faults, on real servers: a PostgreSQL restart, an MLflow server restart, killed workers.

One throwaway PostgreSQL cluster and one `mlflow server` serve the module (`pipeline/servers.py`,
restarted in place on the same port and data). A tiny project (`digits`, the NumPy network, one
round of 8-12 trials of 15 epochs: a few seconds a trial) is searched by the real CLI
(`python -m pipeline search --workers 2`), one benchmark per scenario:

* PostgreSQL restarts while two launchers of two workers each run a round, then one worker is
  SIGKILLed mid-trial (its launcher fails the trial as interrupted and starts a fresh worker);
* the MLflow server restarts while a launcher of two workers runs a round;
* every worker and the launcher are SIGKILLed mid-round; a rerun at once completes the round.
  Killed again, with the trials' worker moved to "another host" (as a launcher on a second
  machine that died), a rerun finds the budget claimed by them and waits for their heartbeat to
  go stale (grace period shortened to `GRACE_S` through `TUNEBENCH_GRACE_S`), then reruns their
  configurations.

After each: the search exits 0, the budget is met exactly, no trial is lost (every interrupted
configuration was run again), no configuration was drawn twice, nothing is left RUNNING in the
study or in MLflow, one MLflow run per trial (FAILED for the killed ones), one line per outage and
no traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import postgres_and_mlflow, rounds_list


pytestmark = [pytest.mark.slow, pytest.mark.servers]

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 15
BUDGETS = {"faults_pg": 12, "faults_mlflow": 8, "faults_kill": 8}  # one round of this many trials each
CLI_TIMEOUT = 300
OUTAGE, BACK = "unreachable, retrying for", "back after"
GRACE_S = 30  # heartbeat grace period of the last rerun (longer than a launcher takes to start here)


@pytest.fixture(scope="module")
def servers():
    """PostgreSQL (role with a password) and an MLflow tracking server, stopped after the module."""
    with postgres_and_mlflow() as both:
        yield both


@pytest.fixture(scope="module")
def project(servers, tmp_path_factory) -> Path:
    """A tiny project with `digits` fetched and preprocessed, one benchmark per scenario."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["search"].update(storage=None, workers=1, retry_s=90)
    params["datasets"] = {"digits": params["datasets"]["digits"]}
    bench = params["benchmarks"]["digits_numpy_mlp"]
    rnd = {k: v for k, v in rounds_list(bench)[0].items() if k != "timeout"} | {"epochs": EPOCHS, "pruner": "none"}
    params["benchmarks"] = {key: {**bench, "rounds": [{**rnd, "n_trials": n}]} for key, n in BUDGETS.items()}
    proj = tmp_path_factory.mktemp("faults") / "proj"
    proj.mkdir()
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("fetch", "preprocess"):
        argv = [sys.executable, "-m", "pipeline", stage, "--dataset", "digits"]
        proc = subprocess.run(argv, cwd=proj, env=_env(servers[1].uri), capture_output=True, text=True,
                              timeout=CLI_TIMEOUT)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proj


def _env(ml_uri: str, **extra: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MLFLOW_TRACKING_URI": ml_uri, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    for var in ("TUNEBENCH_STORAGE", "TUNEBENCH_GRACE_S", "TUNEBENCH_HEARTBEAT_S"):
        env.pop(var, None)
    return env | extra


class Launcher:
    """`python -m pipeline search --benchmark KEY --workers 2` in its own process group, output in a file."""

    def __init__(self, project: Path, key: str, url: str, ml_uri: str, name: str, **env: str):
        self.log = project / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "search", "--benchmark", key, "--storage", url, "--workers", "2"],
                cwd=project, env=_env(ml_uri, **env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait(self) -> str:
        try:
            self.proc.wait(timeout=CLI_TIMEOUT)
        finally:
            self.kill()
        return self.output()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        else:  # its workers too, if any are left
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _storage_url(pg) -> str:
    return pg.url.replace("postgresql://", "postgresql+psycopg2://", 1)


def _study(url: str, key: str):
    import optuna

    from sqlalchemy.pool import NullPool

    # polled many times a second: no pool, so no connection outlives its query (the server has 200 slots)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})
    names = [n for n in optuna.get_all_study_names(storage) if n.startswith(f"{key}.")]
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


def _wait_trials(url: str, key: str, *, finished: int, running: int = 0, timeout: float = 240) -> None:
    """Wait until the study of `key` has `finished` finished trials and `running` running ones."""
    import optuna

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        study = _study(url, key)
        if study is not None:
            states = [t.state for t in study.get_trials(deepcopy=False)]
            done = sum(s.is_finished() for s in states)
            if done >= finished and states.count(optuna.trial.TrialState.RUNNING) >= running:
                return
        time.sleep(0.3)
    raise AssertionError(f"{key}: not {finished} finished and {running} running trials after {timeout} s")


def _check_round(url: str, ml_uri: str, key: str, *, killed: int = 0) -> None:
    """Budget exact, nothing lost, no configuration twice, nothing RUNNING; one MLflow run per trial, with metrics."""
    import optuna
    from mlflow.tracking import MlflowClient

    from pipeline import tracking
    from pipeline.search.execution.budget import SURPLUS_ATTR, budget_used
    from pipeline.search.execution.stale_trials import REDRAW_ATTR, drew_every_parameter, is_enqueued, is_interrupted

    study = _study(url, key)
    trials = study.get_trials(deepcopy=False)
    attrs = study.user_attrs
    ts = optuna.trial.TrialState
    assert not [t.number for t in trials if not t.state.is_finished()], f"{key}: trials left unfinished"
    assert budget_used(study) == BUDGETS[key], f"{key}: {budget_used(study)} trials count, budget {BUDGETS[key]}"
    cut = [t for t in trials if is_interrupted(attrs, t)]
    assert len(cut) >= killed, f"{key}: {len(cut)} interrupted trials, {killed} expected at least"
    # a retry names every trial it retries (`retry_history`: the first, then each retry cut off in turn); a
    # trial cut off while it drew is drawn again whole by a new trial that names it (`redraw_of`)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for t in cut:
        assert t.state == ts.FAIL
        if drew_every_parameter(attrs, t) or (is_enqueued(t) and REDRAW_ATTR not in t.user_attrs):
            assert t.number in retried, f"{key}: interrupted trial {t.number} was not run again"
        else:  # cut off before or while it drew: a later trial draws again what it (or the trial it redrew) drew
            first = t.user_attrs.get(REDRAW_ATTR, t.number)
            again = [u.number for u in trials if u.number > t.number and u.user_attrs.get(REDRAW_ATTR) == first]
            assert again, f"{key}: trial {t.number}, cut off while it drew, was not drawn again"
    ran = [t for t in trials if SURPLUS_ATTR not in t.user_attrs and t.params]
    seen: dict[tuple, int] = {}
    for t in ran:
        config = tuple(sorted(t.params.items()))
        if config in seen:  # only a retry may repeat a configuration, and only that of an interrupted trial
            first = seen[config]
            # a retry of a retry repeats the first retry (cut off after drawing the rest of a cut-short draw)
            retries = {t.system_attrs.get("failed_trial"), *t.system_attrs.get("retry_history", [])}
            assert first in retries and is_interrupted(attrs, trials[first]), (
                f"{key}: trial {t.number} repeats trial {first}"
            )
        seen.setdefault(config, t.number)
    mlc = MlflowClient(tracking_uri=ml_uri)
    exp = mlc.get_experiment_by_name(tracking.experiment_name(key, "digits", "numpy_mlp"))
    runs = mlc.search_runs([exp.experiment_id], max_results=1000)
    left = [
        (r.info.run_name, r.data.tags.get("kind"), r.data.tags.get("state")) for r in runs if r.info.status == "RUNNING"
    ]
    assert not left, f"{key}: MLflow runs left RUNNING: {left}"
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    by_trial: dict[str, list] = {}
    for r in children:
        by_trial.setdefault(r.data.tags["trial_number"], []).append(r)
    assert all(len(v) == 1 for v in by_trial.values()), f"{key}: a trial with several runs"
    for t in ran:
        run = by_trial.get(str(t.number), [None])[0]
        if t in cut and run is None:
            continue  # killed before its run was created
        if t in cut and run is not None and "mlflow_run_id" not in t.user_attrs:
            # killed between creating its run and naming it on the trial: the run's tags name the trial
            assert run.info.status == "FAILED", f"{key}#{t.number}: killed trial's unnamed run {run.info.status}"
            continue
        assert run is not None and run.info.run_id == t.user_attrs.get("mlflow_run_id"), f"{key}#{t.number}: no run"
        if t in cut:
            assert run.info.status == "FAILED", f"{key}#{t.number}: killed trial's run {run.info.status}"
        elif t.state == ts.COMPLETE:
            assert run.info.status == "FINISHED"
            history = mlc.get_metric_history(run.info.run_id, "val_accuracy")
            # epochs are numbered from 1 in MLflow steps (docs/tracking.md)
            assert [m.step for m in history] == list(range(1, EPOCHS + 1)), f"{key}#{t.number}: epochs lost in MLflow"
            assert "best_val_accuracy" in run.data.metrics


def _assert_clean(out: str, outages: int) -> None:
    assert "Traceback" not in out and "leaked semaphore" not in out, out[-5000:]
    lines = out.splitlines()
    down = [x for x in lines if OUTAGE in x]
    assert len(down) == outages, f"{len(down)} outage lines, {outages} expected:\n{out[-5000:]}"
    assert len([x for x in lines if BACK in x]) == outages, out[-5000:]


@pytest.mark.parametrize("value, why", [(-1, "greater than or equal to 0"), ("soon", "expected a number"),
                                        (None, "expected a number")])  # fmt: skip
def test_retry_s_is_checked_like_every_key(value, why):
    from pipeline.config import parse_params
    from pipeline.errors import ConfigError

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert parse_params(raw).search.retry_s == 120
    raw["search"]["retry_s"] = value
    with pytest.raises(ConfigError, match=rf"search\.retry_s: bad value .*{why}"):
        parse_params(raw)


def test_postgres_restart_mid_round_two_launchers(servers, project):
    pg, ml = servers
    url, key = _storage_url(pg), "faults_pg"
    launchers = [Launcher(project, key, url, ml.uri, f"pg{i}") for i in range(2)]
    try:
        _wait_trials(url, key, finished=2, running=2)
        pg.restart(down_s=3)
        victim = _kill_a_worker_mid_trial(url, key, launchers[0].proc.pid)
        outs = [launcher.wait() for launcher in launchers]
    finally:
        for launcher in launchers:
            launcher.kill()
    for launcher, out in zip(launchers, outs):
        assert launcher.proc.returncode == 0, out[-5000:]
        assert "PostgreSQL at 127.0.0.1:" in out
        _assert_clean(out, outages=1)
    assert "killed by signal 9" in outs[0]
    study = _study(url, key)
    assert study.trials[victim].state.name == "FAIL"
    _check_round(url, ml.uri, key, killed=1)


def _kill_a_worker_mid_trial(url: str, key: str, launcher_pid: int, timeout: float = 120) -> int:
    """SIGKILL a worker process of `launcher_pid` while it trains a trial; returns the trial's number."""
    import optuna
    import psutil

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        workers = {c.pid for c in psutil.Process(launcher_pid).children(recursive=True)}  # forked by its fork server
        for t in _study(url, key).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            pid = t.user_attrs.get("worker", {}).get("pid")
            if pid in workers and t.params and t.user_attrs.get("mlflow_run_id"):
                os.kill(pid, signal.SIGKILL)
                return t.number
        time.sleep(0.2)
    raise AssertionError(f"{key}: no trial of a worker of launcher {launcher_pid} ran within {timeout} s")


def test_mlflow_restart_mid_round(servers, project):
    pg, ml = servers
    url, key = _storage_url(pg), "faults_mlflow"
    launcher = Launcher(project, key, url, ml.uri, "mlflow")
    try:
        _wait_trials(url, key, finished=2, running=2)
        ml.restart(down_s=2)
        out = launcher.wait()
    finally:
        launcher.kill()
    assert launcher.proc.returncode == 0, out[-5000:]
    assert f"MLflow server at {ml.uri}" in out
    _assert_clean(out, outages=1)
    _check_round(url, ml.uri, key)


def _beat_until_waited_for(study, trials: list, launcher: Launcher, timeout: float = 240) -> None:
    """Keep the heartbeats of `trials` fresh, as their workers on another host would, until `launcher`
    says it waits for them: a launcher slow to start under load must still find them alive."""
    from pipeline import compat

    t0 = time.monotonic()
    while "waiting for" not in launcher.output() and launcher.proc.poll() is None:
        assert time.monotonic() - t0 < timeout, f"the launcher never waited:\n{launcher.output()[-3000:]}"
        for t in trials:
            compat.storage_of(study).record_heartbeat(compat.trial_id(t))
        time.sleep(0.5)


def test_sigkill_of_every_worker_then_reruns(servers, project):
    import optuna

    from pipeline import compat
    from pipeline.search.execution.stale_trials import WORKER_ATTR

    pg, ml = servers
    url, key = _storage_url(pg), "faults_kill"
    first = Launcher(project, key, url, ml.uri, "kill0", TUNEBENCH_HEARTBEAT_S="1", TUNEBENCH_GRACE_S="6")
    _wait_trials(url, key, finished=1, running=2)
    first.kill()
    study = _study(url, key)
    killed = {t.number for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING}
    # two were running a moment before the kill; one may have ended in between (CI saw it happen)
    assert len(killed) >= 1

    # a rerun at once: the killed workers were processes of this host, so their trials are failed at once
    again = Launcher(project, key, url, ml.uri, "kill1", TUNEBENCH_HEARTBEAT_S="1", TUNEBENCH_GRACE_S="6")
    _wait_trials(url, key, finished=len(killed) + 3, running=2)
    again.kill()
    assert "interrupted" in again.output()
    # killed again, as if on another machine: only their heartbeats tell they are dead
    study = _study(url, key)
    remote = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for t in remote:  # a trial killed before it named its worker gets one made up
        worker = {**t.user_attrs.get(WORKER_ATTR, {"pid": 1}), "host": "another-host.invalid"}
        compat.storage_of(study).set_trial_user_attr(compat.trial_id(t), WORKER_ATTR, worker)
    last = Launcher(project, key, url, ml.uri, "kill2", TUNEBENCH_HEARTBEAT_S="1", TUNEBENCH_GRACE_S=str(GRACE_S))
    _beat_until_waited_for(study, remote, last)
    out = last.wait()
    assert last.proc.returncode == 0, out[-5000:]
    assert "waiting for" in out and "already met" not in out, "the launcher must wait for the silent trials, not stop"
    _assert_clean(out, outages=0)
    study = _study(url, key)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for n in [*killed, *(t.number for t in remote)]:
        assert by_number[n].state == optuna.trial.TrialState.FAIL
    _check_round(url, ml.uri, key, killed=len(killed) + len(remote))
