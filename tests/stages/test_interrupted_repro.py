"""`dvc repro` interrupted in each stage (Ctrl-C, then SIGKILL), then run again: it completes, and its
outputs equal an uninterrupted run's.

One benchmark of the tests' tiny profile (`digits`, the NumPy network, rounds of 2 trials) is run
once stage by stage with `dvc repro <stage>`, keeping a copy of the project after each stage and
timing it: the last copy is the uninterrupted reference. For each stage, a copy of the project
before it runs `dvc repro`; once the stage's command line is in the process table and it has run
for half its reference time, its process group gets SIGINT (as Ctrl-C in a terminal) and, if
anything still lives a second later, SIGKILL. Then `dvc repro` again, which must pass and leave:

* `dvc status` clean (every output matches `dvc.lock`), no temporary file or folder, no
  MLflow run left RUNNING;
* the same output files as the reference, data files byte-identical, the model's files verified
  against their hashes by loading it, the metrics numbers equal (the NumPy network trains the
  same in any process: no tolerance is needed), the same search result (best configuration,
  value and epoch of every round), and the same registry (versions, aliases, champion,
  alias history, promotion decision).

An interrupted fetch or preprocess is rerun up to that stage only (`dvc repro preprocess@digits`)
and compared there: what follows reads only those bytes, which the reference shares.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import ROOT, sh, tiny_profile

pytestmark = [pytest.mark.slow, pytest.mark.dvc]
KEY, DATASET, NAME = "digits_numpy_mlp", "digits", "digits-numpy_mlp"
STAGES = [("fetch", f"fetch@{DATASET}"), ("preprocess", f"preprocess@{DATASET}"), ("search", f"search@{KEY}"),
          ("train_best", f"train_best@{KEY}"), ("evaluate", f"evaluate@{KEY}"), ("promote", f"promote@{KEY}"),
          ("report", "report")]  # fmt: skip
DATA_STAGES = ("fetch", "preprocess")  # rerun and compared up to the data they write
GRACE_S = 1.0  # between SIGINT and SIGKILL
MOMENTS = {"search": "<?]"}  # interrupted when this shows: the first round's progress bar, as trial 0 starts
OUTPUTS = ("data", "studies", "results", "models", "metrics", "plots", "promotions", "reports")


def _env() -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TUNEBENCH_STORAGE", "TUNEBENCH_DEBUG"):
        env.pop(var, None)
    return env


def _new_project(dest: Path) -> Path:
    """The project's tracked files in `dest`, a git repository, with one benchmark of the tiny profile."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(("tests/", "notebooks/", "benchmarks/")):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = tiny_profile(yaml.safe_load((ROOT / "params.yaml").read_text()))
    params["datasets"] = {DATASET: params["datasets"][DATASET]}
    params["benchmarks"] = {KEY: params["benchmarks"][KEY]}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        sh(cmd, dest, _env() | git)
    return dest


def _stage_process(tree: psutil.Process, kind: str) -> psutil.Process | None:
    """The process under `tree` that runs the stage (`python -m pipeline <kind> ...`), if any."""
    try:
        children = tree.children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            argv = child.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "pipeline" in argv and kind in argv and "-c" not in argv:  # python itself, not `sh -c "..."`
            return child
    return None


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def repro(
    project: Path, args: list[str], kind: str, *, interrupt_at_cpu: float | None = None, interrupt_on: str | None = None
) -> dict:
    """Run `dvc repro ARGS` in its own process group, watching the process of stage `kind`.

    With `interrupt_at_cpu`, once that process has used so many CPU seconds (CPU time, unlike
    wall time, hardly depends on what else loads the machine), the group gets SIGINT (as Ctrl-C
    in a terminal) and, whatever still lives `GRACE_S` later, SIGKILL. With `interrupt_on`, the
    same as soon as the output shows that text.

    Returns:
        `cpu`: the stage's CPU seconds last seen, `interrupted`: whether the signal reached it
        while it ran, `rc`, `log`.
    """
    log = project.parent / f"{project.name}-{'-'.join(args) or 'all'}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["dvc", "repro", *args], cwd=project, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    cpu, interrupted, stage = 0.0, False, None
    try:
        tree = psutil.Process(proc.pid)
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            if stage is None or not stage.is_running():
                stage = _stage_process(tree, kind)
            if stage is not None:
                try:
                    cpu = max(cpu, _cpu(stage))
                except psutil.NoSuchProcess:
                    stage = None
            due = (interrupt_at_cpu is not None and cpu >= interrupt_at_cpu) or (
                interrupt_on is not None and interrupt_on in log.read_text(errors="replace")
            )
            if stage is not None and due:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
                interrupted = True
                try:
                    proc.wait(timeout=GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None or interrupted:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group, dvc or not
            except ProcessLookupError:
                pass
        proc.wait()
    return {"cpu": cpu, "interrupted": interrupted, "rc": proc.returncode, "log": log.read_text(errors="replace")}


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict:
    """The project before each stage (a copy per stage), the reference after all, each stage's CPU seconds."""
    root = tmp_path_factory.mktemp("interrupted")
    work = _new_project(root / "work")
    before, cpu = {}, {}
    for kind, target in STAGES:
        before[kind] = root / f"before-{kind}"
        shutil.copytree(work, before[kind], symlinks=True)
        run = repro(work, ["--single-item", target], kind)
        assert run["rc"] == 0, f"dvc repro {target} failed:\n{run['log'][-4000:]}"
        cpu[kind] = run["cpu"]
    return {"before": before, "reference": work, "cpu": cpu}


def interrupt_repro(before: Path, dest: Path, kind: str, cpu: float) -> dict:
    """A copy of `before` at `dest` whose `dvc repro` was interrupted in stage `kind` (at most 3 tries).

    The first try interrupts the stage at 70 % of its reference CPU time (a stage of `MOMENTS`:
    when its output shows that text); a stage that ended before that (it varies a little) is
    tried again from a fresh copy at half that.
    """
    for share in (0.7, 0.35, 0.15):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(before, dest, symlinks=True)
        moment = {"interrupt_on": MOMENTS[kind]} if kind in MOMENTS else {"interrupt_at_cpu": share * cpu}
        run = repro(dest, [], kind, **moment)
        if run["interrupted"]:
            return run
    raise AssertionError(f"stage {kind} always ended before it could be interrupted:\n{run['log'][-3000:]}")


# ---------------------------------------------------------------- what must be equal


def _files(project: Path) -> dict[str, str]:
    """Every output file (relative path) with its SHA-256 (of a data manifest: without its times)."""
    from pipeline.fileio import file_digest

    found = {}
    for top in OUTPUTS:
        for p in sorted((project / top).rglob("*")):
            name = str(p.relative_to(project))
            if p.name.endswith(".fetch-log.jsonl"):
                continue  # where and when each fetch ran, appended by every run (not a DVC output)
            if p.is_file():
                found[name] = file_digest(p)
            if name.startswith("data/") and p.name == "manifest.json":
                found[name] = json.dumps(_timeless(json.loads(p.read_text())), sort_keys=True)
    return found


def _timeless(data):
    """`data` without the times it records: a manifest's `*_at` and the hash of the raw manifest (which had
    times); metrics' and the leaderboard's wall-clock figures (`wall_s`, `*_at_s`: an interrupted run spends more)
    and when the best was reached (`*_at_epochs`: a retried trial finishes later, so the order differs)."""
    if isinstance(data, dict):
        return {k: _timeless(v) for k, v in data.items()
                if not k.endswith(("_at", "wall_s", "_at_s", "_at_epochs")) and k != "input_hashes"}  # fmt: skip
    if isinstance(data, list):
        return [_timeless(v) for v in data]
    return data


def _search_result(project: Path) -> dict:
    result = json.loads((project / "results" / "search" / f"{KEY}.json").read_text())

    def without_run(best: dict | None) -> dict | None:
        return best and {k: v for k, v in best.items() if k not in ("run_id", "trial")}  # a retry has a new number

    def same(r: dict) -> dict:  # an interrupted trial adds a failed one (not counted): compare the others
        kept = {k: without_run(v) if k == "best" else v for k, v in r.items() if k not in ("parent_run_id", "counts")}
        return kept | {"complete": r["counts"]["complete"], "pruned": r["counts"]["pruned"]}

    rounds = [same(r) for r in result["rounds"]]
    return {"rounds": rounds, "best": without_run(result["best"])}


def _metrics(project: Path) -> dict:
    metrics = json.loads((project / "metrics" / f"{KEY}.json").read_text())
    return _timeless({k: v for k, v in metrics.items() if k != "run_id"})


def _leaderboard(project: Path) -> list[dict]:
    with open(project / "reports" / "leaderboard.csv", newline="") as f:
        return [_timeless(row) for row in csv.DictReader(f)]


def _registry(project: Path) -> dict:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    rm = mlc.get_registered_model(NAME)
    versions = mlc.search_model_versions(f"name='{NAME}'")
    runs = {str(v.version): v.run_id for v in versions}
    assert len(set(runs.values())) == len(runs), f"a run registered twice: {runs}"
    history = [(h["version"], h["champion"], h["reason"]) for h in json.loads(rm.tags["alias_history"])]
    promotion = json.loads((project / "promotions" / f"{KEY}.json").read_text())
    model_run = json.loads((project / "models" / KEY / "info.json").read_text())["run_id"]
    assert promotion["run_id"] == model_run == runs[promotion["version"]], "the promotion is not of the model"
    return {"versions": sorted(runs), "aliases": {k: str(v) for k, v in rm.aliases.items()}, "history": history,
            "promotion": {k: v for k, v in promotion.items() if k != "run_id"}}  # fmt: skip


def _leftovers(project: Path) -> list[str]:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    found = [str(p) for pat in (".*.tmp-*", ".*.old", "*.part") for p in project.rglob(pat)]
    if (project / "mlflow.db").exists():
        mlc = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
        exps = [e.experiment_id for e in mlc.search_experiments(view_type=ViewType.ALL)]
        found += [f"run {r.info.run_name} RUNNING" for r in mlc.search_runs(exps, "attributes.status = 'RUNNING'")]
    return found


def _history(name: str) -> bool:
    """Whether output file `name` is a round's search history table (`plots/<b>/search/<k>-<round>.csv`)."""
    return name.startswith("plots/") and "/search/" in name and name.endswith(".csv")


def _comparable(project: Path, kind: str) -> dict:
    files = _files(project)
    if kind in DATA_STAGES:
        return {"files": {f: h for f, h in files.items() if f.startswith("data/")}}
    # files whose bytes carry run ids or times are compared by content below, the rest byte for byte
    volatile = ("models/", "metrics/", "promotions/", "results/", "studies/", "plots/", "reports/")
    return {
        "file names": sorted(files), "stable files": {f: h for f, h in files.items() if not f.startswith(volatile)},
        "plots": {f: h for f, h in files.items() if f.startswith("plots/") and f.endswith(".csv") and not _history(f)},
        # a retried trial finishes later, so a round's history holds the same trials in another order
        "search history": {f: sorted(tuple(row[1:]) for row in csv.reader((project / f).read_text().splitlines()))
                           for f in files if _history(f)},
        "leaderboard": _leaderboard(project),
        "search": _search_result(project), "metrics": _metrics(project), "registry": _registry(project),
    }  # fmt: skip


@pytest.fixture(scope="module")
def reference(snapshots) -> dict:
    project = snapshots["reference"]
    assert _leftovers(project) == []
    return {kind: _comparable(project, kind) for kind in ("fetch", "search")}


def _torn_dvc_lock(project: Path) -> bool:
    """True when `.dvc/tmp/rwlock` is unreadable: DVC rewrites it in place, so a SIGKILL that lands during
    that write (under load, the 1 s grace can end there) leaves it torn, which DVC then refuses."""
    lock = project / ".dvc" / "tmp" / "rwlock"
    try:
        json.loads(lock.read_text()) if lock.exists() else None
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("kind", [kind for kind, _ in STAGES])
def test_repro_interrupted_in_a_stage_then_rerun_equals_an_uninterrupted_run(snapshots, reference, tmp_path, kind):
    project = tmp_path / "proj"
    interrupted = interrupt_repro(snapshots["before"][kind], project, kind, snapshots["cpu"][kind])
    assert interrupted["rc"] != 0, interrupted["log"][-3000:]

    target = dict(STAGES)["preprocess"] if kind in DATA_STAGES else None
    if _torn_dvc_lock(project):  # DVC's own file, killed mid-write: DVC refuses, naming it; a user deletes it
        cmd = ["dvc", "repro", *([target] if target else [])]
        refused = subprocess.run(cmd, cwd=project, env=_env(), capture_output=True, text=True, timeout=600)
        assert refused.returncode != 0 and "rwlock" in refused.stdout + refused.stderr, refused.stderr[-2000:]
        (project / ".dvc" / "tmp" / "rwlock").unlink()
    proc = sh(["dvc", "repro", *([target] if target else [])], project, _env())
    assert "Traceback" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-4000:]
    status = sh(["dvc", "status", *([target] if target else [])], project, _env()).stdout
    assert "up to date" in status, f"outputs differ from dvc.lock after the rerun:\n{status}"
    assert _leftovers(project) == []
    expected = reference["fetch" if kind in DATA_STAGES else "search"]
    got = _comparable(project, kind)
    for part in expected:
        assert got[part] == expected[part], f"{part} differs from the uninterrupted run's"
    if kind not in DATA_STAGES:  # the model in place loads (its files match the hashes it was saved with)
        from pipeline.models import TrainedModel

        TrainedModel.load(project / "models" / KEY / "mlflow_model" / "artifacts" / "model")
