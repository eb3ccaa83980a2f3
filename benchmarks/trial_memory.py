"""Benchmark memory across many Keras trials of one search: does it leak, and what bounds it?

TensorFlow keeps memory across models built in one process (keras-tuner#873,
optuna#1178, tensorflow#36465). This script runs `--trials` tiny trials of
`keras_mlp` on scikit-learn's digits (PCA features, Dense 64-64-10, adam,
batch 64, `--epochs` epochs, no pruning, random sampler) through the real
search (`run_search`: journal storage, one MLflow run per trial with
per-epoch metrics, curves and the model), and samples the resident set size
(RSS, psutil) of the search's process tree every 0.25 s, noting it when the
study's finished-trial count reaches 1, `--every`, 2x`--every`, ... Each mode
is a fresh `run_search` in its own subprocess and project folder:

- `in_process`: every trial in one process, with the Keras session cleared
  before each fit and after each trial plus `gc.collect()` (the search before
  worker recycling; `TUNEBENCH_TRIALS_PER_PROCESS=0`);
- `baseline`: the same with both disabled (`keras.backend.clear_session` a
  no-op, `run_search(..., release_memory=False)`);
- `recycled`: the search as shipped: Keras trials in spawned worker processes
  of at most `memory.TRIALS_PER_PROCESS` trials (`--per-process` overrides).

Reported per mode: RSS growth of the training process between trial
`--every` and the last trial (MB), peak RSS of the largest process and of the
whole tree, and seconds per trial (the machine is shared: compare modes run
together, not across runs).

Usage: `python -m benchmarks.trial_memory [--trials 100] [--every 10] [--epochs 2]
[--modes in_process,baseline,recycled] [--per-process N] [--out benchmarks/results/trial_memory.json]`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import ROOT
from benchmarks.runner import Run, parser

KEY = "digits_keras_mlp"


def project_params(tmp: Path, trials: int, epochs: int) -> dict:
    """A one-benchmark `params.yaml`: digits with PCA, keras_mlp, one round of `trials` trials."""
    return {
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "log_models": True},
        "search": {"sampler": "random", "seed": 0, "workers": 1, "storage": None},
        "datasets": {"digits": {"source": "builtin", "preprocess": {
            "kind": "pca", "n_components": 0.95, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 42}}},
        "benchmarks": {KEY: {
            "dataset": "digits", "model": "keras_mlp",
            "hparams": {"units": 64, "depth": 2, "optimizer": "adam", "batch_size": 64},
            "space": {"lr": {"low": 1e-4, "high": 1e-1, "log": True}, "l2": {"low": 1e-7, "high": 1e-2, "log": True},
                      "dropout": {"low": 0.0, "high": 0.5}},
            "rounds": [{"name": "coarse", "n_trials": trials, "epochs": epochs, "pruner": "none"}],
        }},
    }  # fmt: skip


def child(mode: str, workdir: Path, trials: int) -> None:
    """Run the whole search in `workdir` (the body of one mode's subprocess)."""
    os.chdir(workdir)
    from pipeline.config import load_params  # noqa: PLC0415
    from pipeline.search.rounds import run_search  # noqa: PLC0415

    if mode == "baseline":
        from pipeline.models.keras_common import keras_module  # noqa: PLC0415

        keras_module().backend.clear_session = lambda *a, **k: None
    run_search(load_params("params.yaml"), KEY, n_trials=trials, release_memory=mode != "baseline")


def prepare(workdir: Path, trials: int, epochs: int) -> None:
    """Write params.yaml and build the digits features in `workdir` (in a subprocess: no TensorFlow here)."""
    import yaml  # noqa: PLC0415

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(project_params(workdir, trials, epochs), sort_keys=False))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for step in (["fetch", "--dataset", "digits"], ["preprocess", "--dataset", "digits"]):
        subprocess.run([sys.executable, "-m", "pipeline", *step], cwd=workdir, env=env, check=True,
                       capture_output=True)  # fmt: skip


def _finished_trials(workdir: Path, name: str, cache: dict) -> int:
    """Finished trials of study `name` in `workdir`'s journal (read-only; 0 until it exists)."""
    from optuna.storages import JournalStorage  # noqa: PLC0415
    from optuna.storages.journal import JournalFileBackend  # noqa: PLC0415

    journal = workdir / "studies" / KEY / "optuna.journal"
    if "storage" not in cache:
        if not journal.exists():
            return 0
        cache["storage"] = JournalStorage(JournalFileBackend(str(journal)))
    try:
        storage = cache["storage"]
        study_id = storage.get_study_id_from_name(name)
        return sum(1 for t in storage.get_all_trials(study_id, deepcopy=False) if t.state.is_finished())
    except Exception:  # noqa: BLE001 - study not created yet, or a line being written
        return 0


def measure(mode: str, root: Path, trials: int, every: int, epochs: int, per_process: int | None) -> dict:
    """Run one mode in a fresh project and subprocess, sampling its process tree's RSS."""
    import psutil  # noqa: PLC0415

    from pipeline.config import load_params  # noqa: PLC0415
    from pipeline.search.rounds import study_name  # noqa: PLC0415
    from pipeline.search.execution.memory import TRIALS_PER_PROCESS  # noqa: PLC0415

    workdir = root / mode
    prepare(workdir, trials, epochs)
    with contextlib.chdir(workdir):  # the study's name hashes the project's processed data
        name = study_name(load_params(workdir / "params.yaml"), KEY, 0)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TUNEBENCH_THREADS": "1",
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # fmt: skip
    for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE", "TUNEBENCH_TRIALS_PER_PROCESS"):
        env.pop(var, None)
    if mode in ("in_process", "baseline"):
        env["TUNEBENCH_TRIALS_PER_PROCESS"] = "0"
    elif per_process:
        env["TUNEBENCH_TRIALS_PER_PROCESS"] = str(per_process)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.trial_memory", "--child", mode, "--workdir",
                             str(workdir), "--trials", str(trials)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    top = psutil.Process(proc.pid)
    samples: list[dict] = []
    marks = [1, *range(every, trials + 1, every)]
    peak_tree = peak_proc = 0.0
    pids: set[int] = set()
    cache: dict = {}
    while proc.poll() is None:
        time.sleep(0.25)
        try:
            procs = [top, *top.children(recursive=True)]
            rss = {q.pid: q.memory_info().rss / 2**20 for q in procs}
        except psutil.Error:
            continue
        pids |= set(rss)
        tree, largest = sum(rss.values()), max(rss.values())
        peak_tree, peak_proc = max(peak_tree, tree), max(peak_proc, largest)
        done = _finished_trials(workdir, name, cache)
        while marks and done >= marks[0]:
            samples.append({"trial": marks.pop(0), "largest_process_rss_mb": round(largest, 1),
                            "tree_rss_mb": round(tree, 1), "processes": len(rss),
                            "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
    stderr = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{stderr[-4000:]}")
    seconds = time.perf_counter() - t0
    by = {s["trial"]: s["largest_process_rss_mb"] for s in samples}
    first_trial_s = next((s["seconds"] for s in samples if s["trial"] == 1), 0.0)
    return {
        "trials_per_process": (per_process or TRIALS_PER_PROCESS) if mode == "recycled" else trials,
        "samples": samples,
        f"growth_mb_{every}_to_{trials}": round(by[trials] - by[every], 1) if every in by and trials in by else None,
        "peak_largest_process_rss_mb": round(peak_proc, 1),
        "peak_tree_rss_mb": round(peak_tree, 1),
        "processes_seen": len(pids),
        "seconds": round(seconds, 1),
        "seconds_per_trial_after_first": round((seconds - first_trial_s) / max(1, trials - 1), 2),
        "load_average_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    run = Run("benchmarks.trial_memory", argv)
    ap = parser(__doc__, "trial_memory.json")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--modes", default="in_process,baseline,recycled", help="comma list of the modes above")
    ap.add_argument("--per-process", type=int, help="trials per worker process in the recycled mode")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, Path(args.workdir), args.trials)
        return 0

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    key = f"growth_mb_{args.every}_to_{args.trials}"
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="trial-memory-") as tmp:
        for mode in modes:
            run.progress(f"{mode}: {args.trials} trials of {KEY} ...")
            r = results[mode] = measure(mode, Path(tmp), args.trials, args.every, args.epochs, args.per_process)
            run.progress(f"{mode}: growth of the training process, trial {args.every} -> {args.trials}: {r[key]} MB; "
                         f"peak {r['peak_largest_process_rss_mb']} MB (tree {r['peak_tree_rss_mb']} MB); "
                         f"{r['seconds_per_trial_after_first']} s/trial")  # fmt: skip
    summary = {
        "benchmark": "trial_memory",
        "what": f"RSS of a search over {args.trials} keras_mlp trials on digits ({args.epochs} epochs each, "
                f"MLflow tracking and model logging on), noted at every {args.every} finished trials",
        "trials": args.trials, "every": args.every, "epochs": args.epochs, "modes": results,
    }  # fmt: skip
    growth = {m: r[key] for m, r in results.items()}
    if growth.get("in_process") and growth.get("baseline") is not None:
        summary["baseline_over_in_process_growth"] = round(growth["baseline"] / growth["in_process"], 2)
    if growth.get("in_process") and growth.get("recycled") is not None:
        summary["recycled_over_in_process_growth"] = round(growth["recycled"] / growth["in_process"], 2)
    if "in_process" in results and "recycled" in results:
        a, b = results["in_process"], results["recycled"]
        peak = "peak_largest_process_rss_mb"
        summary["recycled_peak_saving_mb"] = round(a[peak] - b[peak], 1)
        summary["recycled_time_ratio"] = round(b["seconds"] / a["seconds"], 2)
    run.save(args.out, summary)
    brief = {
        m: {
            key: r[key],
            "peak_largest_process_rss_mb": r["peak_largest_process_rss_mb"],
            "seconds_per_trial_after_first": r["seconds_per_trial_after_first"],
        }
        for m, r in results.items()
    }
    brief.update({k: v for k, v in summary.items() if k.startswith(("baseline_over", "recycled_"))})
    print(json.dumps(brief, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
