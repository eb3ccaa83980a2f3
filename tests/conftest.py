"""Shared fixtures: the project root, the shipped params, and a subprocess runner for the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Test files live in folders mirroring the package; they import the shared helpers here
# (`from conftest import ...`, `fixtures_datasets`, `browser`) from this folder.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True)
def _own_mlflow_uris(monkeypatch):
    """Each test starts without MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI and leaks none: MLflow's
    `set_tracking_uri` / `set_registry_uri` export them, which would point later CLI subprocesses
    at an earlier test's store."""
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(var, "")  # recorded, so the value before the test comes back afterwards
        monkeypatch.delenv(var)
    _forget_mlflow_globals(monkeypatch)


def _forget_mlflow_globals(mp: pytest.MonkeyPatch) -> None:
    """MLflow keeps the URIs `set_tracking_uri` / `set_registry_uri` gave in process globals too (ahead of the
    environment): an in-process stage of an earlier test must not point this one's default client elsewhere."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    mp.setattr(tracking_utils, "_tracking_uri", None)
    mp.setattr(registry_utils, "_registry_uri", None)


@pytest.fixture(autouse=True, scope="module")
def _no_mlflow_uris_in_module_fixtures():
    """The same for the fixtures a module builds once (projects made by CLI subprocesses): an in-process stage
    of an earlier module (`tracking.connect` calls `mlflow.set_tracking_uri`) may have exported the URIs."""
    mp = pytest.MonkeyPatch()
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        mp.setenv(var, "")
        mp.delenv(var)
    _forget_mlflow_globals(mp)
    yield
    mp.undo()


@pytest.fixture
def shipped_params() -> dict:
    """The shipped params.yaml as plain data (a fresh copy per test)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `python -m pipeline ARGS` in `cwd` and capture its output."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rounds_list(bench: dict) -> list[dict]:
    """A benchmark's `rounds` as a list of rounds with their `name` (the shipped profiles map name -> round)."""
    rounds = bench["rounds"]
    return [{"name": k, **v} for k, v in rounds.items()] if isinstance(rounds, dict) else list(rounds)


def cli_ok(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`run_cli` that must succeed (the assertion shows the end of its stderr)."""
    proc = run_cli(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """`tunebench ARGS` in this process and the current folder (the CLI's `main`: its argument parsing,
    params.yaml and error handling, without a new interpreter's imports): its exit code and stderr."""
    from pipeline.__main__ import main  # noqa: PLC0415

    code = main(list(args))
    return code, capsys.readouterr().err


def main_ok(capsys: pytest.CaptureFixture, *args: str) -> str:
    """`run_main` that must succeed (the assertion shows the end of its stderr); its stderr."""
    code, err = run_main(capsys, *args)
    assert code == 0, f"tunebench {' '.join(args)} exited {code}:\n{err[-3000:]}"
    return err


def stages_in_one_process(cwd: Path, *commands: str) -> None:
    """`tunebench COMMAND` for each of `commands` in turn (on every dataset or benchmark of params.yaml), all in
    one new process: a project prepared by the real CLI without an interpreter's start-up per stage."""
    script = "import sys\nfrom pipeline.__main__ import main\nfor c in sys.argv[1:]:\n    assert main([c]) == 0, c\n"
    proc = subprocess.run([sys.executable, "-c", script, *commands], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def tiny_profile(params: dict) -> dict:
    """Shrink the shipped default: 2 trials a round, 1-3 epochs, small data; the robust selection (top 2
    configurations once more) and the final seeds' interval (2 seeds) on their smallest sizes."""
    params = json.loads(json.dumps(params))
    params["datasets"]["rt_polarity"]["preprocess"]["max_rows"] = 1500
    params["datasets"]["rt_polarity"]["preprocess"]["num_words"] = 2000
    params["datasets"]["boston_housing"]["preprocess"]["kfold"] = 2
    for bench in params["benchmarks"].values():
        bench |= {"selection": {"top_k": 2, "repeats": 1}, "final_seeds": 2}
        for i, rnd in enumerate(bench["rounds"].values()):
            rnd["n_trials"] = 2
            rnd["epochs"] = 1 + i if bench["dataset"] != "boston_housing" else 2 + i
    return params


def sh(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def copy_tracked_files(dest: Path) -> Path:
    """Copy the project's tracked and untracked-but-not-ignored files into `dest`; return `dest`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()  # fmt: skip
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    return dest


def _on_project(item) -> bool:
    """Whether a test uses the session fixture `project` below (a `dvc repro`), not a module's own `project`."""
    return "project" in getattr(item, "fixturenames", ()) and not hasattr(item.module, "project")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, and before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    """A test on the session fixture `project` below (a `dvc repro`) must be marked `slow` and `dvc`. Under
    pytest-xdist (`--dist loadgroup`, scripts/test.sh), the tests that share a setup run in one worker."""
    bare = [
        i.nodeid for i in items if _on_project(i) and not (i.get_closest_marker("slow") and i.get_closest_marker("dvc"))
    ]
    if bare:
        raise pytest.UsageError(
            f"{bare[0]} uses the fixture `project` (dvc repro): mark it slow and dvc "
            f"(`pytestmark = [pytest.mark.slow, pytest.mark.dvc]`); {len(bare)} such tests"
        )
    if config.pluginmanager.hasplugin("xdist"):
        for item in items:
            if (group := _shared_setup(item)) is not None:
                item.add_marker(pytest.mark.xdist_group(group))


def _shared_setup(item) -> str | None:
    """The pytest-xdist group of a test that shares an expensive setup, made once per worker that runs it: every
    test on the session fixture `project` (one dvc repro), a module's tests on its own module-scoped fixtures (servers,
    searches). None: any worker may run it."""
    if _on_project(item):
        return "project"
    defs = item._fixtureinfo.name2fixturedefs  # the fixtures a test uses, as pytest resolved them
    if any(d[-1].scope != "function" and hasattr(item.module, name) for name, d in defs.items()):
        return item.nodeid.split("::")[0]
    return None


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the project in a new git repo, with the tiny profile, after one `dvc repro`."""
    dest = copy_tracked_files(tmp_path_factory.mktemp("e2e") / "proj")
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(tiny_profile(shipped), sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "3", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    env.pop("TUNEBENCH_STORAGE", None)
    sh(["git", "init", "-q"], dest, env)
    sh(["git", "add", "-A"], dest, env)
    sh(["git", "commit", "-qm", "init"], dest, env)
    proc = sh(["dvc", "repro"], dest, env)
    return dest, {"env": env, "first": proc}


@pytest.fixture
def server():
    """A loopback HTTP server for download tests (see `fixtures_datasets.start_server`)."""
    from fixtures_datasets import start_server, stop_server

    s = start_server()
    yield s
    stop_server(s)


def missing(reason: str) -> None:
    """A test's system dependency is absent: fail under CI (which installs it), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run should have installed it")
    pytest.skip(reason)


@contextlib.contextmanager
def postgres_and_mlflow() -> Iterator[tuple]:
    """PostgreSQL (role with a password) and an MLflow tracking server (`pipeline.servers`), for a module's
    `servers` fixture; skips (fails under CI) where PostgreSQL's server programs are missing."""
    from pipeline.servers import mlflow_server, pg_unavailable, postgres_server

    if (why := pg_unavailable()) is not None:
        missing(f"no PostgreSQL here: {why} (Debian package postgresql)")
    with postgres_server() as pg, mlflow_server() as ml:
        yield pg, ml


def numpy_digits_params(*, n_trials: int, epochs: int, log_models: bool | str = False, **search) -> dict:
    """A tiny params.yaml: `digits_numpy_mlp` (32 units) over lr, one round without pruning, on 600 digits (PCA 16);
    `search` adds search settings (e.g. `retry_s`)."""
    return {
        "tracking": {"uri": "sqlite:///mlflow.db", "log_models": log_models},
        "search": {"sampler": "random", "seed": 0, "workers": 1, "storage": None, **search},
        "promote": {"min_improvement": 0.0},
        "datasets": {"digits": {"source": "builtin", "preprocess": {
            "kind": "pca", "n_components": 16, "val_fraction": 0.25, "test_fraction": 0.2, "seed": 42,
            "max_rows": 600}}},
        "benchmarks": {"digits_numpy_mlp": {
            "dataset": "digits", "model": "numpy_mlp", "hparams": {"units": [32], "batch_size": 64},
            "space": {"lr": {"low": 1.0e-3, "high": 1.0e-1, "log": True}},
            "rounds": [{"name": "coarse", "n_trials": n_trials, "epochs": epochs, "pruner": "none"}]}},
    }  # fmt: skip


def digits_search_params(*, seed: int, hparams: dict, lr: tuple[float, float], rounds: list) -> dict:
    """A tiny params.yaml: digits (PCA, 600 rows) searched by `digits_keras_mlp` over lr and L2."""
    return {
        "tracking": {"uri": "sqlite:///mlflow.db", "log_models": True},
        "search": {"sampler": "random", "seed": seed, "workers": 1, "storage": None},
        "promote": {"min_improvement": 0.0},
        "datasets": {"digits": {"source": "builtin", "preprocess": {
            "kind": "pca", "n_components": 16, "val_fraction": 0.25, "test_fraction": 0.2, "seed": 42,
            "max_rows": 600}}},
        "benchmarks": {"digits_keras_mlp": {
            "dataset": "digits", "model": "keras_mlp", "hparams": hparams,
            "space": {"lr": {"low": lr[0], "high": lr[1], "log": True},
                      "l2": {"low": 1.0e-7, "high": 1.0e-4, "log": True}},
            "rounds": rounds}},
    }  # fmt: skip
