"""Benchmark the per-trial cost of MLflow tracking against the same trials untracked.

For the default benchmarks' Keras models (digits: PCA features into Dense 64-64-10;
rt_polarity: 10,000-word multi-hot into Chollet's Dense 16-16-1), it runs the real
trial objective (`pipeline.search.objective.run_trial`, one Optuna study on a journal
file, the same fixed hyperparameters every time, no pruning: every trial completes and
logs its model) in three variants, interleaved so that drift in the machine's load
hits all of them alike:

* `untracked`: `TrialRun` and `log_params` replaced by no-ops (no MLflow at all);
* `folder`: tracked into a fresh SQLite store, the model logged as the `TrainedModel` folder;
* `keras`: the same with the MLflow Keras flavor as well (signature, input example).

It does so at the epochs of each round of `params.yaml` (the coarse round's short trials
are the worst case). Each variant first runs one warm-up trial (imports, first connection:
paid once per worker process, reported as `cold_extra_s`). Reported per benchmark and round:
`in_tracking_ratio`, the verdict: the median over tracked trials of the seconds measured
inside the tracking calls (`TrialRun.timings`, `log_params`) over the rest of the same trial
(load from other processes weighs on both, so this is the steadiest figure on a shared machine),
the median wall and CPU seconds per trial and their overhead ratios `(tracked - untracked)
/ untracked`, and per benchmark the in-tracking ratio of its whole default search (each
round's trial budget at its measured cost). Goal: < 5 % of trial time.

Data: `data/processed/<dataset>` of the project (or `--data DIR`) when present; otherwise
digits is built from scikit-learn's copy and rt_polarity replaced by a synthetic multi-hot
matrix of the same shape (8,196 x 10,000, ~17 words a snippet, Zipf ranks), which the JSON says.

Usage: `python -m benchmarks.tracking_overhead [--trials 6] [--epochs N] [--out FILE.json]`
(default output: `benchmarks/results/tracking_overhead.json`).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TUNEBENCH_THREADS", "1")  # as `tunebench search` with one worker
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from benchmarks import ROOT  # noqa: E402
from benchmarks.runner import Run, parser  # noqa: E402
from pipeline import tracking  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.models import get_family  # noqa: E402
from pipeline.search.objective import TrialContext, run_trial  # noqa: E402

BENCHMARKS = ("digits_keras_mlp", "rt_polarity_keras_mlp")
VARIANTS = ("untracked", "folder", "keras")
GOAL = 0.05


class _NullRun:
    """What `run_trial` sees when nothing is tracked."""

    def __init__(self, *args, **kwargs):
        self.run_id = "untracked"
        self.timings: dict[str, float] = {}

    def log_epoch(self, epoch, logs) -> None:
        pass

    def finish(self, *args, **kwargs) -> None:
        pass


@contextmanager
def _variant(name: str, seen: dict):
    """Patch the tracking layer for one variant; a tracked run's `timings` land in `seen["timings"]`.

    A tracked variant's name is the `model_format` its trial runs get.
    """
    real_run, real_params = tracking.TrialRun, tracking.log_params

    class Spy(real_run):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs, model_format=name)
            seen["timings"] = self.timings

    def timed_params(*args, **kwargs):
        t0 = time.perf_counter()
        real_params(*args, **kwargs)
        seen["timings"]["params"] = time.perf_counter() - t0

    try:
        if name == "untracked":
            tracking.TrialRun, tracking.log_params = _NullRun, lambda *a, **k: None
        else:
            tracking.TrialRun, tracking.log_params = Spy, timed_params
        yield
    finally:
        tracking.TrialRun, tracking.log_params = real_run, real_params


def _synthetic_multi_hot(seed: int = 0) -> SimpleNamespace:
    """An rt_polarity-shaped binary multi-hot dataset (CSR float32) whose labels depend on the words."""
    rng = np.random.default_rng(seed)
    n_words, rows = 10_000, 8_196 + 2_050
    cdf = np.cumsum(1.0 / np.arange(1, n_words + 1))
    lengths = np.clip(rng.poisson(17, rows), 3, 60)
    cols = np.searchsorted(cdf / cdf[-1], rng.random(int(lengths.sum())))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    X = sp.csr_matrix((np.ones(len(cols), np.float32), cols, indptr), shape=(rows, n_words))
    X.sum_duplicates()
    X.data[:] = 1.0
    w = rng.normal(size=n_words).astype(np.float32)
    y = ((X @ w) + rng.normal(scale=1.0, size=rows) > 0).astype(np.int64)
    return SimpleNamespace(task="binary", n_classes=2, folds=None, X_train=X[:8196], y_train=y[:8196],
                           X_val=X[8196:], y_val=y[8196:])  # fmt: skip


def _load_data(params, dataset: str, data_root: Path, work: Path):
    """Processed data of `dataset`, and where it came from."""
    from pipeline import datasets, features  # noqa: PLC0415
    from pipeline.features import ProcessedData  # noqa: PLC0415

    if (data_root / dataset / "manifest.json").is_file():
        return ProcessedData.load(data_root / dataset), f"real: `tunebench preprocess` output in {data_root / dataset}"
    if dataset == "digits":
        raw_dir = work / "raw" / dataset
        datasets.fetch(dataset, raw_dir, progress=False)
        raw = datasets.load(dataset, raw_dir)
        cfg = params.dataset(dataset).preprocess.model_dump()
        return features.preprocess(raw, cfg), "scikit-learn digits, preprocessed here (real)"
    return _synthetic_multi_hot(), "synthetic multi-hot of rt_polarity's shape (data/processed/rt_polarity absent)"


def _fixed_point(space) -> dict:
    """The middle of every range (geometric for log ranges): the same configuration for every trial."""
    out = {}
    for name, r in space.items():
        if not r.is_numeric:
            out[name] = r.choices[0]
        elif r.log:
            out[name] = float(np.sqrt(r.low * r.high))
        else:
            out[name] = (r.low + r.high) / 2
        if r.is_numeric and r.int:
            out[name] = int(round(out[name]))
    return out


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def bench_round(params, key: str, data, *, epochs: int, trials: int, work: Path, label: str) -> dict:
    """Measure the three variants of one benchmark at one round's epochs; returns its JSON section."""
    bench = params.benchmark(key)
    mlc = tracking.client(f"sqlite:///{work / 'mlflow.db'}")
    exp = tracking.ensure_experiment(mlc, tracking.experiment_name(key, bench.dataset, bench.model))
    parent = tracking.start_run(mlc, exp, f"{key}.{label}.overhead", tags={"kind": "benchmark"})
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(work / f"{key}.journal")))
    study = optuna.create_study(study_name=f"{key}.{label}", storage=storage, direction="maximize",
                                pruner=optuna.pruners.NopPruner())  # fmt: skip
    fixed = _fixed_point(bench.space)
    ctx = TrialContext(
        family=get_family(bench.model), data=data, space=dict(bench.space), fixed=bench.hparams, epochs=epochs,
        seed=bench.seed, mlc=mlc, experiment_id=exp, parent_run_id=parent, tags={"benchmark": key},
        log_models=True,
    )  # fmt: skip
    rows: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    cold: dict[str, dict] = {}

    def one(variant: str) -> dict:
        seen: dict = {}
        out: dict = {}

        def objective(trial):
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return run_trial(trial, ctx)
            finally:
                out["wall"], out["cpu"] = time.perf_counter() - w0, time.process_time() - c0

        with _variant(variant, seen):
            study.enqueue_trial(fixed)
            study.optimize(objective, n_trials=1)
        t = seen.get("timings", {})
        out["in_tracking"] = sum(t.get(k, 0.0) for k in ("start", "params", "epochs", "finish"))
        out["phases"] = {k: round(v, 4) for k, v in t.items()}
        return out

    for v in VARIANTS:  # warm-up: tracing, imports, first connection
        cold[v] = one(v)
    for i in range(trials):
        order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]  # rotate who goes first
        for v in order:
            rows[v].append(one(v))
        print(f"  {key} {label} ({epochs} epochs) {i + 1}/{trials}: "
              + ", ".join(f"{v} {rows[v][-1]['wall']:.2f}s" for v in VARIANTS), flush=True)  # fmt: skip
    mlc.set_terminated(parent)

    base_wall = _median([r["wall"] for r in rows["untracked"]])
    base_cpu = _median([r["cpu"] for r in rows["untracked"]])
    section: dict = {
        "epochs": epochs,
        "trials_per_variant": trials,
        "untracked": {
            "wall_s_median": round(base_wall, 4),
            "cpu_s_median": round(base_cpu, 4),
            "wall_s": [round(r["wall"], 4) for r in rows["untracked"]],
        },
    }
    for v in ("folder", "keras"):
        wall, cpu = _median([r["wall"] for r in rows[v]]), _median([r["cpu"] for r in rows[v]])
        inside = _median([r["in_tracking"] for r in rows[v]])
        # each tracked trial's tracking time over its own training time: load from other processes
        # during that trial weighs on both, so drift between trials cancels out
        own = _median([r["in_tracking"] / (r["wall"] - r["in_tracking"]) for r in rows[v]])
        paired = _median([(r["wall"] - u["wall"]) / u["wall"] for r, u in zip(rows[v], rows["untracked"])])
        phases = {k: round(_median([r["phases"].get(k, 0.0) for r in rows[v]]), 4) for k in rows[v][0]["phases"]}
        section[v] = {
            "in_tracking_ratio": round(own, 4),
            "in_tracking_s_median": round(inside, 4),
            "in_tracking_over_untracked_median": round(inside / base_wall, 4),
            "phases_s_median": phases,
            "wall_s_median": round(wall, 4),
            "wall_overhead_ratio": round((wall - base_wall) / base_wall, 4),
            "paired_wall_overhead_ratio": round(paired, 4),
            "cpu_s_median": round(cpu, 4),
            "cpu_overhead_ratio": round((cpu - base_cpu) / base_cpu, 4),
            "wall_s": [round(r["wall"], 4) for r in rows[v]],
            "cold_extra_s": round(cold[v]["in_tracking"], 3),
        }
    return section


def bench_one(params, key: str, *, trials: int, epochs: int | None, data_root: Path, work: Path) -> dict:
    """Measure one benchmark at the epochs of each of its rounds (or `epochs`); returns its JSON section."""
    bench = params.benchmark(key)
    data, source = _load_data(params, bench.dataset, data_root, work)
    rounds = [(f"{epochs}-epochs", epochs, 1)] if epochs else [(r.name, r.epochs, r.n_trials) for r in bench.rounds]
    out: dict = {
        "data": source,
        "n_train": int(data.X_train.shape[0]),
        "n_features": int(np.prod(data.X_train.shape[1:])),
        "hparams": {**bench.hparams, **_fixed_point(bench.space)},
        "rounds": {},
    }
    for label, n_epochs, _ in rounds:
        out["rounds"][label] = bench_round(params, key, data, epochs=n_epochs, trials=trials, work=work, label=label)
    # the whole default search of this benchmark: every round's trial budget at its measured cost
    budget = {label: n for label, _, n in rounds}
    for v in ("folder", "keras"):
        spent = sum(budget[lb] * r["untracked"]["wall_s_median"] * r[v]["in_tracking_ratio"]
                    for lb, r in out["rounds"].items())  # fmt: skip
        trial_s = sum(budget[lb] * r["untracked"]["wall_s_median"] for lb, r in out["rounds"].items())
        out[f"search_in_tracking_ratio_{v}"] = round(spent / trial_s, 4)
    return out


def main(argv: list[str] | None = None) -> int:
    run = Run("benchmarks.tracking_overhead", argv)
    ap = parser(__doc__, "tracking_overhead.json")
    ap.add_argument("--trials", type=int, default=6, help="measured trials per variant, benchmark and round")
    ap.add_argument("--epochs", type=int, help="one setting of N epochs (default: the epochs of every round)")
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS))
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--data", default=str(ROOT / "data" / "processed"), help="processed data root")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    data_root = Path(args.data).resolve()
    out = Path(args.out).resolve()
    work = Path(tempfile.mkdtemp(prefix="tracking_overhead_"))
    cwd = os.getcwd()
    os.chdir(work)  # the store's artifacts (./mlartifacts) go to the scratch folder
    t0 = time.time()
    try:
        results = {}
        for key in args.benchmarks:
            print(f"{key}:", flush=True)
            results[key] = bench_one(params, key, trials=args.trials, epochs=args.epochs, data_root=data_root,
                                     work=work)  # fmt: skip
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)

    worst = {
        "per_round": {
            v: max(rr[v]["in_tracking_ratio"] for r in results.values() for rr in r["rounds"].values())
            for v in ("folder", "keras")
        },
        "whole_search": {
            v: max(r[f"search_in_tracking_ratio_{v}"] for r in results.values()) for v in ("folder", "keras")
        },
        "keras_flavor_extra": round(
            max(
                (rr["keras"]["in_tracking_s_median"] - rr["folder"]["in_tracking_s_median"])
                / rr["untracked"]["wall_s_median"]
                for r in results.values()
                for rr in r["rounds"].values()
            ),
            4,
        ),
    }
    within = worst["whole_search"]["keras"] < GOAL
    report = {
        "what": "per-trial overhead of MLflow tracking (run, params, per-epoch metrics, learning curves PNG, "
        "model) vs the same trials untracked. in_tracking_ratio (the verdict): median over tracked trials of "
        "the seconds spent in the tracking calls / the rest of that trial's seconds, per round's epochs "
        "(worst_ratio: the highest); in_tracking_over_untracked_median: median tracking seconds / median "
        "untracked trial seconds; "
        "search_in_tracking_ratio_*: the same over a benchmark's whole default search (each round's trial budget "
        "at its measured cost, every trial completing). wall/cpu_overhead_ratio: (tracked - untracked) / "
        "untracked of the median wall / CPU seconds per trial; paired: median over rounds of the same ratio "
        "between neighbouring trials. The wall and CPU ratios carry the noise of a shared machine (see loadavg).",
        "goal_max_ratio": GOAL,
        "worst_ratio": worst,
        "keras_flavor_within_goal": within,
        "decision": (
            f"completed Keras trials log the MLflow Keras flavor (TrialRun's default model_format 'keras'): the whole "
            f"default search spends {worst['whole_search']['keras']:.1%} of its trial time in tracking (goal "
            f"< {GOAL:.0%}), the flavor itself at most {worst['keras_flavor_extra']:.1%}"
            if within
            else f"tracking with the Keras flavor takes {worst['whole_search']['keras']:.1%} of trial time here "
            f"(goal < {GOAL:.0%}): pass model_format='folder' to TrialRun (search/objective.py) if that holds on "
            f"the target machine"
        ),
        "benchmarks": results,
        "store": "SQLite (local file), artifacts on local disk",
        "tf_threads": os.environ["TUNEBENCH_THREADS"],
        "seconds": round(time.time() - t0, 1),
    }
    run.save(out, report)
    for key, r in results.items():
        for label, rr in r["rounds"].items():
            print(f"{key} {label} ({rr['epochs']} epochs): untracked {rr['untracked']['wall_s_median']:.2f} s/trial; "
                  + "; ".join(f"{v} {rr[v]['in_tracking_s_median'] * 1000:.0f} ms in tracking = "
                              f"{rr[v]['in_tracking_ratio']:.1%} (wall {rr[v]['wall_overhead_ratio']:+.1%}, paired "
                              f"{rr[v]['paired_wall_overhead_ratio']:+.1%}, cpu {rr[v]['cpu_overhead_ratio']:+.1%})"
                              for v in ("folder", "keras")))  # fmt: skip
        print(f"{key} whole default search: folder {r['search_in_tracking_ratio_folder']:.1%}, keras "
              f"{r['search_in_tracking_ratio_keras']:.1%}")  # fmt: skip
    print(report["decision"])
    print(f"worst round: folder {worst['per_round']['folder']:.1%}, keras {worst['per_round']['keras']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
