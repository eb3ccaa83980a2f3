"""Is the search worth it? tunebench against Keras Tuner, plain Optuna and unpruned random search.

For every problem and seed, six methods search the same model family, data split and space
(`efficiency_methods.py`): Keras Tuner Hyperband runs first (one iteration, `max_epochs` = a
full trial) and the epochs it trains are every other method's budget. Then each method's best
configuration is retrained by the same code (the epochs of its best validation score found on
train/validation, then train+validation for that many epochs, as `tunebench train_best` does)
and scored on the untouched test split. The anytime figure is the epochs (and seconds) each
method needed to get within 0.5 points of accuracy (2% of MAE) of the best validation score
any method found for that seed. Figures are printed and saved to
`benchmarks/results/search_efficiency.json` (`benchmarks.runner`: with the machine and library versions). Unpruned
random search runs on for `--random-extra` times the budget, so that the epochs it needs to get
near the best are measured rather than cut off (its other figures are those within the budget).

`--budget-trials N` gives every method the same budget in full-trial equivalents instead,
N x a full trial's epochs (x the folds with folds): Keras Tuner Hyperband runs as many iterations
as it needs and its trace is cut at the budget, tunebench's two rounds are sized to add up to it.
The summary then also compares tunebench's test score with each peer's, paired by seed (`paired`:
the mean difference, its 95% interval, a paired t-test and the Wilcoxon signed-rank test).
tunebench runs its default robust selection (top 3 configurations trained twice more) where its
epochs fit in a fifth of the budget (30 full trials or more), else none; its epochs count, and the
rounds are sized to leave room for them (`tunebench_no_selection`, not run by default, spends the
whole budget on the rounds instead). With `--budget-trials`, any subset of
methods can run (e.g. one rerun after a change) and `--merge` combines the outputs, a later
output's (problem, seed, method) replacing an earlier one's; a method's near-best mark is
relative to the methods of its own run.

One retrain's test score moves by about as much as the methods differ, so each chosen configuration
is retrained `--retrains` times (default 5) and its row's test score is their mean (`retrain_seeds`
and `test_retrains` keep the seeds and scores): the comparison is between the configurations the
methods chose rather than their retrains' luck. The retrain seeds (seed + 1000 k, k = 1..K) are
never one a search trained with (the search seed plus the fold), so no retrain replays the
initialization that won a trial its place. `--rescore FILE` brings an earlier output to K retrains,
training only the missing seeds, as long as the row's trials were (`trial_epochs`; rows from before it
was recorded need the earlier run's `--epochs`). Rows scored by one retrain on the search seed, as this
benchmark did before, keep that score as `test_single`, outside the mean. It saves after every row;
rerun with the output as FILE to resume.

    python -m benchmarks.search_efficiency                       # 3 problems x 3 seeds (~45 min a problem here)
    python -m benchmarks.search_efficiency --problems digits --seeds 1 --quick
    python -m benchmarks.search_efficiency --problems digits --seeds 5 --budget-trials 30 --random-extra 1
    python -m benchmarks.search_efficiency --rescore benchmarks/results/search_efficiency_budget30.json --retrains 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

from benchmarks import ROOT
from benchmarks.efficiency_methods import Problem, direction_of, run_keras_tuner, run_optuna, run_tunebench
from benchmarks.runner import Run, load, parser
from pipeline.models.runtime import configure_tensorflow
from pipeline.search_summary import NEAR_POINTS, NEAR_RATIO

UNBOUNDED = 10**9  # Hyperband's budget without --budget-trials: one iteration, its epochs the others' budget
METHODS = {
    "keras_tuner_hyperband": lambda p, d, b, s: run_keras_tuner(p, d, b, s, hyperband=True, cut=b < UNBOUNDED),
    "tunebench": run_tunebench,
    "optuna_tpe_median": lambda p, d, b, s: run_optuna(p, d, b, s, tpe=True),
    "optuna_tpe_hyperband": lambda p, d, b, s: run_optuna(p, d, b, s, tpe=True, hyperband=True),
    "random_unpruned": lambda p, d, b, s: run_optuna(p, d, b, s, tpe=False),
    "keras_tuner_random": lambda p, d, b, s: run_keras_tuner(p, d, b, s, hyperband=False),
    # tunebench's rounds on the whole budget, robust selection off: what selection's share of the budget buys
    "tunebench_no_selection": lambda p, d, b, s: run_tunebench(p, d, b, s, selection={"repeats": 0}),
}
DEFAULT_METHODS = [m for m in METHODS if m != "tunebench_no_selection"]


def problems(quick: bool, project: Path = ROOT) -> dict[str, Problem]:
    """The three problems: rt_polarity multi-hot (the harder space), Boston 4-fold, digits PCA;
    datasets as `project`'s params.yaml preprocesses them."""
    datasets = yaml.safe_load((project / "params.yaml").read_text())["datasets"]

    def rng(low, high, **kw):
        return {"low": low, "high": high, **kw}

    text = Problem(
        "rt_polarity_mlp",
        "rt_polarity",
        "keras_mlp",
        {"optimizer": "rmsprop"},
        {
            "lr": rng(1e-4, 1e-1, log=True),
            "l2": rng(1e-7, 1e-2, log=True),
            "dropout": rng(0.0, 0.5),
            "units": rng(8, 64, log=True, int=True),
            "depth": rng(1, 3, int=True),
            "batch_size": {"choices": [128, 256, 512]},
        },
        4 if quick else 6,
        datasets["rt_polarity"],
        project,
    )
    boston = Problem(
        "boston_kfold_mlp",
        "boston_housing",
        "keras_mlp",
        {"optimizer": "rmsprop", "batch_size": 16},
        {
            "lr": rng(1e-4, 3e-2, log=True),
            "l2": rng(1e-7, 1e-1, log=True),
            "units": rng(16, 128, log=True, int=True),
            "depth": rng(1, 3, int=True),
        },
        4 if quick else 6,
        datasets["boston_housing"],
        project,
    )
    digits = Problem(
        "digits_pca_mlp",
        "digits",
        "keras_mlp",
        {"optimizer": "adam"},
        {
            "lr": rng(1e-4, 1e-1, log=True),
            "l2": rng(1e-7, 1e-2, log=True),
            "dropout": rng(0.0, 0.5),
            "units": rng(16, 256, log=True, int=True),
            "depth": rng(1, 3, int=True),
            "batch_size": {"choices": [32, 64, 128]},
        },
        4 if quick else 8,
        datasets["digits"],
        project,
    )
    return {"rt_polarity": text, "boston": boston, "digits": digits}


def test_score(problem: Problem, data, params: dict, seed: int) -> float:
    """Retrain `params` as `train_best` does and score the test split: the best epoch on train/validation
    (the mean curve over folds with folds), then train+validation (all of train) for that many epochs."""
    import scipy.sparse as sp  # noqa: PLC0415

    from pipeline.features import holdout_or_folds  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415
    from pipeline.models.hparams import resolve_hparams  # noqa: PLC0415

    metric, direction = direction_of(data)
    family = get_family(problem.model)
    hp = resolve_hparams(problem.model, data.task, problem.fixed, params)
    curves = [
        family.train(
            hp, *split, task=data.task, n_classes=data.n_classes, epochs=problem.epochs, seed=seed + fold
        ).history[f"val_{metric}"]
        for fold, split in enumerate(holdout_or_folds(data))
    ]
    mean = np.mean(curves, axis=0)
    best_epoch = int(np.argmax(mean) if direction == "maximize" else np.argmin(mean)) + 1
    x, y = data.X_train, data.y_train
    if data.X_val is not None:
        x = sp.vstack([x, data.X_val]).tocsr() if sp.issparse(x) else np.concatenate([x, data.X_val])
        y = np.concatenate([y, data.y_val])
    final = family.train(hp, x, y, None, None, task=data.task, n_classes=data.n_classes, epochs=best_epoch, seed=seed)
    return float(final.evaluate(data.X_test, data.y_test)[metric])


def retrain_seeds(seed: int, retrains: int) -> list[int]:
    """The seeds of the K retrains of a configuration chosen by a search with `seed`: none of them one the
    searches trained with (`seed` plus the fold)."""
    return [seed + 1000 * k for k in range(1, retrains + 1)]


def retrain_scores(problem: Problem, data, params: dict, seeds: list[int], have: dict | None = None) -> list[float]:
    """Test scores of `params` retrained on each of `seeds` (`test_score`), reusing those in `have`."""
    have = have or {}
    return [have[s] if s in have else round(test_score(problem, data, params, s), 5) for s in seeds]


def retrain_count(row: dict) -> int:
    """How many retrains a row's test score averages; 0: one retrain on the search seed itself (rows of
    this benchmark from before `--retrains`)."""
    return len(row.get("retrain_seeds") or [])


def rescore(rows: list[dict], retrains: int, project: Path, epochs: int | None, save_rows) -> list[dict]:
    """Each row's test score as the mean of `retrains` retrains of its chosen configuration: a row's
    retrains on `retrain_seeds` are kept and only the missing ones trained (one configuration chosen by
    several methods of a seed is retrained once); `save_rows(rows)` after every row.

    A row's trials were `trial_epochs` long (recorded by every run since `--retrains`); older rows take
    `epochs` (the earlier run's `--epochs`), which must then be given: the retrains must train as long as
    the search's trials did, and no default is assumed.

    Raises:
        ValueError: a row has retrains on other seeds (e.g. more than `retrains`), or its trial length is
            unknown or differs from `epochs`.
    """
    from pipeline.features import ProcessedData  # noqa: PLC0415

    by_name = {p.name: p for p in problems(False, project).values()}
    done: dict[tuple, dict[int, float]] = {}
    for i, row in enumerate(rows):
        seeds = retrain_seeds(row["seed"], retrains)
        have = dict(zip(row.get("retrain_seeds", []), row.get("test_retrains", []), strict=True))
        name = f"{row['problem']} seed {row['seed']} {row['method']}"
        if extra := sorted(set(have) - set(seeds)):
            raise ValueError(f"{name}: retrains on seeds {extra}, not among --retrains {retrains}'s {seeds}")
        if len(have) == retrains:
            continue
        recorded = row.get("trial_epochs")
        if recorded is None and epochs is None:
            raise ValueError(f"{name}: its trial length is not recorded; give --epochs (the earlier run's --epochs; "
                             "4 if it ran with --quick; else 6 for rt_polarity and Boston, 8 for digits)")  # fmt: skip
        if recorded is not None and epochs not in (None, recorded):
            raise ValueError(f"{name}: its trials were {recorded} epochs, not --epochs {epochs}")
        problem = by_name[row["problem"]]
        problem.epochs = recorded or epochs
        data = ProcessedData.load(project / "data" / "processed" / problem.dataset)
        key = (row["problem"], row["seed"], json.dumps(row["best_params"], sort_keys=True))
        done[key] = dict(zip(seeds, retrain_scores(problem, data, row["best_params"], seeds, done.get(key) or have)))
        single = {"test_single": row.get("test_single", row["test"])} if "retrain_seeds" not in row else {}
        values = [done[key][s] for s in seeds]
        rows[i] = {**row, **single, "trial_epochs": problem.epochs, "retrain_seeds": seeds, "test_retrains": values,
                   "test": round(statistics.mean(values), 5)}  # fmt: skip
        print(f"  {row['problem']} seed {row['seed']} {row['method']}: test {rows[i]['test']:.4f} "
              f"over {retrains} retrains {values}", flush=True)  # fmt: skip
        save_rows(rows)
    return rows


def near_mark(events: list, best_any: float, direction: str) -> tuple[int | None, float | None]:
    """Epochs and seconds at the first finished trial within 0.5 points (2%) of `best_any`; None if never."""
    for epochs, seconds, value, _ in events:
        if value is None:
            continue
        if (value >= best_any - NEAR_POINTS) if direction == "maximize" else (value <= best_any * (1 + NEAR_RATIO)):
            return epochs, seconds
    return None, None


def run_problem(
    problem: Problem,
    seeds: list[int],
    methods: list[str],
    random_extra: float,
    budget_trials: int | None = None,
    retrains: int = 1,
) -> list[dict]:
    """Every method on every seed of one problem; one row per (seed, method). The budget is Hyperband's
    epochs, or `budget_trials` full trials (a full trial: `problem.epochs` on every fold)."""
    from pipeline.features import ProcessedData  # noqa: PLC0415

    data = ProcessedData.load(problem.project / "data" / "processed" / problem.dataset)
    _, direction = direction_of(data)
    full = problem.epochs * (len(data.folds) if data.folds is not None else 1)
    rows = []
    for seed in seeds:
        traces, budget, extended = {}, (budget_trials * full if budget_trials else None), None
        for name in methods:
            started = time.perf_counter()
            if name == "random_unpruned":
                extended = METHODS[name](problem, data, int(budget * random_extra), seed)
                trace = extended.within(budget, direction)
            else:
                trace = METHODS[name](problem, data, budget or UNBOUNDED, seed)
            budget = budget or trace.epochs
            traces[name] = trace
            print(
                f"  {problem.name} seed {seed} {name}: {trace.epochs} epochs, {trace.wall_s} s, "
                f"best val {trace.best_value:.4f} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        values = [t.best_value for t in traces.values()]
        best_any = max(values) if direction == "maximize" else min(values)
        scored: dict[str, list[float]] = {}
        for name, trace in traces.items():
            key = json.dumps(trace.best_params, sort_keys=True)
            if key not in scored:
                scored[key] = retrain_scores(problem, data, trace.best_params, retrain_seeds(seed, retrains))
            events = (extended if name == "random_unpruned" else trace).events
            near_epochs, near_s = near_mark(events, best_any, direction)
            rows.append(
                {
                    "problem": problem.name,
                    "seed": seed,
                    "method": name,
                    "budget": budget,
                    "epochs": trace.epochs,
                    "wall_s": trace.wall_s,
                    "trials": len(trace.events),
                    "best_val": round(trace.best_value, 5),
                    "test": round(statistics.mean(scored[key]), 5),
                    "trial_epochs": problem.epochs,
                    "retrain_seeds": retrain_seeds(seed, retrains),
                    "test_retrains": scored[key],
                    "near_epochs": near_epochs,
                    "near_s": near_s,
                    "searched_epochs": events[-1][0],
                    "best_any_val": round(best_any, 5),
                    "best_params": trace.best_params,
                    "rounds": trace.rounds,
                    "selection": trace.selection,
                }
            )
            print(f"    {name}: test {statistics.mean(scored[key]):.4f}, near best at {near_epochs} epochs", flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and spread over seeds per (problem, method); `near_epochs` of a method that never got near
    counts as all the epochs it searched (a lower bound, flagged in `near_missed`)."""
    out = []
    for prob in dict.fromkeys(r["problem"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["problem"] == prob):
            own = [r for r in rows if r["problem"] == prob and r["method"] == method]

            def stat(key, own=own):
                vals = [r[key] for r in own]
                return round(statistics.mean(vals), 4), round(statistics.pstdev(vals), 4)

            near = [r["near_epochs"] if r["near_epochs"] is not None else r["searched_epochs"] for r in own]
            out.append(
                {
                    "problem": prob,
                    "method": method,
                    "seeds": len(own),
                    "test": stat("test"),
                    "best_val": stat("best_val"),
                    "epochs": stat("epochs"),
                    "wall_s": stat("wall_s"),
                    "near_epochs": round(statistics.mean(near), 1),
                    "near_missed": sum(r["near_epochs"] is None for r in own),
                }
            )
    return out


def paired(rows: list[dict]) -> list[dict]:
    """tunebench's test score against each peer's, paired by seed, per problem: the mean difference
    (tunebench - peer; positive is better for accuracy, negative for MAE), its 95% t interval, the
    two-sided paired t-test's p and the Wilcoxon signed-rank test's p (exact; with 5 seeds its smallest
    p is 0.0625, so the t-test is the one that can reject). None where fewer than 2 seeds are paired."""
    from scipy import stats  # noqa: PLC0415

    out = []
    for prob in dict.fromkeys(r["problem"] for r in rows):
        tb = {r["seed"]: r["test"] for r in rows if r["problem"] == prob and r["method"] == "tunebench"}
        if not tb:
            continue
        for method in dict.fromkeys(r["method"] for r in rows if r["problem"] == prob and r["method"] != "tunebench"):
            peer = {r["seed"]: r["test"] for r in rows if r["problem"] == prob and r["method"] == method}
            seeds = sorted(set(tb) & set(peer))
            diff = [tb[s] - peer[s] for s in seeds]
            entry = {"problem": prob, "peer": method, "seeds": len(seeds), "diff": None, "ci95": None,
                     "t_p": None, "wilcoxon_p": None}  # fmt: skip
            if len(seeds) >= 2:
                mean, sd = statistics.mean(diff), statistics.stdev(diff)
                half = stats.t.ppf(0.975, len(diff) - 1) * sd / len(diff) ** 0.5
                entry["diff"], entry["ci95"] = round(mean, 4), [round(mean - half, 4), round(mean + half, 4)]
                if sd > 0:
                    entry["t_p"] = round(
                        float(stats.ttest_rel([tb[s] for s in seeds], [peer[s] for s in seeds]).pvalue), 4
                    )
                if any(diff):
                    entry["wilcoxon_p"] = round(float(stats.wilcoxon(diff).pvalue), 4)
                elif sd == 0:
                    entry["t_p"] = entry["wilcoxon_p"] = 1.0  # identical on every seed
            out.append(entry)
    return out


def targets(summary: list[dict], pairs: list[dict] | None = None) -> dict:
    """The issue's targets per problem: test >= Hyperband's (maximised; <= for MAE), and the near-best
    mark in at most 30% of unpruned random search's epochs."""
    out = {}
    for prob in dict.fromkeys(s["problem"] for s in summary):
        by = {s["method"]: s for s in summary if s["problem"] == prob}
        tb, hb, rnd = by.get("tunebench"), by.get("keras_tuner_hyperband"), by.get("random_unpruned")
        if not tb:
            continue
        lower_is_better = "boston" in prob
        entry = {}
        if hb:
            entry["test_vs_hyperband"] = round(tb["test"][0] - hb["test"][0], 4)
            entry["test_at_least_hyperband"] = (
                (tb["test"][0] <= hb["test"][0]) if lower_is_better else (tb["test"][0] >= hb["test"][0])
            )
        peers = {p["peer"]: p for p in pairs or [] if p["problem"] == prob and not p["peer"].startswith("tunebench")}
        if peers:  # the best peer by mean test score; tunebench is at least as good within the seeds' noise
            # when its mean is at least the best peer's or the paired t-test cannot tell them apart (p >= 0.05)
            best = (min if lower_is_better else max)(peers, key=lambda m: by[m]["test"][0])
            p = peers[best]
            ahead = (
                (tb["test"][0] <= by[best]["test"][0]) if lower_is_better else (tb["test"][0] >= by[best]["test"][0])
            )
            entry["best_peer"] = best
            entry["test_vs_best_peer"] = round(tb["test"][0] - by[best]["test"][0], 4)
            entry["test_vs_best_peer_t_p"] = p["t_p"]
            entry["test_at_least_best_peer_within_noise"] = (
                ahead or (p["t_p"] is not None and p["t_p"] >= 0.05) if p["seeds"] >= 2 else None
            )
        if rnd:
            entry["near_epochs_ratio_to_random"] = round(tb["near_epochs"] / max(rnd["near_epochs"], 1), 3)
            entry["near_within_30pct_of_random"] = entry["near_epochs_ratio_to_random"] <= 0.30
        out[prob] = entry
    return out


def print_tables(summary: list[dict], goals: dict, pairs: list[dict] | None = None) -> None:
    """Markdown tables, one per problem, and with `pairs` one per problem of tunebench against each peer."""
    for prob in dict.fromkeys(s["problem"] for s in summary):
        print(f"\n{prob}\n")
        print("| method | test | best val | epochs | wall s | epochs to near-best (missed) |")
        print("|---|---|---|---|---|---|")
        for s in (s for s in summary if s["problem"] == prob):
            print(
                f"| {s['method']} | {s['test'][0]:.4f} ± {s['test'][1]:.4f} | {s['best_val'][0]:.4f} | "
                f"{s['epochs'][0]:.0f} | {s['wall_s'][0]:.0f} | {s['near_epochs']:.0f} ({s['near_missed']}) |"
            )
        own = [p for p in pairs or [] if p["problem"] == prob]
        if own:
            print(f"\n{prob}.paired\n")
            print(
                "| tunebench against | seeds | test difference (tunebench - peer) | 95% CI | paired t p | Wilcoxon p |"
            )
            print("|---|---|---|---|---|---|")
            for p in own:
                ci = "-" if p["ci95"] is None else f"[{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}]"
                diff = "-" if p["diff"] is None else f"{p['diff']:+.4f}"
                print(f"| {p['peer']} | {p['seeds']} | {diff} | {ci} | {p['t_p']} | {p['wilcoxon_p']} |")
        print(f"\ntargets: {goals.get(prob)}")


def save(run: Run, args: argparse.Namespace, rows: list[dict], seconds: float, merged: list[str] | None = None) -> dict:
    """Write the figures so far to `args.out` (atomically) and return them; `merged`: the commands of the
    results merged."""
    summary = summarize(rows)
    pairs = paired(rows) if args.budget_trials else []
    result = {
        "quick": args.quick,
        "budget_trials": args.budget_trials,
        "total_s": round(seconds, 1),
        # each row's test: the mean of this many retrains of its configuration (`retrain_count`)
        **({"retrains": max(retrain_count(r) for r in rows)} if rows else {}),
        "summary": summary,
        "targets": targets(summary, pairs),
        **({"paired": pairs} if pairs else {}),
        "runs": rows,
        **({"merged": merged} if merged else {}),
    }
    return run.save(args.out, json.loads(json.dumps(result, default=str)))["figures"]


def main(argv: list[str] | None = None) -> int:
    run = Run("benchmarks.search_efficiency", argv)
    ap = parser(__doc__, "search_efficiency.json")
    ap.add_argument("--problems", nargs="+", default=["rt_polarity", "boston", "digits"])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (from --first-seed)")
    ap.add_argument("--first-seed", type=int, default=0, help="e.g. seeds split over processes, then --merge")
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    ap.add_argument(
        "--random-extra",
        type=float,
        default=2.0,
        help="unpruned random search runs this many budgets for its near-best mark",
    )
    ap.add_argument("--epochs", type=int, help="a full trial's epochs for every problem (default: 6, 6, 8)")
    ap.add_argument(
        "--budget-trials",
        type=int,
        help="every method's budget: this many full trials' epochs (default: one Hyperband iteration's)",
    )
    ap.add_argument("--quick", action="store_true", help="4-epoch trials (a smoke run, not a measurement)")
    ap.add_argument("--project", type=Path, default=ROOT, help="a project after `dvc repro` (its processed data)")
    ap.add_argument("--merge", type=Path, nargs="+", help="combine the runs of earlier outputs into --out")
    ap.add_argument("--rescore", type=Path, help="an earlier output: every row's test score from --retrains retrains")
    ap.add_argument("--retrains", type=int, default=5, help="retrains of each chosen configuration for its test score")
    args = ap.parse_args(argv)
    if args.retrains < 1:
        ap.error(f"--retrains {args.retrains}: give 1 or more retrains of each chosen configuration")
    if args.rescore:
        earlier = load(args.rescore)
        args.budget_trials = earlier["figures"].get("budget_trials")
        seconds = earlier["figures"]["total_s"]
        merged = [*(earlier["figures"].get("merged") or []), earlier["command"]]

        def save_rows(rows):
            return save(run, args, rows, seconds + run.seconds(), merged=merged)

        configure_tensorflow()
        warnings.filterwarnings("ignore", module="keras")
        try:
            rows = rescore(earlier["figures"]["runs"], args.retrains, args.project.resolve(), args.epochs, save_rows)
        except ValueError as err:
            ap.error(f"--rescore {args.rescore}: {err}")
        result = save_rows(rows)
        print_tables(result["summary"], result["targets"], result.get("paired"))
        return 0
    if args.merge:  # e.g. one process per problem, run side by side
        parts = [load(p) for p in args.merge]
        done = [p["figures"] for p in parts]
        args.budget_trials = done[0].get("budget_trials")
        if any(d.get("budget_trials") != args.budget_trials for d in done):
            ap.error("--merge: the results have different --budget-trials; merge only runs of one budget")
        rows = {(r["problem"], r["seed"], r["method"]): r for d in done for r in d["runs"]}  # a later run replaces
        if len({retrain_count(r) for r in rows.values()}) > 1:
            ap.error("--merge: the rows' test scores come from different numbers of retrains; --rescore them alike")
        commands = [c for p in parts for c in [*(p["figures"].get("merged") or []), p["command"]]]  # provenance
        result = save(run, args, list(rows.values()), sum(d["total_s"] for d in done), merged=commands)
        print_tables(result["summary"], result["targets"], result.get("paired"))
        return 0
    if args.methods[0] != "keras_tuner_hyperband" and not args.budget_trials:
        ap.error("keras_tuner_hyperband must come first: its epochs are the others' budget (or give --budget-trials)")
    configure_tensorflow()  # quiet, one thread: the same for every method
    warnings.filterwarnings("ignore", module="keras")
    started = time.perf_counter()
    rows: list[dict] = []
    for name in args.problems:  # saved after every problem: a long run that stops keeps what it measured
        problem = problems(args.quick, args.project.resolve())[name]
        problem.epochs = args.epochs or problem.epochs
        for seed in range(args.first_seed, args.first_seed + args.seeds):  # saved after every seed too
            rows += run_problem(problem, [seed], args.methods, args.random_extra, args.budget_trials, args.retrains)
            result = save(run, args, rows, time.perf_counter() - started)
    print_tables(result["summary"], result["targets"], result.get("paired"))
    print(f"\n{result['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
