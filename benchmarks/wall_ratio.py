"""A tunebench search's wall time against a hand-written Optuna TPE + median-pruner script, at equal epochs.

For each benchmark (default: `digits_keras_mlp` and `rt_polarity_keras_mlp` of the shipped
`params.yaml`, their shipped rounds), in one run, repeats interleaved (the order of the methods
alternates), every method in a fresh process with the same TensorFlow threads
(`TUNEBENCH_THREADS`, `--threads`: intra- and inter-op, `pipeline.models.runtime`):

* `tunebench`: `python -m pipeline search --benchmark B --workers 1` in a throwaway project
  (journal storage, MLflow into SQLite whose tables exist, `tracking.log_models` as shipped);
  robust selection is off (`selection.repeats: 0`): its retraining is epochs the script does not train;
* `tunebench@<dir>` (`--baseline DIR`): the same with another checkout's `pipeline` (before/after);
* `optuna`: the script a user writes from Optuna's tutorial: one study, TPE (seeded) and
  `MedianPruner` (tunebench's settings: 2 startup trials, a quarter of the epochs as warm-up),
  `study.optimize` with the rounds' epochs a trial, each until it has trained its round's epoch budget
  (trials times epochs: tunebench counts a pruned trial as the share of the epochs it trained), training
  with the same model code (`family.train`) on the same split.

Both sample their own configurations and prune on their own, so the epochs trained differ a little:
the verdict is `ratio_per_epoch`, tunebench's wall seconds per epoch trained over the script's
(whole processes: imports, data, studies, tracking, plots), with the plain wall-time ratio beside it.
The script's rows also say how long it spent collecting garbage (`gc_s`): `family.train` clears the Keras
session before each model, as Optuna's Keras example does, and that runs a full collection; tunebench's
workers keep what survives a trial frozen (`gc.freeze`), so theirs walk only the last trial's objects.
Output: a table, and `benchmarks/results/wall_ratio.json` (every run; `benchmarks.runner`'s result).

Usage: `python -m benchmarks.wall_ratio [--benchmarks B ...] [--repeat 3] [--threads 1] [--baseline DIR]
[--pythonpath DIR] [--data DIR]` (`--data` defaults to the project's `data/processed`; `--pythonpath` and
`--baseline` take checkouts, e.g. `git archive` copies of two commits, so that edits during the run change nothing).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import ROOT
from benchmarks.overhead import STORE_CREATION_S, _env, make_project, study_trials
from benchmarks.runner import Run, load, parser
from pipeline.fileio import write_json_atomic

BENCHMARKS = ("digits_keras_mlp", "rt_polarity_keras_mlp")
GOAL = 1.2


def prepare(proj: Path, key: str) -> list[dict]:
    """Keep only benchmark `key` in the project's params.yaml, one worker, no robust selection; its rounds."""
    params = yaml.safe_load((proj / "params.yaml").read_text())
    bench = params["benchmarks"][key]
    bench["selection"] = {"repeats": 0}
    params["benchmarks"] = {key: bench}
    params["search"]["workers"] = 1
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rounds = bench["rounds"]
    return [{"n_trials": r["n_trials"], "epochs": r["epochs"]} for r in (rounds.values() if isinstance(rounds, dict)
                                                                         else rounds)]  # fmt: skip


def run_tunebench(work: Path, data: Path, key: str, dataset: str, pythonpath: Path) -> dict:
    """`tunebench search` of `key` in a fresh project: wall seconds of the process, trials and epochs it trained."""
    proj = make_project(work, data, dataset)
    prepare(proj, key)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "search", "--benchmark", key, "--workers", "1"],
                          cwd=proj, env=_env(pythonpath), capture_output=True, text=True, timeout=3600)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"search {key} failed ({proc.returncode}) in {proj}:\n{proc.stderr[-3000:]}")
    trials = study_trials(proj, key)
    return {"wall_s": round(wall, 2), "trials": len(trials), "epochs": sum(t["epochs"] for t in trials),
            "pruned": sum(t["state"] == "PRUNED" for t in trials)}  # fmt: skip


PARTS_CHILD = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from benchmarks import timing_parts
from pipeline.search import round_summary
if hasattr(round_summary, "wait_for_files"):  # the round files logged in the background, where the search waits
    timing_parts.PARTS["round summary: Optuna plots, trials table"].append(
        ("pipeline.search.round_summary", "wait_for_files"))
parts = timing_parts.install()
from pipeline.__main__ import main
parts["imports and CLI"] = [time.perf_counter() - t0, time.process_time() - c0]
t1 = time.perf_counter()
rc = main(sys.argv[1:])
parts["other (set-up, narrowing, budget checks)"] = [time.perf_counter() - t1 - sum(
    v[0] for k, v in parts.items() if k != "imports and CLI"), 0.0]
print(json.dumps({k: round(v[0], 2) for k, v in parts.items()}))
sys.exit(rc)
"""


def parts_of_search(work: Path, data: Path, key: str, dataset: str, pythonpath: Path) -> dict:
    """One search of `key` in a fresh process with timers around its parts (`timing_parts`, exclusive wall
    seconds of the search's own thread: background work counts only where the search waits for it)."""
    proj = make_project(work, data, dataset)
    prepare(proj, key)
    cmd = [sys.executable, "-c", PARTS_CHILD, "search", "--benchmark", key, "--workers", "1"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=proj, env=_env(pythonpath), capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"timed search {key} failed:\n{proc.stderr[-3000:]}")
    return {"wall_s": round(time.perf_counter() - t0, 2), **json.loads(proc.stdout.strip().splitlines()[-1])}


def run_optuna(work: Path, data: Path, key: str, dataset: str, seed: int) -> dict:
    """The hand-written script (`plain_main`) in a fresh process: its wall seconds and what it trained."""
    proj = make_project(work, data, dataset)
    rounds = prepare(proj, key)
    spec = proj / "plain.json"
    spec.write_text(json.dumps({"key": key, "rounds": rounds, "seed": seed}))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.wall_ratio", "--plain", str(spec)], cwd=proj,
                          env=_env(ROOT), capture_output=True, text=True, timeout=3600)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"plain Optuna script of {key} failed:\n{proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 2), **json.loads(proc.stdout.strip().splitlines()[-1])}


def plain_main(spec_path: str) -> None:
    """The hand-written Optuna script: TPE + median pruner, `study.optimize`, one process, no tracking."""
    spec = json.loads(Path(spec_path).read_text())
    import optuna  # noqa: PLC0415

    from pipeline.config import load_params  # noqa: PLC0415
    from pipeline.features import ProcessedData, holdout_or_folds  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415
    from pipeline.models.hparams import resolve_hparams  # noqa: PLC0415
    from pipeline.models.runtime import configure_tensorflow  # noqa: PLC0415
    from pipeline.search.spaces import suggest  # noqa: PLC0415
    from pipeline.tasks import task_metric  # noqa: PLC0415

    configure_tensorflow()  # TUNEBENCH_THREADS, as the search's worker
    bench = load_params("params.yaml").benchmark(spec["key"])
    data = ProcessedData.load(Path("data/processed") / bench.dataset)
    family = get_family(bench.model)
    metric, direction = task_metric(data.task)
    x_tr, y_tr, x_va, y_va = next(iter(holdout_or_folds(data)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    epochs_done = [0]
    collecting = [0.0, 0.0]  # seconds in the garbage collector (Keras's `clear_session` runs a full collection)

    def gc_timer(phase: str, info: dict) -> None:
        if phase == "start":
            collecting[1] = time.perf_counter()
        else:
            collecting[0] += time.perf_counter() - collecting[1]

    gc.callbacks.append(gc_timer)

    def objective(trial: optuna.Trial, epochs: int) -> float:
        hp = resolve_hparams(bench.model, data.task, bench.hparams, suggest(trial, bench.space))

        def report(epoch: int, logs: dict) -> None:
            epochs_done[0] += 1
            trial.report(logs[f"val_{metric}"], epoch)
            if epoch < epochs - 1 and trial.should_prune():
                raise optuna.TrialPruned()

        trained = family.train(hp, x_tr, y_tr, x_va, y_va, task=data.task, n_classes=data.n_classes, epochs=epochs,
                               seed=bench.seed, on_epoch=report)  # fmt: skip
        curve = trained.history[f"val_{metric}"]
        return max(curve) if direction == "maximize" else min(curve)

    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=spec["seed"]))
    t0 = time.perf_counter()
    for rnd in spec["rounds"]:  # each round's epochs: its trials times their epochs, as tunebench's budget counts
        study.pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, rnd["epochs"] // 4))
        budget, start = rnd["n_trials"] * rnd["epochs"], epochs_done[0]

        def stop(study: optuna.Study, trial, budget=budget, start=start) -> None:
            if epochs_done[0] - start >= budget:
                study.stop()

        study.optimize(lambda t, e=rnd["epochs"]: objective(t, e), callbacks=[stop])
    trials = study.get_trials(deepcopy=False)
    print(json.dumps({"search_s": round(time.perf_counter() - t0, 2), "gc_s": round(collecting[0], 2),
                      "trials": len(trials), "epochs": epochs_done[0],
                      "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)}))  # fmt: skip


def spread(values: list[float]) -> dict:
    """Mean, min, max and sample standard deviation of `values`, rounded."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.mean(values), 3), "min": round(min(values), 3), "max": round(max(values), 3),
            "sd": round(sd, 3), "n": len(values)}  # fmt: skip


def summarize(runs: list[dict]) -> dict:
    """Per benchmark and tunebench variant: the ratios to the script of the same repeat."""
    out: dict = {}
    for key in dict.fromkeys(r["benchmark"] for r in runs):
        own = [r for r in runs if r["benchmark"] == key]
        plain = {r["repeat"]: r for r in own if r["method"] == "optuna"}
        out[key] = {"optuna_wall_s": spread([r["wall_s"] for r in plain.values()]),
                    "optuna_gc_s": spread([r["gc_s"] for r in plain.values()])}  # fmt: skip
        for method in dict.fromkeys(r["method"] for r in own if r["method"] != "optuna"):
            mine = [r for r in own if r["method"] == method and r["repeat"] in plain]
            pairs = [(r, plain[r["repeat"]]) for r in mine]
            per_epoch = [(r["wall_s"] / r["epochs"]) / (p["wall_s"] / p["epochs"]) for r, p in pairs]
            no_gc = [(r["wall_s"] / r["epochs"]) / ((p["wall_s"] - p["gc_s"]) / p["epochs"]) for r, p in pairs]
            out[key][method] = {
                "wall_s": spread([r["wall_s"] for r in mine]),
                "ratio": spread([r["wall_s"] / plain[r["repeat"]]["wall_s"] for r in mine]),
                "ratio_per_epoch": spread(per_epoch),
                "ratio_per_epoch_to_script_without_gc": spread(no_gc),  # the script's seconds less its collections
                "epochs": spread([r["epochs"] for r in mine]),
                "optuna_epochs": spread([plain[r["repeat"]]["epochs"] for r in mine]),
                "goal_met": statistics.mean(per_epoch) <= GOAL,
            }
    return out


def table(summary: dict) -> str:
    lines = ["| benchmark | method | wall s | script s | ratio | per epoch (min-max) | per epoch, script less gc | "
             "epochs (script) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, s in summary.items():
        for method, m in s.items():
            if method.startswith("optuna_"):
                continue
            pe = m["ratio_per_epoch"]
            lines.append(f"| {key} | {method} | {m['wall_s']['mean']:.1f} | {s['optuna_wall_s']['mean']:.1f} | "
                         f"{m['ratio']['mean']:.2f} | {pe['mean']:.2f} ({pe['min']:.2f}-{pe['max']:.2f}) | "
                         f"{m['ratio_per_epoch_to_script_without_gc']['mean']:.2f} | "
                         f"{m['epochs']['mean']:.0f} ({m['optuna_epochs']['mean']:.0f}) |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run = Run("benchmarks.wall_ratio", argv)
    ap = parser(__doc__, "wall_ratio.json")
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="TensorFlow intra- and inter-op threads of every method")
    ap.add_argument("--pythonpath", type=Path, default=ROOT, help="the checkout whose `pipeline` is `tunebench`")
    ap.add_argument("--baseline", type=Path, help="another checkout's root: its `pipeline` searches too")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "processed")
    ap.add_argument("--parts", action="store_true", help="then one search of each tunebench with timers on its parts")
    ap.add_argument("--summarize", type=Path, help="only recompute the summary of an earlier output's runs")
    ap.add_argument("--plain", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain:
        plain_main(args.plain)
        return 0
    if args.summarize:  # the same result, its summary recomputed
        result = load(args.summarize)
        result["figures"]["summary"] = summarize(result["figures"]["runs"])
        write_json_atomic(args.summarize, result, sort_keys=False)
        print(table(result["figures"]["summary"]))
        return 0
    from pipeline.config import load_params  # noqa: PLC0415

    os.environ["TUNEBENCH_THREADS"] = str(args.threads)  # every child inherits it (`overhead._env`)
    params = load_params(ROOT / "params.yaml")
    methods = {"tunebench": lambda w, k, d, r: run_tunebench(w, args.data, k, d, args.pythonpath),
               "optuna": lambda w, k, d, r: run_optuna(w, args.data, k, d, r)}  # fmt: skip
    if args.baseline:
        methods[f"tunebench@{args.baseline}"] = lambda w, k, d, r: run_tunebench(w, args.data, k, d, args.baseline)
    runs: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wall-ratio-") as tmp:
        for repeat in range(args.repeat):
            for key in args.benchmarks:
                dataset = params.benchmark(key).dataset
                order = list(methods) if repeat % 2 == 0 else list(reversed(methods))
                for name in order:
                    row = {"benchmark": key, "method": name, "repeat": repeat,
                           **methods[name](Path(tmp), key, dataset, repeat)}  # fmt: skip
                    runs.append(row)
                    print(json.dumps(row), flush=True)
        summary = summarize(runs)
        result = {
            "threads": args.threads, "goal_ratio_per_epoch": GOAL, "total_s": round(time.perf_counter() - started, 1),
            "store_creation_s": STORE_CREATION_S, "summary": summary, "parts_s": None, "runs": runs,
        }  # fmt: skip
        run.save(args.out, result)
        print(table(summary))
        if args.parts:  # saved above first: the timed runs stay if this fails
            result["parts_s"] = {key: {name: parts_of_search(
                Path(tmp), args.data, key, params.benchmark(key).dataset,
                args.pythonpath if name == "tunebench" else args.baseline) for name in methods if name != "optuna"}
                for key in args.benchmarks}  # fmt: skip
            run.save(args.out, result)
            print(json.dumps(result["parts_s"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
