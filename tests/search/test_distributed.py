"""Distributed search on real servers: studies in PostgreSQL shared by several workers, runs on an MLflow server.

A throwaway PostgreSQL cluster (a login role with a password, TCP only) and an
`mlflow server` over SQLite are started once for the module (`pipeline/servers.py`).
A tiny project (the `digits` dataset, two NumPy-network benchmarks, rounds of 6
and 4 trials of 2-3 epochs) is fetched and preprocessed by the real CLI, then
searched two ways, as a user would on several machines:

* one launcher with `--workers 2` (local worker processes sharing each round);
* two launchers started together on the same benchmark, one given `--storage`,
  the other `TUNEBENCH_STORAGE` (two machines joining the same studies).

Checked: the round studies in PostgreSQL (each round's budget met exactly by
all processes together, unique trial numbers, nothing left RUNNING, which
process ran what, no configuration drawn twice), the MLflow run tree on the
server (one `kind=study_round` parent per round, one nested run per trial),
that the database password never reaches MLflow or the console, and
`tunebench studies`.

A trial asked by one worker just after another claimed the last place of the
budget is stopped at once, PRUNED with user attr `surplus` (`pipeline.search.execution.budget`); it counts
nowhere and has no MLflow run, and the checks treat it so.

A bare `postgresql://` URL (as users write it) must open with the installed
psycopg2 driver (`test_plain_postgresql_url_opens`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import postgres_and_mlflow, rounds_list


pytestmark = [pytest.mark.slow, pytest.mark.servers]

ROOT = Path(__file__).resolve().parents[2]
WORKERS_BENCH = "digits_numpy_mlp"  # searched by one launcher with --workers 2
HOSTS_BENCH = "digits_numpy_mlp_two_hosts"  # searched by two launchers at once
BUDGETS = (6, 4)  # trials of round 1 (coarse) and round 2 (fine)
EPOCHS = (2, 3)
CLI_TIMEOUT = 400  # seconds for one CLI call (the whole module takes about 2-3 minutes on 2 cores)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def servers():
    """PostgreSQL (role with a password) and an MLflow tracking server, stopped after the module."""
    with postgres_and_mlflow() as both:
        yield both


@pytest.fixture(scope="module")
def storage_url(servers) -> str:
    """The Optuna storage URL the launchers get: credentials inside, the installed psycopg2 driver named.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which is not installed
    (see `test_plain_postgresql_url_opens`); naming the driver keeps these tests
    about distribution.
    """
    pg, _ = servers
    return pg.url.replace("postgresql://", "postgresql+psycopg2://", 1)


def _tiny_params() -> dict:
    """The shipped params.yaml cut down to `digits` and two copies of its NumPy benchmark."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["tracking"]["uri"] = "sqlite:///mlflow.db"  # MLFLOW_TRACKING_URI must override it
    params["search"].update(storage=None, workers=1)  # --storage / TUNEBENCH_STORAGE and --workers override
    params["datasets"] = {"digits": params["datasets"]["digits"]}
    bench = params["benchmarks"]["digits_numpy_mlp"]
    rounds = rounds_list(bench)[:2]
    for rnd, n, epochs in zip(rounds, BUDGETS, EPOCHS):
        rnd.update(n_trials=n, epochs=epochs)
        rnd.pop("timeout", None)
    bench["rounds"] = rounds
    params["benchmarks"] = {WORKERS_BENCH: bench, HOSTS_BENCH: bench}
    return params


def _env(ml_uri: str, **extra: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MLFLOW_TRACKING_URI": ml_uri, "PYTHONUNBUFFERED": "1"}
    env.pop("TUNEBENCH_STORAGE", None)
    return env | extra


def _redact(text: str) -> str:
    from pipeline.tracking import redact

    return redact(text)


def _cli(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT)  # fmt: skip
    assert proc.returncode == 0, _redact(f"pipeline {' '.join(args)} exited {proc.returncode}:\n"
                                         f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")  # fmt: skip
    return proc


@pytest.fixture(scope="module")
def project(servers, tmp_path_factory) -> Path:
    """A tiny project folder with `digits` fetched and preprocessed by the real CLI."""
    _, ml = servers
    proj = tmp_path_factory.mktemp("distributed") / "proj"
    proj.mkdir()
    (proj / "params.yaml").write_text(yaml.safe_dump(_tiny_params(), sort_keys=False))
    env = _env(ml.uri)
    _cli("fetch", "--dataset", "digits", cwd=proj, env=env)
    _cli("preprocess", "--dataset", "digits", cwd=proj, env=env)
    return proj


@pytest.fixture(scope="module")
def workers_run(servers, project, storage_url) -> dict:
    """One launcher, `--workers 2`, on WORKERS_BENCH."""
    _, ml = servers
    proc = _cli("search", "--benchmark", WORKERS_BENCH, "--storage", storage_url, "--workers", "2", cwd=project,
                env=_env(ml.uri))  # fmt: skip
    return {"outputs": [proc.stdout + proc.stderr]}


@pytest.fixture(scope="module")
def hosts_run(servers, project, storage_url) -> dict:
    """Two launchers started together on HOSTS_BENCH: one with `--storage`, one with `TUNEBENCH_STORAGE`."""
    _, ml = servers
    logs = Path(tempfile.mkdtemp(prefix="launchers-", dir=project.parent))
    cmd = [sys.executable, "-m", "pipeline", "search", "--benchmark", HOSTS_BENCH]
    launches = [(cmd + ["--storage", storage_url], _env(ml.uri)),
                (cmd, _env(ml.uri, TUNEBENCH_STORAGE=storage_url))]  # fmt: skip
    procs = []
    t0 = time.monotonic()
    try:
        for i, (argv, env) in enumerate(launches):
            with open(logs / f"launcher{i}.log", "wb") as out:
                procs.append(subprocess.Popen(argv, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT))
        for p in procs:
            p.wait(timeout=max(1.0, CLI_TIMEOUT - (time.monotonic() - t0)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    outputs = [(logs / f"launcher{i}.log").read_text(errors="replace") for i in range(len(procs))]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, _redact(f"launcher {p.pid} exited {p.returncode}:\n{out[-5000:]}")
    return {"pids": {p.pid for p in procs}, "outputs": outputs}


# ---------------------------------------------------------------- helpers


@functools.cache
def _storage(url: str):
    """One plain RDB storage per URL for the checks (no heartbeats: nothing runs trials here)."""
    import optuna

    return optuna.storages.RDBStorage(url)


def _rounds(storage_url: str, project: Path, key: str) -> list:
    """The round studies of benchmark `key` in PostgreSQL, in round order (named by `rounds.study_name`)."""
    import optuna

    from pipeline.config import load_params
    from pipeline.search.rounds import study_name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(storage_url)
    params = load_params(project / "params.yaml")
    names = sorted(n for n in optuna.get_all_study_names(storage) if n.startswith(f"{key}."))
    with contextlib.chdir(project):  # the names hash the project's processed data
        expected = [study_name(params, key, k) for k in range(len(BUDGETS))]
    assert names == expected, f"studies of {key} in PostgreSQL: {names}, expected {expected}"
    return [optuna.load_study(study_name=n, storage=storage) for n in names]


def _surplus(t) -> bool:
    """A trial stopped before it ran because the budget was already claimed elsewhere (it counts nowhere)."""
    from pipeline.search.execution.budget import SURPLUS_ATTR

    return bool(t.user_attrs.get(SURPLUS_ATTR))


def _finished(study) -> list:
    import optuna

    ts = optuna.trial.TrialState
    return [t for t in study.get_trials(deepcopy=False) if t.state in (ts.COMPLETE, ts.PRUNED, ts.FAIL)]


def _ran(study) -> list:
    """Trials that really ran (everything but surplus ones)."""
    return [t for t in study.get_trials(deepcopy=False) if not _surplus(t)]


def _assert_budget_met_exactly(study, budget: int, max_surplus: int) -> None:
    """The trials that ran and finished cost the budget (a pruned trial the share it trained), less than one
    trial over it, the last of them started while some was left, `budget_used` counts exactly those, and few
    surplus stops."""
    import optuna

    from pipeline.search.execution.budget import budget_used, trial_cost

    ran = sorted((t for t in _finished(study) if not _surplus(t)), key=lambda t: t.number)
    costs = [trial_cost(t) for t in ran]
    name = study.study_name
    assert budget <= sum(costs) < budget + 1, f"{name}: {len(ran)} trials cost {sum(costs)}, budget {budget}"
    assert sum(costs[:-1]) < budget, f"{name}: a trial started after the budget was used: {costs}"
    assert len(ran) == budget or any(c < 1 for c in costs), f"{name}: {len(ran)} trials, none pruned"
    assert budget_used(study) == round(sum(costs), 6)
    surplus = [t for t in study.get_trials(deepcopy=False) if _surplus(t)]
    assert len(surplus) <= max_surplus, f"{study.study_name}: {len(surplus)} surplus trials"
    for t in surplus:
        assert t.state == optuna.trial.TrialState.PRUNED and not t.params and "mlflow_run_id" not in t.user_attrs


def _assert_consistent(study) -> None:
    """Unique trial numbers 0..n-1, every trial finished, none RUNNING or WAITING."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))), f"{study.study_name}: trial numbers {numbers}"
    left = [(t.number, t.state.name) for t in trials if not t.state.is_finished()]
    assert not left, f"{study.study_name}: trials left unfinished {left}"
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in trials), f"{study.study_name}: none completed"


def _mlflow_runs(ml_uri: str, key: str | None = None) -> list:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    mlc = MlflowClient(tracking_uri=ml_uri)
    exps = [e.experiment_id for e in mlc.search_experiments(view_type=ViewType.ALL)]
    flt = f"tags.benchmark = '{key}'" if key else ""
    runs, token = [], None
    while True:
        page = mlc.search_runs(exps, filter_string=flt, run_view_type=ViewType.ALL, max_results=500,
                               page_token=token)  # fmt: skip
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _assert_run_tree(ml_uri: str, key: str, studies: list, *, one_parent: bool) -> None:
    """Parents tagged `kind=study_round` per round; exactly one nested run per trial, matching its state."""
    runs = _mlflow_runs(ml_uri, key)
    by_id = {r.info.run_id: r for r in runs}
    parents = [r for r in runs if r.data.tags.get("kind") == "study_round"]
    assert {p.data.tags.get("study_name") for p in parents} == {s.study_name for s in studies}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    selections = [r for r in runs if r.data.tags.get("kind") == "selection"]  # one per launcher that ran it
    assert len(parents) + len(children) + len(selections) == len(runs), "runs that are neither a round nor a trial"
    assert len({r.data.tags["chosen_trial"] for r in selections}) <= 1, "launchers chose different configurations"
    for study in studies:
        mine = {p.info.run_id for p in parents if p.data.tags.get("study_name") == study.study_name}
        if one_parent:
            assert len(mine) == 1, f"{study.study_name}: {len(mine)} parent runs"
        recorded = study.user_attrs.get("mlflow_parent_run_id")
        assert recorded in mine, f"{study.study_name}: recorded parent {recorded} is not one of its rounds {mine}"
        assert by_id[recorded].info.status == "FINISHED"
        assert by_id[recorded].data.params.get("range.lr"), "the round's ranges are logged on its parent"
        kids = [c for c in children if c.data.tags["mlflow.parentRunId"] in mine]
        trials = _ran(study)
        assert len(kids) == len(trials), f"{study.study_name}: {len(kids)} child runs for {len(trials)} trials"
        kid_of = {c.info.run_id: c for c in kids}
        for t in trials:
            run = kid_of.get(t.user_attrs.get("mlflow_run_id"))
            assert run is not None, f"{study.study_name}#{t.number}: no child run {t.user_attrs.get('mlflow_run_id')}"
            assert run.data.tags["trial_number"] == str(t.number)
            assert run.data.tags["study_name"] == study.study_name
            assert run.data.tags["state"] == t.state.name
            want = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(t.state.name, "FAILED")
            assert run.info.status == want, f"{study.study_name}#{t.number}: run {run.info.status}, trial {t.state}"
    orphans = [c.info.run_id for c in children if c.data.tags["mlflow.parentRunId"] not in by_id]
    assert not orphans, f"child runs whose parent is not a round of {key}: {orphans}"


# ---------------------------------------------------------------- local workers: --workers 2


def test_workers_share_each_round_budget_exactly(workers_run, storage_url, project):
    studies = _rounds(storage_url, project, WORKERS_BENCH)
    for study, budget in zip(studies, BUDGETS):
        _assert_consistent(study)
        _assert_budget_met_exactly(study, budget, max_surplus=1)
        pids = {t.user_attrs["worker"]["pid"] for t in _ran(study)}
        assert len(pids) == 2, f"{study.study_name}: trials ran in processes {pids}, expected 2 workers"
    assert not list(project.glob("studies/*/*.journal")), "a journal file was written although --storage is PostgreSQL"
    note = (project / "studies" / WORKERS_BENCH / "storage.json").read_text()  # the folder DVC expects
    assert '"kind": "postgresql"' in note and [s.study_name for s in studies] == json.loads(note)["studies"]
    assert not (project / "mlflow.db").exists(), "MLFLOW_TRACKING_URI was ignored: runs went to ./mlflow.db"


def test_workers_mlflow_run_tree(workers_run, servers, storage_url, project):
    _, ml = servers
    _assert_run_tree(ml.uri, WORKERS_BENCH, _rounds(storage_url, project, WORKERS_BENCH), one_parent=True)


# ---------------------------------------------------------------- two launchers ("two machines")


def test_two_launchers_leave_consistent_studies(hosts_run, servers, storage_url, project):
    """No lost, duplicated or dangling trial; every trial ran in one of the launchers, and both worked."""
    _, ml = servers
    studies = _rounds(storage_url, project, HOSTS_BENCH)
    for study in studies:
        _assert_consistent(study)
        pids = {t.user_attrs["worker"]["pid"] for t in study.get_trials(deepcopy=False)}
        assert pids <= hosts_run["pids"], f"{study.study_name}: trials from processes {pids - hosts_run['pids']}"
    first = {t.user_attrs["worker"]["pid"] for t in _ran(studies[0])}
    assert first == hosts_run["pids"], "both launchers should have run trials of the first round"
    _assert_run_tree(ml.uri, HOSTS_BENCH, studies, one_parent=False)


def test_two_launchers_share_each_round_budget_and_parent(hosts_run, servers, storage_url, project):
    """Launchers joining a study run its budget once between them, under the one parent run of the round."""
    _, ml = servers
    studies = _rounds(storage_url, project, HOSTS_BENCH)
    for study, budget in zip(studies, BUDGETS):
        _assert_budget_met_exactly(study, budget, max_surplus=1)
    _assert_run_tree(ml.uri, HOSTS_BENCH, studies, one_parent=True)


def test_two_launchers_sample_different_configurations(hosts_run, storage_url, project):
    """Launchers seeded alike must not draw (and train) the same configurations."""
    study = _rounds(storage_url, project, HOSTS_BENCH)[0]
    seen: dict[tuple, int] = {}
    for t in _ran(study):
        key = tuple(sorted(t.params.items()))
        assert key not in seen, f"{study.study_name}: trial {t.number} repeats trial {seen[key]}: {t.params}"
        seen[key] = t.number


@pytest.mark.parametrize("key", [WORKERS_BENCH, HOSTS_BENCH])
def test_later_round_narrows_from_the_whole_previous_round(workers_run, hosts_run, storage_url, project, key):
    """Round 2 starts after every trial of round 1 ended (other launchers' included) and narrows from all of them."""
    from pipeline.config import ParamRange, load_params
    from pipeline.search.spaces import narrow, space_to_dict

    first, second = _rounds(storage_url, project, key)
    rnd = load_params(project / "params.yaml").benchmark(key).rounds[1]
    ended = max(t.datetime_complete for t in first.get_trials(deepcopy=False))
    started = min(t.datetime_start for t in second.get_trials(deepcopy=False) if t.datetime_start)
    assert started >= ended, f"{second.study_name} began at {started}, before {first.study_name} ended at {ended}"
    space = {n: ParamRange(**v) for n, v in first.user_attrs["space"].items()}
    expected, _ = narrow(space, first.get_trials(deepcopy=False), first.direction.name.lower(),
                         top_quantile=rnd.top_quantile, pad=rnd.pad, widen_at_edge=rnd.widen_at_edge)  # fmt: skip
    assert second.user_attrs["space"] == space_to_dict(expected)


# ---------------------------------------------------------------- credentials, listing, URL forms


def test_password_never_reaches_mlflow_or_console(workers_run, hosts_run, servers):
    from mlflow.tracking import MlflowClient

    pg, ml = servers
    secret = pg.password
    runs = _mlflow_runs(ml.uri)
    assert runs
    for r in runs:
        blob = repr((r.info.run_name, r.data.params, r.data.tags, sorted(r.data.metrics)))
        assert secret not in blob, f"run {r.info.run_id} ({r.info.run_name}) carries the database password"
    mlc = MlflowClient(tracking_uri=ml.uri)
    for e in mlc.search_experiments():
        assert secret not in repr((e.name, e.tags, e.artifact_location))
    with tempfile.TemporaryDirectory() as tmp:  # the round summaries: trials table, ranges
        for p in (r for r in runs if r.data.tags.get("kind") == "study_round"):
            for a in mlc.list_artifacts(p.info.run_id):
                if a.path.endswith((".csv", ".json", ".txt")):
                    text = Path(mlc.download_artifacts(p.info.run_id, a.path, tmp)).read_text(errors="replace")
                    assert secret not in text, f"artifact {a.path} of run {p.info.run_id} carries the password"
    for out in [*workers_run["outputs"], *hosts_run["outputs"]]:
        assert secret not in out, "the search printed the database password"


def test_studies_lists_the_rounds(workers_run, hosts_run, servers, storage_url, project):
    pg, ml = servers
    proc = _cli("studies", "--storage", storage_url, cwd=project, env=_env(ml.uri))
    assert pg.password not in proc.stdout + proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[1:] if line.strip()}
    for key in (WORKERS_BENCH, HOSTS_BENCH):
        for study in _rounds(storage_url, project, key):
            assert study.study_name in rows, f"{study.study_name} missing from:\n{proc.stdout}"
            complete, pruned, fail, running = (int(v) for v in rows[study.study_name][:4])
            assert running == 0
            assert complete + pruned + fail == len(_finished(study))


def test_plain_postgresql_url_opens(servers):
    """`--storage postgresql://user:pw@host/db`, as README and users write it, opens with the installed driver."""
    import optuna

    from pipeline.search.storage import open_storage

    pg, _ = servers
    assert pg.url.startswith("postgresql://")
    storage = open_storage(pg.url, "plain_url_check")
    optuna.create_study(study_name="plain-url-check", storage=storage, load_if_exists=True)
    assert "plain-url-check" in optuna.get_all_study_names(storage)
