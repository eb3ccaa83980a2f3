"""Benchmark what a whole tunebench search costs over a bare loop of `model.fit`, and where the rest goes.

For each benchmark (default: `rt_polarity_keras_mlp`, the default one, and `digits_keras_mlp`),
in a throwaway project holding the shipped `params.yaml` and the processed data:

* `search`: the real `python -m pipeline search --benchmark B` (journal storage, MLflow tracking
  into SQLite with model logging, as `dvc repro` runs it), wall time of the whole process (the
  MLflow tables already exist, as for every search of a project but its first);
* `bare`: one fresh process that imports Keras, loads the same arrays and runs `model.fit` on the
  same configurations for the same epochs as the finished study's trials (read back from the
  journal; a pruned trial only the epochs it ran), with the same TensorFlow threads: what a
  hand-written loop would pay. Its time is reported in full and as the fits alone;
* `instrumented`: the same search once more, in one process with timers around its parts
  (TensorFlow import, data load, `tf.data` building, Keras build+fit, Optuna storage calls, MLflow
  tracking per trial, memory release, round set-up and summary): where the time goes.

Each is repeated (`--repeat`) and the minimum kept: the machine may be shared. `--scaling` also
runs the default benchmark with `--workers 1` and `--workers 2` (threads split) and reports trials
per hour (whole search, and inside the rounds: trials over the rounds' first-start-to-last-end),
twice: with its shipped rounds (2 workers forced), and as one round of `--round-trials` order-free
trials (random sampler, no pruner: 2 workers are what `workers: auto` chooses); `--scaling-only`
measures only that and replaces the scaling figures of the existing `--out` file.
`--pythonpath DIR` runs the searches with another checkout's `pipeline` (to compare with a
baseline). Output: a table, and `benchmarks/results/overhead.json` (or `--out`).

Usage: `python -m benchmarks.overhead [--benchmarks B ...] [--repeat 2] [--scaling] [--data DIR]`
(`--data` defaults to the project's `data/processed`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import ROOT
from benchmarks.runner import Run, load, parser

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

BENCHMARKS = ("rt_polarity_keras_mlp", "digits_keras_mlp")
GOAL_RATIO = 1.10
GOAL_SCALING = 1.6
STORE_CREATION_S: list[float] = []  # the one-off creation of the MLflow tables (not in any search here)


def _env(pythonpath: Path, **extra) -> dict:
    """A child's environment: `pythonpath`'s `pipeline` first, then this checkout (`python -m benchmarks...`)."""
    path = os.pathsep.join(dict.fromkeys([str(pythonpath), str(ROOT)]))
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "TUNEBENCH_STORAGE"):
        env.pop(var, None)
    return env


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's ended children so far."""
    import resource  # noqa: PLC0415

    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def make_project(work: Path, data_root: Path, dataset: str) -> Path:
    """A throwaway project: the shipped params.yaml, the dataset's processed folder and an MLflow store whose
    tables exist (made once per project, by its first tracked stage: `store_creation_s` in the JSON)."""
    template = work / "mlflow-template.db"
    if not template.exists():
        from pipeline import tracking  # noqa: PLC0415

        t0 = time.perf_counter()
        tracking.client(f"sqlite:///{template}").search_experiments()  # creates the tables
        STORE_CREATION_S.append(round(time.perf_counter() - t0, 2))
    proj = work / f"proj-{time.monotonic_ns()}"
    (proj / "data" / "processed").mkdir(parents=True)
    shutil.copy2(ROOT / "params.yaml", proj / "params.yaml")
    shutil.copy2(template, proj / "mlflow.db")
    shutil.copytree(data_root / dataset, proj / "data" / "processed" / dataset)
    return proj


def run_search(proj: Path, key: str, pythonpath: Path, workers: int | None = None, instrumented: bool = False) -> dict:
    """Run the search of `key` in `proj` in a fresh process; its wall time, first line and output tail."""
    cmd = [sys.executable, "-m", "pipeline", "search", "--benchmark", key]
    if workers:
        cmd += ["--workers", str(workers)]
    if instrumented:
        cmd = [sys.executable, "-m", "benchmarks.overhead", "--instrumented", "--", *cmd[3:]]
    t0, c0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, cwd=proj, env=_env(pythonpath), capture_output=True, text=True, timeout=3600)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"search {key} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    first = next((line for line in proc.stderr.splitlines() if line.startswith("search ")), "")
    out = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "first_line": first}
    if instrumented:
        out["parts"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def study_trials(proj: Path, key: str) -> list[dict]:
    """Every trial the search counted, round by round: its hyperparameters, epochs trained, state, times."""
    import optuna  # noqa: PLC0415

    from pipeline.search_summary import counts_in_budget  # noqa: PLC0415

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(proj / "studies" / key / "optuna.journal"))
    )
    out = []
    for summary in sorted(optuna.get_all_study_summaries(storage), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if counts_in_budget(study.user_attrs, t) and t.state.is_finished():
                out.append({"study": summary.study_name, "params": t.params, "epochs": len(t.intermediate_values),
                            "state": t.state.name, "start": t.datetime_start.timestamp(),
                            "end": t.datetime_complete.timestamp()})  # fmt: skip
    return out


def run_bare(proj: Path, key: str, trials: list[dict], threads: int) -> dict:
    """The bare loop over `trials` in a fresh process (`--bare`): wall time and its own figures."""
    spec = proj / "bare.json"
    spec.write_text(json.dumps({"key": key, "trials": trials, "threads": threads}))
    t0, c0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.overhead", "--bare", str(spec)], cwd=proj,
                          env=_env(ROOT), capture_output=True, text=True, timeout=3600)  # fmt: skip
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"bare loop of {key} failed:\n{proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), **json.loads(proc.stdout.strip().splitlines()[-1])}


def bare_main(spec_path: str) -> None:
    """The bare loop: import Keras, load the arrays, build-compile-fit each configuration (one process)."""
    t0 = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text())
    from pipeline.config import load_params  # noqa: PLC0415
    from pipeline.models.hparams import hidden_units, resolve_hparams  # noqa: PLC0415

    params = load_params("params.yaml")
    bench = params.benchmark(spec["key"])
    import tensorflow as tf  # noqa: PLC0415

    tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
    import keras  # noqa: PLC0415

    t_import = time.perf_counter()
    from pipeline.features import ProcessedData  # noqa: PLC0415
    from pipeline.models.arrays import dense  # noqa: PLC0415

    data = ProcessedData.load(Path("data/processed") / bench.dataset)
    x_tr, x_va = dense(data.X_train), dense(data.X_val)
    y_tr, y_va = (data.y_train.astype("float32"), data.y_val.astype("float32")) if data.task == "binary" else (
        data.y_train, data.y_val)  # fmt: skip
    t_data = time.perf_counter()
    fits, fits_cpu = [], []
    for t in spec["trials"]:
        t1, c1 = time.perf_counter(), time.process_time()
        hp = resolve_hparams(bench.model, data.task, bench.hparams, t["params"])
        keras.backend.clear_session()
        keras.utils.set_random_seed(bench.seed)
        reg = keras.regularizers.L2(hp["l2"]) if hp.get("l2") else None
        layers = [keras.Input(shape=x_tr.shape[1:])]
        for width in hidden_units(hp):
            layers.append(keras.layers.Dense(width, activation=hp["activation"], kernel_regularizer=reg))
            if hp.get("dropout"):
                layers.append(keras.layers.Dropout(hp["dropout"]))
        if data.task == "binary":
            head, loss, metric = keras.layers.Dense(1, activation="sigmoid"), "binary_crossentropy", "accuracy"
        else:
            head, loss, metric = keras.layers.Dense(data.n_classes, activation="softmax"), \
                "sparse_categorical_crossentropy", "accuracy"  # fmt: skip
        model = keras.Sequential([*layers, head])
        opt = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[hp["optimizer"]]
        model.compile(optimizer=opt(learning_rate=hp["lr"]), loss=loss, metrics=[metric])
        model.fit(x_tr, y_tr, batch_size=int(hp["batch_size"]), epochs=int(t["epochs"]),
                  validation_data=(x_va, y_va), verbose=0)  # fmt: skip
        fits.append(time.perf_counter() - t1)
        fits_cpu.append(time.process_time() - c1)
    print(json.dumps({"import_s": round(t_import - t0, 2), "data_s": round(t_data - t_import, 2),
                      "fits_s": round(sum(fits), 2), "fits_cpu_s": round(sum(fits_cpu), 2),
                      "fit_s_each": [round(f, 2) for f in fits]}))  # fmt: skip


def instrumented_main(argv: list[str]) -> None:
    """Run `python -m pipeline ARGV` in this process with timers around the search's parts; print them."""
    t_start, c_start = time.perf_counter(), time.process_time()
    from benchmarks.timing_parts import install  # noqa: PLC0415

    parts = install()
    from pipeline.__main__ import main  # noqa: PLC0415

    parts["imports and CLI"] = [time.perf_counter() - t_start, time.process_time() - c_start]
    t0, c0 = time.perf_counter(), time.process_time()
    rc = main(argv)
    call = [time.perf_counter() - t0, time.process_time() - c0]
    timed = [v for k, v in parts.items() if k != "imports and CLI"]
    parts["other (set-up, narrowing, budget checks)"] = [call[i] - sum(v[i] for v in timed) for i in (0, 1)]
    parts["search call"] = call
    print(json.dumps({"wall": {k: round(v[0], 2) for k, v in parts.items()},
                      "cpu": {k: round(v[1], 2) for k, v in parts.items()}}))  # fmt: skip
    sys.exit(rc)


def rounds_span(trials: list[dict]) -> float:
    """Seconds inside the rounds: each round's first trial start to its last trial end, summed."""
    by: dict[str, list[dict]] = {}
    for t in trials:
        by.setdefault(t["study"], []).append(t)
    return sum(max(t["end"] for t in ts) - min(t["start"] for t in ts) for ts in by.values())


def measure(key: str, data_root: Path, work: Path, repeat: int, pythonpath: Path) -> dict:
    """Search, bare loop and instrumented search of `key`: minimum over `repeat` runs each."""
    from pipeline.config import load_params  # noqa: PLC0415
    from pipeline.search.execution.concurrency import threads_for  # noqa: PLC0415

    dataset = load_params(ROOT / "params.yaml").benchmark(key).dataset
    searches, bares = [], []
    for _ in range(repeat):
        proj = make_project(work, data_root, dataset)
        s = run_search(proj, key, pythonpath)
        trials = study_trials(proj, key)
        s["trials"], s["epochs"] = len(trials), sum(t["epochs"] for t in trials)
        s["in_trials_s"] = round(sum(t["end"] - t["start"] for t in trials), 2)
        searches.append(s)
        workers = int(s["first_line"].split(": ")[1].split()[0]) if s["first_line"] else 1
        bares.append(run_bare(proj, key, trials, threads_for(workers)))
        print(f"  {key}: search {s['wall_s']} s, bare {bares[-1]['wall_s']} s ({s['first_line']})", flush=True)
    inst = run_search(make_project(work, data_root, dataset), key, pythonpath, instrumented=True)
    s, b = min(searches, key=lambda r: r["wall_s"]), min(bares, key=lambda r: r["wall_s"])
    s_cpu, b_cpu = min(r["cpu_s"] for r in searches), min(r["cpu_s"] for r in bares)
    return {
        "search": s, "bare": b, "search_wall_s_all": [r["wall_s"] for r in searches],
        "bare_wall_s_all": [r["wall_s"] for r in bares], "search_cpu_s_all": [r["cpu_s"] for r in searches],
        "bare_cpu_s_all": [r["cpu_s"] for r in bares], "ratio": round(s["wall_s"] / b["wall_s"], 3),
        "ratio_to_fits_only": round(s["wall_s"] / min(r["fits_s"] for r in bares), 3),
        "cpu_ratio": round(s_cpu / b_cpu, 3), "instrumented": inst,
    }  # fmt: skip


def parallel_round(proj: Path, key: str, n_trials: int) -> None:
    """Make `key`'s rounds in `proj` one round that `workers: auto` runs in parallel: its space, `n_trials`
    trials of its last round's epochs, random sampler, no pruner (trials that do not depend on each other)."""
    import yaml  # noqa: PLC0415

    params = yaml.safe_load((proj / "params.yaml").read_text())
    bench = params["benchmarks"][key]
    epochs = list(bench["rounds"].values())[-1]["epochs"]  # rounds by name, as the shipped profiles give them
    bench["rounds"] = [{"name": "parallel", "n_trials": n_trials, "epochs": epochs, "sampler": "random",
                        "pruner": "none"}]  # fmt: skip
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def scaling_runs(data_root: Path, work: Path, repeat: int, pythonpath: Path, key: str,
                 round_trials: int | None) -> dict:  # fmt: skip
    """Trials per hour of `key`'s search with 1 and 2 local workers (threads split): minimum wall of `repeat`.

    `round_trials`: instead of the shipped rounds, one round of that many order-free trials
    (`parallel_round`), where the 2-worker search is what `workers: auto` chooses by itself.
    """
    from pipeline.config import load_params  # noqa: PLC0415

    dataset = load_params(ROOT / "params.yaml").benchmark(key).dataset
    out: dict = {}
    for workers in (1, 2):
        runs = []
        for _ in range(repeat):
            proj = make_project(work, data_root, dataset)
            if round_trials:
                parallel_round(proj, key, round_trials)
            s = run_search(proj, key, pythonpath, workers=None if round_trials and workers == 2 else workers)
            trials = study_trials(proj, key)
            span = rounds_span(trials)
            runs.append({**s, "trials": len(trials), "in_rounds_s": round(span, 2),
                         "trials_per_hour": round(3600 * len(trials) / s["wall_s"], 1),
                         "trials_per_hour_in_rounds": round(3600 * len(trials) / span, 1)})  # fmt: skip
            print(f"  scaling {workers} worker(s): {runs[-1]['wall_s']} s, in rounds {span:.1f} s "
                  f"({runs[-1]['first_line']})", flush=True)  # fmt: skip
        best = max(runs, key=lambda r: r["trials_per_hour"])
        out[f"workers_{workers}"] = {**best, "wall_s_all": [r["wall_s"] for r in runs]}
    w1, w2 = out["workers_1"], out["workers_2"]
    out["speedup"] = round(w2["trials_per_hour"] / w1["trials_per_hour"], 3)
    out["speedup_in_rounds"] = round(w2["trials_per_hour_in_rounds"] / w1["trials_per_hour_in_rounds"], 3)
    return out


def scaling(data_root: Path, work: Path, repeat: int, pythonpath: Path, round_trials: int,
            key: str = BENCHMARKS[0]) -> dict:  # fmt: skip
    """1 vs 2 workers on `key`: its shipped schedule (`--workers 2` forced), and one order-free round of
    `round_trials` trials (2 workers chosen by `auto`)."""
    return {"shipped_rounds": scaling_runs(data_root, work, repeat, pythonpath, key, None),
            "parallel_round": {"n_trials": round_trials,
                               **scaling_runs(data_root, work, repeat, pythonpath, key, round_trials)}}  # fmt: skip


def table(results: dict) -> str:
    """The README tables."""
    lines = ["| benchmark | trials | epochs | search s (CPU s) | bare s (CPU s; fits only s) | ratio (CPU; fits) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for key, r in results["benchmarks"].items():
        s, b = r["search"], r["bare"]
        lines.append(f"| {key} | {s['trials']} | {s['epochs']} | {s['wall_s']} ({min(r['search_cpu_s_all'])}) | "
                     f"{b['wall_s']} ({min(r['bare_cpu_s_all'])}; {b['fits_s']}) | "
                     f"{r['ratio']:.2f}x ({r['cpu_ratio']:.2f}x; {r['ratio_to_fits_only']:.2f}x) |")  # fmt: skip
    keys = list(results["benchmarks"])
    lines += ["", "| where a search's time goes (instrumented run), wall s (CPU s) | " + " | ".join(keys) + " |",
              "|---|" + "---|" * len(keys)]  # fmt: skip
    for name in results["benchmarks"][keys[0]]["instrumented"]["parts"]["wall"]:
        row = [f"{p['wall'][name]} ({p['cpu'][name]})" for p in
               (results["benchmarks"][k]["instrumented"]["parts"] for k in keys)]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    if "scaling" in results:
        lines += ["", "| search | workers x threads | trials | search s | trials/hour | trials/hour in rounds |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for name, sc in results["scaling"].items():
            label = "shipped rounds" if name == "shipped_rounds" else f"one order-free round of {sc['n_trials']}"
            for w in (1, 2):
                r = sc[f"workers_{w}"]
                choice = r["first_line"].split(": ")[1].split(" (")[0]
                lines.append(f"| {label} | {choice} | {r['trials']} | {r['wall_s']} | {r['trials_per_hour']} | "
                             f"{r['trials_per_hour_in_rounds']} |")  # fmt: skip
            lines.append(f"| {label} | speed-up | | | {sc['speedup']:.2f}x | {sc['speedup_in_rounds']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--bare"]:
        bare_main(argv[1])
        return 0
    if argv[:1] == ["--instrumented"]:
        instrumented_main(argv[2:])
        return 0
    run = Run("benchmarks.overhead", argv)
    ap = parser(__doc__, "overhead.json")
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--scaling", action="store_true", help="also 1 vs 2 workers on the default benchmark")
    ap.add_argument("--scaling-only", action="store_true", help="only 1 vs 2 workers, into --out's other figures")
    ap.add_argument("--round-trials", type=int, default=32, help="trials of the order-free round of --scaling")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "processed")
    ap.add_argument("--pythonpath", type=Path, default=ROOT, help="the checkout whose `pipeline` searches")
    args = ap.parse_args(argv)
    from pipeline.config import load_params  # noqa: PLC0415

    params = load_params(ROOT / "params.yaml")
    for key in args.benchmarks:
        ds = params.benchmark(key).dataset
        if not (args.data / ds / "manifest.json").is_file():
            print(f"error: {args.data / ds} holds no processed data: run `dvc repro preprocess@{ds}` or pass --data",
                  file=sys.stderr)  # fmt: skip
            return 2
    results: dict = {"what": "wall time of a whole `tunebench search` (journal, MLflow SQLite, model logging) over a "
                     "bare loop of model.fit on the same configurations and epochs in one fresh process (ratio; also "
                     "to the fits alone); minimum of the repeats; instrumented: one more search, timed by part",
                     "goal_max_ratio": GOAL_RATIO, "goal_min_scaling": GOAL_SCALING, "benchmarks": {}}  # fmt: skip
    if args.scaling_only:  # the result becomes this run's; the figures keep which run measured the benchmarks
        earlier = load(args.out)
        results = earlier["figures"]
        results.pop("scaling_machine", None)  # an earlier scaling run's machine (results before benchmarks.runner)
        results.setdefault("benchmarks_run", {k: earlier[k] for k in ("command", "machine", "versions")})
    with tempfile.TemporaryDirectory(prefix="tb-overhead-") as tmp:
        for key in [] if args.scaling_only else args.benchmarks:
            results["benchmarks"][key] = measure(key, args.data, Path(tmp), args.repeat, args.pythonpath)
        if args.scaling or args.scaling_only:
            results["scaling"] = scaling(args.data, Path(tmp), args.repeat, args.pythonpath, args.round_trials)
    if not args.scaling_only:
        results["store_creation_s"] = STORE_CREATION_S[0] if STORE_CREATION_S else None
    text = table(results)
    results["table"] = text
    run.save(args.out, results)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
