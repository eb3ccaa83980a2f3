"""Run-time failures of the stages as a user meets them: one `error:` line, the right exit code, no traceback.

A tiny project (scikit-learn's digits through PCA, the NumPy MLP, 3 trials of 1 epoch) is run
once through `search`, `train_best`, `evaluate` and `promote` by the real CLI; each test works
on a copy of it and breaks one thing: a stage's input missing or corrupt, a bad or dead Optuna
storage, a dead MLflow server, a read-only project, a search whose trials all fail, a worker
process that fails, and (with a real PostgreSQL) `dvc repro` with the studies in a database.

Trials are made to fail by a small driver (`FAILING_TRAIN`) that replaces the NumPy MLP's
`train` with one raising `ValueError` and then calls the real CLI, as the crash tests do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from pipeline.servers import free_port, pg_unavailable, postgres_server
from conftest import missing, numpy_digits_params

ROOT = Path(__file__).resolve().parents[2]
KEY = "digits_numpy_mlp"
PARAMS = numpy_digits_params(n_trials=3, epochs=1)
CLEAN_ENV = ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE", "TUNEBENCH_DEBUG", "TUNEBENCH_THREADS")

# Replaces the NumPy MLP's training with a failure (of epochs >= FAIL_FROM_EPOCH), then runs the real CLI.
FAILING_TRAIN = """
import sys
from pipeline.models import numpy_mlp
real = numpy_mlp.NumpyMLP.train
def train(self, hparams, *args, epochs, **kwargs):
    if epochs >= {fail_from}:
        raise ValueError(f"cannot train with lr={{hparams['lr']:.2e}}\\nsecond line of the message")
    return real(self, hparams, *args, epochs=epochs, **kwargs)
numpy_mlp.NumpyMLP.train = train
from pipeline.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def cli(*args: str, cwd: Path, timeout: float = 300, fail_from: int | None = None, **env: str):
    """Run the CLI (through `FAILING_TRAIN` when `fail_from` is given) with a clean environment plus `env`."""
    head = ["-m", "pipeline"] if fail_from is None else ["-c", FAILING_TRAIN.format(fail_from=fail_from)]
    return subprocess.run([sys.executable, *head, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def one_error(proc: subprocess.CompletedProcess, code: int | tuple[int, ...] = 1) -> str:
    """The single `error:` line of a failed command (asserting exit code, one such line, no traceback)."""
    out = proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode in (code if isinstance(code, tuple) else (code,)), f"exit {proc.returncode}:\n{out[-3000:]}"
    assert len(lines) == 1, f"expected one error line:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    assert "unexpected" not in lines[0], f"not a known failure: {lines[0]}"
    return lines[0]


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def _study_names(project: Path) -> list[str]:
    journal = project / "studies" / KEY / "optuna.journal"
    if not journal.exists():
        return []
    from pipeline.search.storage import open_storage

    return optuna.get_all_study_names(open_storage(f"journal:{journal}", KEY))


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """The tiny project after fetch, preprocess, search, train_best, evaluate and promote (one process)."""
    root = tmp_path_factory.mktemp("failures") / "proj"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    script = ("import sys\nfrom pipeline.__main__ import main\n"
              "for cmd in ('fetch', 'preprocess', 'search', 'train_best', 'evaluate', 'promote'):\n"
              "    assert main([cmd]) == 0, cmd\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env=_env(), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return root


@pytest.fixture
def proj(done, tmp_path) -> Path:
    return _copy(done, tmp_path / "proj")


# ---------------------------------------------------------------- missing and corrupt inputs


@pytest.mark.parametrize(("command", "remove", "names", "run"), [
    ("search", "data/processed", "data/processed/digits/manifest.json", "tunebench preprocess --dataset digits"),
    ("train_best", "results", f"results/search/{KEY}.json", f"tunebench search --benchmark {KEY}"),
    ("train_best", "data/processed", "data/processed/digits/manifest.json", "tunebench preprocess --dataset digits"),
    ("evaluate", "models", f"models/{KEY}/info.json", f"tunebench train_best --benchmark {KEY}"),
    ("promote", "metrics", f"metrics/{KEY}.json", f"tunebench evaluate --benchmark {KEY}"),
])  # fmt: skip
def test_a_stage_before_its_input_names_the_file_and_the_command_that_makes_it(proj, command, remove, names, run):
    shutil.rmtree(proj / remove)
    line = one_error(cli(command, cwd=proj))
    assert f"{names} is missing" in line and f"`{run}`" in line, line


def _flip(path: Path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("name", "damage", "what"), [
    ("features.npz", lambda p: _flip(p), "features.npz is corrupt"),
    ("labels.npz", lambda p: os.truncate(p, p.stat().st_size // 2), "labels.npz is corrupt"),
    ("transformer/transformer.npz", lambda p: _flip(p, 200), "transformer.npz is corrupt"),
    ("transformer/transformer.json", lambda p: p.unlink(), "transformer.json is missing"),
    ("manifest.json", lambda p: os.truncate(p, 40), "manifest.json is corrupt"),
])  # fmt: skip
def test_truncated_or_changed_processed_data_is_caught_before_the_search(proj, name, damage, what):
    shutil.rmtree(proj / "studies")
    damage(proj / "data" / "processed" / "digits" / name)
    line = one_error(cli("search", cwd=proj))
    assert what in line and "rerun `tunebench preprocess --dataset digits`" in line, line
    assert _study_names(proj) == []


def test_read_json_names_a_missing_or_malformed_file_and_its_stage(tmp_path):
    from pipeline import fileio
    from pipeline.errors import MissingInputError

    result = tmp_path / "results" / "search" / f"{KEY}.json"
    with pytest.raises(MissingInputError, match=rf"{result} is missing: run `tunebench search --benchmark {KEY}`"):
        fileio.read_json(result)
    result.parent.mkdir(parents=True)
    for text in ('{"best": ', "\xff\xfe", "[1, 2]"):
        result.write_bytes(text.encode("latin-1"))
        with pytest.raises(MissingInputError, match=rf"is corrupt .*rerun `tunebench search --benchmark {KEY}`"):
            fileio.read_json(result)
    other = tmp_path / "elsewhere.json"
    with pytest.raises(MissingInputError, match="run `dvc repro` first"):
        fileio.read_json(other)


def test_promote_refuses_metrics_of_another_model(proj):
    evaluated = proj / "results" / "evaluation" / f"{KEY}.json"
    evaluated.write_text(json.dumps(json.loads(evaluated.read_text()) | {"run_id": "0" * 32}))
    line = one_error(cli("promote", cwd=proj))
    assert "evaluates another model" in line and f"tunebench evaluate --benchmark {KEY}" in line


# ---------------------------------------------------------------- storage


@pytest.mark.parametrize("url", ["notaurl", "foo://bar", "foo://alice:s3cr3tpw@db.example/x", "journal:"])
@pytest.mark.parametrize("given", ["--storage", "TUNEBENCH_STORAGE"])
def test_a_bad_storage_url_is_one_line_naming_it_redacted_and_the_allowed_forms(proj, url, given):
    args, env = (["search", "--storage", url], {}) if given == "--storage" else (["search"], {"TUNEBENCH_STORAGE": url})
    before = _study_names(proj)
    proc = cli(*args, cwd=proj, **env)
    line = one_error(proc, (1, 2))  # 2 where the configuration check at load already refuses it
    assert "s3cr3tpw" not in proc.stdout + proc.stderr
    assert url.rpartition("@")[2] in line and given in line, line
    if proc.returncode == 1:  # refused when the storage opens: the allowed forms are listed
        assert "journal:<path>" in line and "sqlite:///<path>" in line and "postgresql://" in line, line
    assert _study_names(proj) == before


def test_a_dead_postgresql_fails_fast_without_the_password(proj):
    url = f"postgresql://tb:deadpw123@127.0.0.1:{free_port()}/tb"
    t0 = time.monotonic()
    proc = cli("search", cwd=proj, TUNEBENCH_STORAGE=url)
    took = time.monotonic() - t0
    line = one_error(proc)
    assert took < 15, f"took {took:.0f} s"
    assert "deadpw123" not in proc.stdout + proc.stderr
    assert "postgresql://***@127.0.0.1" in line and "database server is running" in line, line


# ---------------------------------------------------------------- tracking server


@pytest.mark.parametrize("command", ["search", "train_best", "evaluate", "promote"])
def test_a_dead_tracking_server_fails_within_seconds_before_any_study_or_run(proj, command):
    from mlflow.tracking import MlflowClient

    shutil.rmtree(proj / "studies")
    runs_before = len(MlflowClient(f"sqlite:///{proj / 'mlflow.db'}").search_runs(["0", "1"], max_results=1000))
    dead = f"http://bob:trk-secret@127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = cli(command, cwd=proj, timeout=120, MLFLOW_TRACKING_URI=dead)
    took = time.monotonic() - t0
    line = one_error(proc)
    assert took < 20, f"took {took:.0f} s"
    assert "trk-secret" not in proc.stdout + proc.stderr
    assert "http://***@127.0.0.1" in line and "MLFLOW_TRACKING_URI" in line, line
    assert _study_names(proj) == [] and not (proj / "studies").exists()
    assert len(MlflowClient(f"sqlite:///{proj / 'mlflow.db'}").search_runs(["0", "1"], max_results=1000)) == runs_before


def test_check_reachable_knows_local_stores():
    from pipeline import tracking
    from pipeline.errors import TrackingError

    tracking.check_reachable("sqlite:///mlflow.db")  # the working folder is writable
    tracking.check_reachable("sqlite:///:memory:")
    with pytest.raises(TrackingError, match=r"/proc/1 is not writable"):
        tracking.check_reachable("sqlite:////proc/1/sub/mlflow.db")
    with pytest.raises(TrackingError, match=r"postgresql://\*\*\*@127\.0\.0\.1:\d+/db .* refused"):
        tracking.check_reachable(f"postgresql://u:pw@127.0.0.1:{free_port()}/db", timeout=5)


# ---------------------------------------------------------------- read-only project


def _read_only(proj: Path, command: list[str]) -> list[str]:
    """`command` run so that `proj` cannot be written.

    As a normal user the project is made read-only (`chmod -R a-w`). Root ignores file modes, so
    as root the command runs in its own mount namespace where `proj` is a read-only bind mount
    (`unshare -m`; where that is not allowed, the test cannot run honestly and says so).
    """
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(proj)], check=True)
        return command
    # `cd` again after mounting: a working directory taken before the mount still sees the writable folder
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && cd "$0" && exec "$@"'
    probe = shutil.which("unshare") and subprocess.run(["unshare", "-m", "sh", "-c", script, str(proj), "true"],
                                                       capture_output=True, text=True)  # fmt: skip
    if not probe or probe.returncode != 0:
        missing(
            "running as root, where file modes do not stop writes, and `unshare -m` (for a read-only bind "
            "mount) is not allowed here"
        )
    return ["unshare", "-m", "sh", "-c", script, str(proj), *command]


@pytest.mark.parametrize(("command", "expected"), [
    ("search", ("mlflow.db is not writable",)),
    ("preprocess", ("permission denied", "read-only file system")),
])  # fmt: skip
def test_a_read_only_project_is_one_line(proj, command, expected):
    proc = subprocess.run(_read_only(proj, [sys.executable, "-m", "pipeline", command]), cwd=proj, env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    try:
        line = one_error(proc)
        assert any(e in line for e in expected), line
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(proj)], check=False)


# ---------------------------------------------------------------- searches without a completed trial


@pytest.mark.slow  # two searches through the CLI: over 10 s
def test_a_search_without_a_completed_trial_fails_with_the_reason_and_a_rerun_retries(proj):
    shutil.rmtree(proj / "studies")
    proc = cli("search", cwd=proj, fail_from=1)
    line = one_error(proc)
    assert f"{KEY}: no completed trial in round 1 (coarse)" in line, line
    assert "3 failed; most common reason (3 of 3): ValueError: cannot train with lr=" in line, line
    assert "second line of the message" in line and "fix the cause and rerun" in line, line
    reports = [x for x in proc.stderr.splitlines() if "failed with parameters" in x]
    assert len(reports) == 3, proc.stderr  # one line per failed trial, no traceback
    result = json.loads((proj / "results" / "search" / f"{KEY}.json").read_text())
    assert result["best"] is None and "no completed trial" in result["failure"]

    line = one_error(cli("train_best", cwd=proj))
    assert "no completed trial" in line and "ValueError" in line and "widen" not in line, line

    again = cli("search", cwd=proj)  # the cause is gone: the round runs its budget again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "running the round's budget again" in again.stderr
    from pipeline.search.storage import open_storage

    study = optuna.load_study(
        study_name=_study_names(proj)[0],
        storage=open_storage(f"journal:{proj / 'studies' / KEY / 'optuna.journal'}", KEY),
    )
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.FAIL) == 3 and states.count(optuna.trial.TrialState.COMPLETE) == 3
    assert json.loads((proj / "results" / "search" / f"{KEY}.json").read_text())["best"] is not None


def test_a_later_round_without_a_completed_trial_warns_and_keeps_the_earlier_best(proj):
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    raw["benchmarks"][KEY]["rounds"].append({"name": "fine", "n_trials": 2, "epochs": 2, "pruner": "none"})
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = cli("search", cwd=proj, fail_from=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"warning: {KEY}: no completed trial in round 2 (fine)" in proc.stderr
    result = json.loads((proj / "results" / "search" / f"{KEY}.json").read_text())
    assert result["best"]["round"] == "coarse"


def test_a_failing_worker_process_fails_the_search_with_its_error(tmp_path, monkeypatch):
    from pipeline.config import parse_params
    from pipeline.errors import SearchFailedError
    from pipeline.search.storage import open_storage
    from pipeline.search.execution.dispatch import run_workers
    from pipeline.search.execution.job import RoundJob

    monkeypatch.chdir(tmp_path)
    storage = open_storage(f"journal:{tmp_path / 'j.journal'}", KEY)
    study = optuna.create_study(study_name="s", storage=storage)
    bench = parse_params(PARAMS).benchmark(KEY)
    job = RoundJob(key=KEY, study="s", storage_url=f"journal:{tmp_path / 'j.journal'}", bench=bench,
                   rnd=bench.rounds[0], sampler="random", sampler_seed=0, space=dict(bench.space),
                   data_dir=tmp_path / "gone", tracking_uri="sqlite:///mlflow.db", log_models=False,
                   experiment_id="0", parent_run_id="x", tags={}, budget=2)  # fmt: skip
    with pytest.raises(SearchFailedError, match=r"2 search worker process\(es\) failed: workers 0, 1: .*gone"):
        run_workers(job, study, 2, None, 2, 0)


# ---------------------------------------------------------------- database storage under DVC


@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.dvc
def test_dvc_repro_with_postgresql_storage_leaves_the_studies_folder_and_no_password(tmp_path):
    if (why := pg_unavailable()) is not None:
        missing(why)
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "pipeline", proj / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore"):
        (proj / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, proj / f)
    (proj / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    env = _env(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
    )
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=proj, env=env, check=True, capture_output=True)
    with postgres_server() as pg:
        proc = subprocess.run(["dvc", "repro", f"search@{KEY}"], cwd=proj, env={**env, "TUNEBENCH_STORAGE": pg.url},
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        note = json.loads((proj / "studies" / KEY / "storage.json").read_text())
        assert note["kind"] == "postgresql" and note["url"] == pg.url.replace(f"{pg.user}:{pg.password}@", "***@")
        from pipeline.search.storage import open_storage

        storage = open_storage(pg.url, KEY)
        assert note["studies"] == optuna.get_all_study_names(storage)
        for name in note["studies"]:
            study = optuna.load_study(study_name=name, storage=storage)
            attrs = repr((study.user_attrs, [(t.user_attrs, t.params) for t in study.get_trials(deepcopy=False)]))
            assert pg.password not in attrs
    secret = pg.password.encode()
    assert pg.password not in proc.stdout + proc.stderr
    leaked = [str(p.relative_to(proj)) for p in proj.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaked == [], f"the database password is in {leaked}"
    assert (proj / "dvc.lock").is_file() and f"studies/{KEY}" in (proj / "dvc.lock").read_text()
