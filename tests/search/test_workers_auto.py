"""Workers and threads chosen from the machine (`search.workers: auto`), the search's first line, and warm
worker processes kept across rounds (same trials as one worker; killed or used-up processes replaced)."""

from __future__ import annotations

import copy
import os
import signal
import time

import optuna
import pytest
import yaml

from pipeline import stages, tracking
from pipeline.__main__ import main
from pipeline.config import RoundConfig, parse_params
from pipeline.search.execution import concurrency, worker_pool
from pipeline.search.storage import open_storage

KEY = "digits_numpy_mlp"
PARAMS: dict = {
    "tracking": {"uri": "sqlite:///mlflow.db", "log_models": False},
    "search": {"sampler": "random", "seed": 0, "workers": "auto", "storage": None},
    "promote": {"min_improvement": 0.0},
    "datasets": {"digits": {"source": "builtin", "preprocess": {
        "kind": "pca", "n_components": 16, "val_fraction": 0.25, "test_fraction": 0.2, "seed": 42, "max_rows": 600}}},
    "benchmarks": {KEY: {
        "dataset": "digits", "model": "numpy_mlp", "hparams": {"units": [16], "batch_size": 64},
        "space": {"lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True},
                  "l2": {"low": 1.0e-7, "high": 1.0e-2, "log": True}},
        "rounds": [{"name": "coarse", "n_trials": 4, "epochs": 1, "pruner": "none"},
                   {"name": "fine", "n_trials": 2, "epochs": 1, "pruner": "none", "top_quantile": 0.5}]}},
}  # fmt: skip


def _round(sampler=None, pruner="median", n_trials=8) -> RoundConfig:
    return RoundConfig(name="r", n_trials=n_trials, epochs=2, pruner=pruner, sampler=sampler)


@pytest.fixture(autouse=True)
def _no_thread_override(monkeypatch):
    monkeypatch.delenv("TUNEBENCH_THREADS", raising=False)


# --- the choice -------------------------------------------------------------------------------------


def test_auto_keeps_reproducible_rounds_to_one_worker_with_every_core_as_threads():
    c = concurrency.choose("auto", model="keras_mlp", input_shape=(10000,), rounds=[_round(), _round()],
                        sampler="tpe", n_cores=2)  # fmt: skip
    assert (c.workers, c.threads) == (1, 2)
    assert c.line("rt_polarity", verbose=True).startswith("search rt_polarity: 1 worker x 2 threads (auto: 2 cores;")
    assert c.line("rt_polarity", verbose=False) == "search rt_polarity: 1 worker x 2 threads"  # the why: --verbose
    assert "reproducible" in c.why and "--workers N" in c.why


def test_auto_runs_order_free_rounds_of_a_small_model_in_parallel_up_to_the_trials_of_a_round():
    free = [_round("random", "none", 8), _round("grid", "none", 3)]
    c = concurrency.choose("auto", model="keras_mlp", input_shape=(28,), rounds=free, sampler="tpe", n_cores=2)
    assert (c.workers, c.threads) == (2, 1)
    assert c.line("b", verbose=True) == "search b: 2 workers x 1 thread (auto: 2 cores, parallel trials)"
    c = concurrency.choose("auto", model="numpy_mlp", input_shape=(28,), rounds=free, sampler="tpe", n_cores=8)
    assert (c.workers, c.threads) == (3, 2), "no more workers than a round's trials; the cores split among them"
    tpe_later = [_round("random", "none", 8), _round(None, "none", 8)]  # the second round samples with tpe
    assert concurrency.choose("auto", model="keras_mlp", input_shape=(28,), rounds=tpe_later, sampler="tpe",
                           n_cores=4).workers == 1  # fmt: skip


def test_auto_gives_a_big_model_threads_rather_than_workers():
    free = [_round("random", "none", 8)]
    cnn = concurrency.choose("auto", model="keras_cnn", input_shape=(28, 28, 1), rounds=free, sampler="random",
                             n_cores=4)  # fmt: skip
    big = concurrency.choose("auto", model="keras_mlp", input_shape=(320, 320), rounds=free, sampler="random",
                             n_cores=4)  # fmt: skip
    assert (cnn.workers, cnn.threads) == (big.workers, big.threads) == (1, 4)
    assert "big model" in cnn.why


def test_workers_set_by_hand_and_tunebench_threads_override_auto(monkeypatch):
    c = concurrency.choose(2, model="keras_cnn", input_shape=(28, 28, 1), rounds=[_round()], sampler="tpe", n_cores=2)
    assert (c.workers, c.threads) == (2, 1) and "set by --workers or search.workers" in c.why
    monkeypatch.setenv("TUNEBENCH_THREADS", "3")
    c = concurrency.choose("auto", model="keras_mlp", input_shape=(28,), rounds=[_round()], sampler="tpe", n_cores=2)
    assert (c.workers, c.threads) == (1, 3) and c.why.endswith("threads from TUNEBENCH_THREADS")
    assert concurrency.threads_for(2, 8) == 3


def test_params_yaml_accepts_auto_or_a_positive_number_only():
    assert parse_params(PARAMS).search.workers == "auto"
    assert parse_params({**PARAMS, "search": {**PARAMS["search"], "workers": 3}}).search.workers == 3
    for bad in (0, "many", True):
        with pytest.raises(Exception, match="search.workers"):
            parse_params({**PARAMS, "search": {**PARAMS["search"], "workers": bad}})


# --- warm worker processes -----------------------------------------------------------------------------


def _echo(conn, board=None) -> None:
    """A pool target: answers every job with None until told to stop."""
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        conn.send(None)


def _answered(warm: worker_pool.Warm, limit: float = 60.0) -> object:
    t0 = time.monotonic()
    while (report := warm.report()) is worker_pool.BUSY and time.monotonic() - t0 < limit:
        time.sleep(0.05)
    return report


def test_a_slot_keeps_its_process_until_it_dies_runs_out_of_trials_or_wants_other_threads():
    p = worker_pool.WorkerPool(_echo)
    try:
        first = p.submit(0, ("job",), threads=1, trials=2, per_process=5)
        assert _answered(first) is None
        pid = first.proc.pid
        assert p.submit(0, ("job",), threads=1, trials=3, per_process=5).proc.pid == pid, "kept warm"
        assert _answered(p.slots[0]) is None
        used_up = p.submit(0, ("job",), threads=1, trials=1, per_process=5)
        assert used_up.proc.pid != pid and _answered(used_up) is None, "5 trials run: a fresh process"
        other = p.submit(0, ("job",), threads=2, trials=1, per_process=5)
        assert other.proc.pid != used_up.proc.pid and _answered(other) is None
        os.kill(other.proc.pid, signal.SIGKILL)
        other.proc.join(30)
        again = p.submit(0, ("job",), threads=2, trials=1, per_process=5)
        assert again.proc.pid != other.proc.pid and _answered(again) is None, "a dead process is replaced"
        procs = [w.proc for w in p.slots.values()]
    finally:
        p.close()
    assert all(not proc.is_alive() for proc in procs) and not p.slots


EARLY_START = """
import sys, time
from multiprocessing import forkserver
from pathlib import Path
from pipeline.search.execution import fork_server, worker_pool
marker = Path(sys.argv[1])
with fork_server.keep_warm():
    worker_pool.current().preload(["marker_on_import"], start=True)
    t0 = time.monotonic()
    while not marker.exists() and time.monotonic() - t0 < 60:  # no worker asked for: only the fork server imports it
        time.sleep(0.1)
    print(forkserver._forkserver._forkserver_pid is not None, marker.exists())
"""


def test_a_parallel_search_starts_its_fork_server_before_any_worker_is_asked_for(tmp_path):
    """Its imports (TensorFlow for Keras) then overlap the launcher's set-up (`fork_server.start_early`)."""
    import subprocess
    import sys
    from pathlib import Path

    marker = tmp_path / "imported"
    (tmp_path / "marker_on_import.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    out = subprocess.run([sys.executable, "-c", EARLY_START, str(marker)], env=env, capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    assert out.stdout.split() == ["True", "True"], out.stderr


INTERRUPT_EARLY_START = """
import os, signal, time
from multiprocessing import forkserver
from pipeline.search.execution import fork_server
with fork_server.keep_warm():
    fork_server.start_early("keras_mlp")  # the fork server imports the worker code and TensorFlow (seconds)
    pid = forkserver._forkserver._forkserver_pid
    time.sleep(0.5)
    try:
        os.killpg(0, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
        time.sleep(5)
    except KeyboardInterrupt:
        pass
    t0 = time.monotonic()
    while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    print("alive" if status[0] == 0 else (os.WEXITSTATUS(status[1]) if os.WIFEXITED(status[1]) else "signal"))
"""


def test_ctrl_c_while_the_fork_server_imports_ends_it_without_a_traceback(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", INTERRUPT_EARLY_START], env={**os.environ, "PYTHONPATH": str(root)},
                         capture_output=True, text=True, timeout=120, start_new_session=True)  # fmt: skip
    assert "Traceback" not in out.stderr and "KeyboardInterrupt" not in out.stderr, out.stderr
    assert out.stdout.split() in (["130"], ["signal"]), (out.stdout, out.stderr)  # ended (signal: before Python ran)


# --- a real search -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("auto-base")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        params = parse_params(PARAMS)
        stages.fetch(params, "digits")
        stages.preprocess(params, "digits")
        tracking.client(f"sqlite:///{base / 'mlflow.db'}").search_experiments()  # creates the tables (slow)
    finally:
        os.chdir(cwd)
    return base


def _search(root, data_dir, monkeypatch, capsys, *args: str) -> tuple[str, list[list[optuna.trial.FrozenTrial]]]:
    import shutil

    root.mkdir()
    shutil.copytree(data_dir / "data", root / "data")
    shutil.copy2(data_dir / "mlflow.db", root / "mlflow.db")
    (root / "params.yaml").write_text(yaml.safe_dump(copy.deepcopy(PARAMS), sort_keys=False))
    monkeypatch.chdir(root)
    capsys.readouterr()
    assert main(["search", "--benchmark", KEY, *args]) == 0
    err = capsys.readouterr().err
    storage = open_storage(None, KEY)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    return err, [optuna.load_study(study_name=n, storage=storage).get_trials() for n in names]


@pytest.mark.slow  # two searches, one with 2 worker processes: over 10 s
def test_two_warm_workers_run_every_round_and_find_what_one_worker_finds(tmp_path, data_dir, monkeypatch, capsys):
    err, _ = _search(tmp_path / "auto", data_dir, monkeypatch, capsys)
    rounds = parse_params(PARAMS).benchmark(KEY).rounds
    auto = concurrency.choose("auto", model="numpy_mlp", input_shape=(16,), rounds=rounds, sampler="random")
    assert auto.workers == min(2, concurrency.cores()) and err.splitlines()[0] == auto.line(KEY)
    err1, one = _search(tmp_path / "one", data_dir, monkeypatch, capsys, "--workers", "1")
    assert err1.splitlines()[0].startswith(f"search {KEY}: 1 worker x ")
    err2, two = _search(tmp_path / "two", data_dir, monkeypatch, capsys, "--workers", "2")
    assert err2.splitlines()[0].startswith(f"search {KEY}: 2 workers x ")

    def done(trials):
        return sorted((t.params["lr"], t.params["l2"]) for t in trials if t.state.name == "COMPLETE")

    assert [len(r) for r in two] == [4, 2] and [done(r) for r in two] == [done(r) for r in one]
    pids = [{t.user_attrs["worker"]["pid"] for t in r} for r in two]
    assert len(pids[0] | pids[1]) == 2 and os.getpid() not in pids[0], "two processes, kept warm for round 2"
