"""Benchmark memory across many Keras trials in one process: does the search leak?

TensorFlow keeps memory across models built in one process (keras-tuner#873,
optuna#1178, tensorflow#36465). The search clears the Keras session before
every fit (the Keras families) and after every trial, then collects garbage
(`pipeline.search.runner.release_memory`). This script runs `--trials` tiny
trials of `keras_mlp` on scikit-learn's digits (PCA features, Dense 64-64-10,
adam, batch 64, `--epochs` epochs, no pruning, random sampler) through the
real search path (`run_search`: journal storage, one MLflow run per trial with
per-epoch metrics, curves and the model) and records the process's resident
set size (RSS, psutil) after every `--every` trials. Each mode runs in its
own fresh subprocess:

- `release`: the search as shipped (clear_session before each fit and after
  each trial, plus `gc.collect()`);
- `baseline`: the same with both disabled (`keras.backend.clear_session`
  made a no-op, `runner.RELEASE_MEMORY = False`);
- `chunked` (with `--chunk N`): the shipped search resumed in a fresh
  process every N trials, as one spawned process per N trials would run.

The headline figure is the RSS growth between trial `--every` and the last
trial (MB), and the ratio baseline/release of those growths.

Usage: `python benchmarks/trial_memory.py [--trials 100] [--every 10] [--epochs 2]
[--modes release,baseline] [--chunk 0] [--out benchmarks/results/trial_memory.json]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEY = "digits_keras_mlp"


def project_params(tmp: Path, trials: int, epochs: int) -> dict:
    """A one-benchmark `params.yaml`: digits with PCA, keras_mlp, one round of `trials` trials."""
    return {
        "profile": "trial-memory",
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


def rss_mb() -> float:
    """This process's resident set size in MB."""
    import psutil  # noqa: PLC0415

    return psutil.Process().memory_info().rss / 2**20


def child(mode: str, workdir: Path, upto: int, every: int) -> dict:
    """Run the search in `workdir` until `upto` trials exist, recording RSS every `every` trials."""
    os.chdir(workdir)
    from pipeline.config import load_params  # noqa: PLC0415
    from pipeline.models.keras_common import keras_module  # noqa: PLC0415
    from pipeline.search import runner  # noqa: PLC0415

    keras = keras_module()
    if mode == "baseline":
        keras.backend.clear_session = lambda *a, **k: None
        runner.RELEASE_MEMORY = False
    samples: list[dict] = []
    start = time.perf_counter()
    state = {"done": 0}

    def record(study, trial) -> None:
        state["done"] += 1
        if trial.number + 1 == 1 or (trial.number + 1) % every == 0:
            samples.append({"trial": trial.number + 1, "rss_mb": round(rss_mb(), 1),
                            "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip

    original = runner.optimize

    def optimize(study, ctx, *, n_trials, timeout, callbacks=None):
        return original(study, ctx, n_trials=n_trials, timeout=timeout, callbacks=[*(callbacks or []), record])

    runner.optimize = optimize
    before = rss_mb()
    runner.run_search(load_params("params.yaml"), "params.yaml", KEY, n_trials=upto)
    return {"mode": mode, "rss_before_trials_mb": round(before, 1), "samples": samples, "trials_here": state["done"],
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def prepare(workdir: Path, trials: int, epochs: int) -> None:
    """Write params.yaml and build the digits features in `workdir` (in a subprocess: no TensorFlow here)."""
    import yaml  # noqa: PLC0415

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(project_params(workdir, trials, epochs), sort_keys=False))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for step in (["fetch", "--dataset", "digits"], ["preprocess", "--dataset", "digits"]):
        subprocess.run([sys.executable, "-m", "pipeline", *step], cwd=workdir, env=env, check=True,
                       capture_output=True)  # fmt: skip


def run_child(mode: str, workdir: Path, upto: int, every: int) -> dict:
    """Run `child` in a fresh interpreter and return its JSON."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TUNEBENCH_THREADS": "1",
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("TUNEBENCH_STORAGE", None)
    out = workdir / f".child-{mode}-{upto}.json"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--workdir", str(workdir), "--upto", str(upto),
         "--every", str(every), "--child-out", str(out)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def growth(samples: list[dict], first: int, last: int) -> float | None:
    """RSS difference (MB) between the samples at trial `first` and `last`."""
    by = {s["trial"]: s["rss_mb"] for s in samples}
    return round(by[last] - by[first], 1) if first in by and last in by else None


def measure(mode: str, root: Path, trials: int, every: int, epochs: int, chunk: int) -> dict:
    """One mode: a fresh project, its trials in one process (or in fresh processes of `chunk` trials)."""
    workdir = root / mode
    prepare(workdir, trials, epochs)
    t0 = time.perf_counter()
    if mode != "chunked":
        res = run_child(mode, workdir, trials, every)
        samples = res["samples"]
        extra = {"rss_before_trials_mb": res["rss_before_trials_mb"]}
    else:
        samples, parts = [], []
        for upto in range(chunk, trials + chunk, chunk):
            res = run_child("release", workdir, min(upto, trials), every)
            samples += res["samples"]
            parts.append({"upto": min(upto, trials), "rss_before_trials_mb": res["rss_before_trials_mb"],
                          "samples": res["samples"]})  # fmt: skip
        extra = {"chunk": chunk, "processes": parts}
    seconds = time.perf_counter() - t0
    samples = sorted({s["trial"]: s for s in samples}.values(), key=lambda s: s["trial"])
    return {
        "samples": samples,
        f"growth_mb_{every}_to_{trials}": growth(samples, every, trials),
        "peak_rss_mb": max(s["rss_mb"] for s in samples),
        "seconds": round(seconds, 1),
        "seconds_per_trial": round(seconds / trials, 2),
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--modes", default="release,baseline", help="comma list of release, baseline, chunked")
    ap.add_argument("--chunk", type=int, default=25, help="trials per process in the chunked mode")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "trial_memory.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--upto", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        res = child(args.child, Path(args.workdir), args.upto, args.every)
        Path(args.child_out).write_text(json.dumps(res))
        return 0

    from importlib.metadata import version  # noqa: PLC0415

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    key = f"growth_mb_{args.every}_to_{args.trials}"
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="trial-memory-") as tmp:
        for mode in modes:
            print(f"{mode}: {args.trials} trials of {KEY} ...", file=sys.stderr, flush=True)
            results[mode] = measure(mode, Path(tmp), args.trials, args.every, args.epochs, args.chunk)
            print(f"{mode}: RSS growth trial {args.every} -> {args.trials}: {results[mode][key]} MB, "
                  f"peak {results[mode]['peak_rss_mb']} MB, {results[mode]['seconds']} s", file=sys.stderr)  # fmt: skip
    summary = {
        "benchmark": "trial_memory",
        "what": f"RSS of one search process over {args.trials} keras_mlp trials on digits "
                f"({args.epochs} epochs each, MLflow tracking and model logging on), sampled every {args.every}",
        "trials": args.trials, "every": args.every, "epochs": args.epochs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "keras": version("keras"), "tensorflow": version("tensorflow-cpu"),
                    "optuna": version("optuna"), "mlflow": version("mlflow")},
        "modes": results,
    }  # fmt: skip
    rel = results.get("release", {}).get(key)
    base = results.get("baseline", {}).get(key)
    if rel is not None and base is not None:
        summary["baseline_over_release_growth"] = round(base / rel, 2) if rel > 0 else None
        summary["growth_saved_mb"] = round(base - rel, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    brief = {m: {key: r[key], "peak_rss_mb": r["peak_rss_mb"], "seconds_per_trial": r["seconds_per_trial"]}
             for m, r in results.items()}  # fmt: skip
    brief.update({k: summary[k] for k in ("baseline_over_release_growth", "growth_saved_mb") if k in summary})
    print(json.dumps(brief, indent=2))
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
