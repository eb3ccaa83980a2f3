"""Searches that survive faults on real servers: each fault scenario of `benchmarks.faults` once, at tiny size,
and a launcher dead on another host.

The scenarios (`benchmarks/fault_scenarios.py`) run the real CLI (`python -m pipeline search
--workers 2`) against one throwaway PostgreSQL cluster and `mlflow server` (restarted in place on
the same port and data), one round of 8 trials of 15 epochs of the NumPy network on digits, and
inject their fault once round 1 is under way: SIGKILL of one worker, SIGKILL of every process then
a rerun (at once, and after the shortened grace period), a PostgreSQL restart, an MLflow server
restart, and a PostgreSQL restart under 4 workers on 2 launchers. The benchmark runs them with a
baseline and repeats; here only the faulted run. The last test kills every process of a launcher
mid-round and moves its trials' worker to "another host" (as a launcher on a second machine that
died): a rerun finds the budget claimed by them and waits for their heartbeat to go stale (grace
period shortened to `GRACE_S` through `TUNEBENCH_GRACE_S`), then reruns their configurations.

After each: every search exits 0, the budget is met exactly, no trial is lost (every interrupted
configuration was run again), no configuration was drawn twice, nothing is left RUNNING in the
study or in MLflow, one MLflow run per trial (FAILED for the killed ones) with every epoch's
metric, one line per outage and its end, and no traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from benchmarks import fault_scenarios as fs
from conftest import ROOT, missing

pytestmark = [pytest.mark.slow, pytest.mark.servers]

OUTAGE, BACK = "unreachable, retrying for", "back after"
GRACE_S = 10  # heartbeat grace period of the rerun that waits for another host's trials (kept fresh until it waits)


@pytest.fixture(scope="module")
def svc():
    if (why := fs.pg_unavailable()) is not None:
        missing(f"no PostgreSQL here: {why} (Debian package postgresql)")
    with fs.services() as services:
        yield services


@pytest.fixture(scope="module")
def project(svc, tmp_path_factory) -> Path:
    return fs.make_project(tmp_path_factory.mktemp("fault-scenarios") / "proj", svc.ml.uri)


def _check_rounds(svc, key: str, *, killed: int = 0) -> None:
    """Each round's budget exact, nothing lost, no configuration twice, nothing RUNNING; one MLflow run per
    trial, with every epoch's metric."""
    import optuna
    from mlflow.tracking import MlflowClient

    from pipeline import tracking
    from pipeline.search.execution.budget import SURPLUS_ATTR, budget_used
    from pipeline.search.execution.stale_trials import REDRAW_ATTR, drew_every_parameter, is_enqueued, is_interrupted

    ts = optuna.trial.TrialState
    studies = fs.studies(svc.url, key)
    assert len(studies) == len(fs.TINY.budgets), f"{key}: {len(studies)} round studies"
    mlc = MlflowClient(tracking_uri=svc.ml.uri)
    exp = mlc.get_experiment_by_name(tracking.experiment_name(key, "digits", "numpy_mlp"))
    runs = mlc.search_runs([exp.experiment_id], max_results=1000)
    left = [(r.info.run_name, r.data.tags.get("kind")) for r in runs if r.info.status == "RUNNING"]
    assert not left, f"{key}: MLflow runs left RUNNING: {left}"
    by_trial: dict[tuple[str, str], list] = {}
    for r in runs:
        if "mlflow.parentRunId" in r.data.tags:
            by_trial.setdefault((r.data.tags["study_name"], r.data.tags["trial_number"]), []).append(r)
    assert all(len(v) == 1 for v in by_trial.values()), f"{key}: a trial with several runs"
    n_cut = 0
    for study, budget in zip(studies, fs.TINY.budgets):
        trials = study.get_trials(deepcopy=False)
        attrs = study.user_attrs
        assert not [t.number for t in trials if not t.state.is_finished()], f"{key}: trials left unfinished"
        assert budget_used(study) == budget, f"{key}: {budget_used(study)} trials count, budget {budget}"
        cut = [t for t in trials if is_interrupted(attrs, t)]
        n_cut += len(cut)
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
        for t in ran:
            run = by_trial.get((study.study_name, str(t.number)), [None])[0]
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
                steps = [m.step for m in history]
                assert steps == list(range(1, fs.TINY.epochs + 1)), f"{key}#{t.number}: epochs lost in MLflow"
                assert "best_val_accuracy" in run.data.metrics
    assert n_cut >= killed, f"{key}: {n_cut} interrupted trials, {killed} expected at least"


def _assert_clean(out: str, outages: range, server: str = "") -> int:
    """No traceback or leaked semaphore; a number of outage lines in `outages`, each naming `server`, and as many
    lines of their end. Returns the number."""
    assert "Traceback" not in out and "leaked semaphore" not in out, out[-5000:]
    lines = out.splitlines()
    down = [x for x in lines if OUTAGE in x]
    assert len(down) in outages, f"{len(down)} outage lines, {outages} expected:\n{out[-5000:]}"
    assert all(server in x for x in down), f"an outage line not naming {server!r}: {down}"
    assert len([x for x in lines if BACK in x]) == len(down), out[-5000:]
    return len(down)
    assert len([x for x in lines if BACK in x]) == down, out[-5000:]
    return down


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


# the line a kill scenario's launcher prints on the fault: the killed worker, or the rerun failing its trials
SEEN = {"kill_one_worker": ("launcher0", "killed by signal 9"), "kill_all_rerun_now": ("rerun", "interrupted"),
        "kill_all_rerun_after_grace": ("rerun", "interrupted")}  # fmt: skip


@pytest.mark.parametrize("name", fs.SCENARIOS)
def test_fault_scenario_loses_nothing(svc, project, name):
    got = fs.run_scenario(name, svc, project, fs.TINY)
    outputs = {p.stem.removeprefix(f"{got['key']}-"): p.read_text(errors="replace")
               for p in sorted(project.glob(f"{got['key']}-*.log"))}  # fmt: skip
    logs = "\n".join(out[-2500:] for out in outputs.values())
    assert got["exit_codes"] and all(c == 0 for c in got["exit_codes"]), f"{got}\n{logs}"
    assert got["finished"] == got["expected"] == sum(fs.TINY.budgets), f"{got}\n{logs}"
    assert {k: got[k] for k in ("lost", "duplicates", "running_left", "mlflow_running", "tracebacks")} == {
        "lost": 0,
        "duplicates": 0,
        "running_left": 0,
        "mlflow_running": 0,
        "tracebacks": 0,
    }, f"{got}\n{logs}"
    if name.startswith("kill"):
        assert got["interrupted"] >= 1, f"the fault hit no trial: {got}"
    # the same run, checked trial by trial, and line by line
    _check_rounds(svc, got["key"], killed=1 if name.startswith("kill") else 0)
    if name in SEEN:
        log, line = SEEN[name]
        assert line in outputs[log], f"{log}: no {line!r}:\n{outputs[log][-5000:]}"
    # one outage line per restart and launcher, naming the server; of two launchers, the second may have started
    # its workers after the restart
    restarts = int(name.endswith("restart"))
    server = "PostgreSQL at 127.0.0.1:" if "postgres" in name else f"MLflow server at {svc.ml.uri}"
    outages = range(2) if restarts and len(outputs) > 1 else range(restarts, restarts + 1)
    seen = {log: _assert_clean(out, outages, server) for log, out in outputs.items()}
    assert sum(seen.values()) >= restarts, f"no launcher saw the restart: {seen}"


def _beat_until_waited_for(study, trials: list, launcher: fs.Launcher, timeout: float = 240) -> None:
    """Keep the heartbeats of `trials` fresh, as their workers on another host would, until `launcher`
    says it waits for them: a launcher slow to start under load must still find them alive."""
    from pipeline import compat

    t0 = time.monotonic()
    while "waiting for" not in launcher.output() and launcher.proc.poll() is None:
        assert time.monotonic() - t0 < timeout, f"the launcher never waited:\n{launcher.output()[-3000:]}"
        for t in trials:
            compat.storage_of(study).record_heartbeat(compat.trial_id(t))
        time.sleep(0.5)


def test_a_rerun_waits_for_the_silent_trials_of_a_launcher_dead_on_another_host(svc, project):
    import optuna

    from pipeline import compat
    from pipeline.search.execution.stale_trials import WORKER_ATTR

    key = "kill_all_other_host"
    fs.add_benchmark(project, key, fs.TINY)
    beat = {"TUNEBENCH_HEARTBEAT_S": str(fs.HEARTBEAT_S)}
    run = fs.Run(svc, project, key, beat)
    run.launchers = [run.launch("launcher0", **beat)]
    try:
        fs.freeze_mid_trial(run, one_worker=False)  # a trial RUNNING on the frozen processes
    finally:
        run.launchers[0].kill()
    # as if on another machine: only their heartbeats tell they are dead
    study = fs.studies(svc.url, key)[0]
    remote = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    assert remote, "the kill cut no trial off"
    for t in remote:  # a trial killed before it named its worker gets one made up
        worker = {**t.user_attrs.get(WORKER_ATTR, {"pid": 1}), "host": "another-host.invalid"}
        compat.storage_of(study).set_trial_user_attr(compat.trial_id(t), WORKER_ATTR, worker)
    last = run.launch("rerun", TUNEBENCH_GRACE_S=str(GRACE_S), **beat)
    try:
        _beat_until_waited_for(study, remote, last)
        code = last.wait()
    finally:
        last.kill()
    out = last.output()
    assert code == 0, out[-5000:]
    assert "waiting for" in out and "already met" not in out, "the launcher must wait for the silent trials, not stop"
    _assert_clean(out, range(1))
    by_number = {t.number: t for t in fs.studies(svc.url, key)[0].get_trials(deepcopy=False)}
    for t in remote:
        assert by_number[t.number].state == optuna.trial.TrialState.FAIL
    _check_rounds(svc, key, killed=len(remote))
