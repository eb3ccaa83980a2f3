"""The replay benchmark: search methods on recorded learning curves, compared by regret, ranks and tests.

Every method (`methods.py`) searches every recorded problem (`curves/*.npz`) with budgets of 10, 30
and 100 full-trial equivalents (a full trial: the recording's epochs on every fold), once per search
seed. A method's *regret* is the expected test score (`Curves.quality`) of its configuration below
the grid's best; *final regret* is that of the configuration it reports, *anytime regret* the mean
over the budget of the regret of its incumbent (its best finished trial so far by validation score;
before any, a random configuration's mean regret), as the area under the best-so-far curve. Per
budget, methods are ranked on each (problem, seed) by final regret (ties share a rank): mean rank,
Friedman test over methods, and two-sided Wilcoxon signed-rank tests of tunebench against each peer.
Each finished search is appended to `--runs` (JSON lines), so a stopped run resumes and `--report`
alone rebuilds the results: `benchmarks/results/replay.json` and an anytime-regret plot per problem
(`benchmarks/results/replay_<problem>.png`, named after `--out`; the result lists them as `plots`).

    python -m benchmarks.replay.bench                                  # every problem, method, budget; 25 seeds
    python -m benchmarks.replay.bench --problems digits_numpy_mlp --seeds 5 --budgets 10
    python -m benchmarks.replay.bench --report                         # tables and plots from --runs
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.replay import methods as m
from benchmarks.replay.fast import run_rounds
from benchmarks.runner import RESULTS, Run, parser
from pipeline.models.replay import CURVES

BASELINE = "tunebench"
# name -> tunebench schedule choices (`methods.tunebench_rounds`) or a peer
TUNEBENCH = {
    "tunebench": {},
    "tunebench_sh": {"coarse_pruner": "successive_halving"},
    "tunebench_coarse20": {"coarse_share": 0.2},
    "tunebench_coarse60": {"coarse_share": 0.6},
    "tunebench_enqueue3": {"enqueue_best": 3},
    "tunebench_wide": {"top_quantile": 1.0},
    "tunebench_hyperband": {"coarse_pruner": "hyperband", "fine_pruner": "hyperband"},
    "tunebench_warm": {"warm_start": True},
    "tunebench_warm_wide": {"warm_start": True, "top_quantile": 1.0},
    "tunebench_pad30": {"pad": 0.3},
    "tunebench_warm_pad30": {"warm_start": True, "pad": 0.3},
    "tunebench_explore": {"explore": 1 / 3},
    "tunebench_warm_explore": {"warm_start": True, "explore": 1 / 3},
    "tunebench_pad50": {"pad": 0.5},
    "tunebench_q70": {"top_quantile": 0.7},
    "tunebench_pad30_explore": {"pad": 0.3, "explore": 1 / 3},
    "tunebench_pad10": {"pad": 0.1},  # the default until the replay chose 0.5
    "tunebench_pad40": {"pad": 0.4},
    "tunebench_pad70": {"pad": 0.7},
    "tunebench_len33": {"coarse_length": 1 / 3},
    "tunebench_len50": {"coarse_length": 0.5},
    "tunebench_len50_share60": {"coarse_length": 0.5, "coarse_share": 0.6},
    "tunebench_len50_q60": {"coarse_length": 0.5, "top_quantile": 0.6},
    "tunebench_q60": {"top_quantile": 0.6},
    # robust selection (`SelectionConfig`) with its cost taken from the rounds' budget: top_k x repeats
    "tunebench_sel3x2": {"selection": {"top_k": 3, "repeats": 2}},
    "tunebench_sel3x1": {"selection": {"top_k": 3, "repeats": 1}},
    "tunebench_sel2x1": {"selection": {"top_k": 2, "repeats": 1}},
    # the fine round's narrowing leaves these at the coarse round's ranges (in memory only: `--fast`)
    "tunebench_keep_dropout": {"keep": ("dropout",)},
    "tunebench_keep_l2": {"keep": ("l2",)},
    "tunebench_keep_reg": {"keep": ("dropout", "l2")},
    "tunebench_enqueue0": {"enqueue_best": 0},
    "tunebench_coarse_random": {"coarse_sampler": "random"},  # a round's `sampler`
    "tunebench_fine_random": {"fine_sampler": "random"},
}
PEERS = {
    "random": lambda p, b, s: m.run_optuna(p, b, s, sampler="random", pruner="none"),
    "optuna_tpe_median": lambda p, b, s: m.run_optuna(p, b, s, sampler="tpe", pruner="median"),
    "optuna_tpe_hyperband": lambda p, b, s: m.run_optuna(p, b, s, sampler="tpe", pruner="hyperband"),
    "keras_tuner_hyperband": m.run_keras_tuner,
    "ray_asha": m.run_ray_asha,
    "smac": m.run_smac,
}
DEFAULT_METHODS = ["tunebench", *PEERS]


def run_one(problem: m.ReplayProblem, method: str, budget: int, seed: int, workdir: Path, fast: bool = False) -> dict:
    """One search; its row: regrets, epochs, trials, seconds and the incumbents' path. `fast`: tunebench's
    rounds in memory (`fast.run_rounds`), for screening."""
    started = time.perf_counter()
    epochs = budget * problem.epochs * problem.folds
    key = f"{problem.name}_{method}_b{budget}_s{seed}"
    if method in TUNEBENCH:
        choices = dict(TUNEBENCH[method])
        selection = choices.pop("selection", None)  # its full trials come out of the rounds' budget
        rounds = m.tunebench_rounds(problem, budget, reserve=m.selection_cost(selection), **choices)
    if method in TUNEBENCH and fast:
        trace = run_rounds(problem, budget, seed, rounds, key, selection=selection)
    elif method in TUNEBENCH:
        if "keep" in choices:
            raise ValueError(f"{method}: `keep` is a screen-only choice; run it with --fast")
        project = m.make_project(problem, workdir / problem.name)
        trace = m.run_tunebench(problem, budget, seed, project, rounds, key, selection=selection)
    else:
        trace = PEERS[method](problem, epochs, seed)
    path = anytime_path(problem, trace.events, epochs)
    return {
        "problem": problem.name, "method": method, "budget": budget, "seed": seed,
        "final_regret": problem.regret(trace.best_params), "anytime_regret": anytime(path, epochs),
        "epochs": trace.epochs, "budget_epochs": epochs, "trials": len(trace.events),
        "wall_s": round(time.perf_counter() - started, 2), "best_params": trace.best_params, "path": path,
        **({"fast": True} if fast and method in TUNEBENCH else {}),
    }  # fmt: skip


def anytime_path(problem: m.ReplayProblem, events: list, budget_epochs: int) -> list[list[float]]:
    """The incumbent's regret after each finished trial within the budget: `[epochs, regret]` where it changes,
    starting at `[0, a random configuration's regret]`."""
    path, best = [[0, problem.regret(None)]], None
    for epochs, _, value, params in events:
        if epochs > budget_epochs:
            break
        if value is not None and m._better(value, best, problem.direction):
            best = value
            path.append([epochs, problem.regret(params)])
    return path


def anytime(path: list[list[float]], budget_epochs: int) -> float:
    """The mean regret over the budget: the area under the step curve `path`, divided by the budget."""
    area = sum((b[0] - a[0]) * a[1] for a, b in zip(path, path[1:], strict=False))
    return float((area + (budget_epochs - path[-1][0]) * path[-1][1]) / budget_epochs)


def compare(rows: list[dict], key: str, methods: list[str]) -> dict:
    """Mean rank of every method over the (problem, seed) blocks that all of `methods` ran, Friedman's test,
    and Wilcoxon signed-rank tests of `BASELINE` against each other method (two-sided)."""
    from scipy import stats  # noqa: PLC0415

    by = {(r["problem"], r["seed"], r["method"]): r[key] for r in rows}
    blocks = sorted({(r["problem"], r["seed"]) for r in rows})
    blocks = [b for b in blocks if all((*b, x) in by for x in methods)]
    if not blocks:
        return {}
    table = np.array([[by[(*b, x)] for x in methods] for b in blocks])
    ranks = np.array([stats.rankdata(row) for row in table])
    out: dict = {"blocks": len(blocks), "mean_rank": dict(zip(methods, ranks.mean(axis=0).round(3).tolist(),
                                                             strict=True))}  # fmt: skip
    out["mean"] = dict(zip(methods, table.mean(axis=0).round(5).tolist(), strict=True))
    if len(methods) >= 3:
        f = stats.friedmanchisquare(*table.T)
        out["friedman_p"] = float(f.pvalue) if np.isfinite(f.pvalue) else 1.0
    if BASELINE in methods:
        base = table[:, methods.index(BASELINE)]
        tests = {}
        for j, x in enumerate(methods):
            if x == BASELINE:
                continue
            diff = base - table[:, j]
            p = 1.0 if not np.any(diff) else float(stats.wilcoxon(base, table[:, j]).pvalue)
            tests[x] = {"p": round(p, 5), "tunebench_minus_peer": round(float(diff.mean()), 5),
                        "tunebench_better": int((diff < 0).sum()), "peer_better": int((diff > 0).sum())}  # fmt: skip
        out["wilcoxon_vs_tunebench"] = tests
    return out


def report(rows: list[dict], methods: list[str]) -> dict:
    """Per budget (pooled over problems) and per problem and budget: `compare` of final and anytime regret."""
    out: dict = {"pooled": {}, "by_problem": {}}
    for budget in sorted({r["budget"] for r in rows}):
        at = [r for r in rows if r["budget"] == budget]
        out["pooled"][str(budget)] = {k: compare(at, k, methods) for k in ("final_regret", "anytime_regret")}
        for prob in sorted({r["problem"] for r in at}):
            own = [r for r in at if r["problem"] == prob]
            out["by_problem"].setdefault(prob, {})[str(budget)] = {
                k: compare(own, k, methods) for k in ("final_regret", "anytime_regret")
            }
    return out


def screen(rows: list[dict], variants: list[str]) -> dict:
    """Per budget and tunebench variant: `compare` of its final regret with the peers' (the variant in
    tunebench's place: mean ranks, Friedman, Wilcoxon against each peer), and against tunebench's default
    (two-sided Wilcoxon; `variant_better`: blocks where the variant's regret is lower)."""
    from scipy import stats  # noqa: PLC0415

    out: dict = {}
    for budget in sorted({r["budget"] for r in rows}):
        at = [r for r in rows if r["budget"] == budget]
        peers = [x for x in PEERS if any(r["method"] == x for r in at)]
        base = {(r["problem"], r["seed"]): r["final_regret"] for r in at if r["method"] == BASELINE}
        for v in variants:
            own = {(r["problem"], r["seed"]): r["final_regret"] for r in at if r["method"] == v}
            if not own:
                continue
            swapped = [{**r, "method": BASELINE} if r["method"] == v else r for r in at if r["method"] in (v, *peers)]
            entry = compare(swapped, "final_regret", [BASELINE, *peers])
            both = sorted(set(own) & set(base))
            a, b = np.array([own[k] for k in both]), np.array([base[k] for k in both])
            p = 1.0 if not np.any(a - b) else float(stats.wilcoxon(a, b).pvalue)
            entry["vs_default"] = {"blocks": len(both), "p": round(p, 5), "variant_better": int((a < b).sum()),
                                   "default_better": int((a > b).sum())}  # fmt: skip
            out.setdefault(str(budget), {})[v] = entry
    return out


def figure(rows: list[dict], prob: str, methods: list[str], out: Path) -> Path:
    """Mean anytime regret (over seeds) against the budget spent, one line per method, at the largest budget."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    budget = max(r["budget"] for r in rows if r["problem"] == prob)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for method in methods:
        own = [r for r in rows if r["problem"] == prob and r["budget"] == budget and r["method"] == method]
        if not own:
            continue
        total = own[0]["budget_epochs"]
        grid = np.linspace(0, total, 201)
        curves = [np.array([next(reg for e, reg in reversed(r["path"]) if e <= x) for x in grid]) for r in own]
        ax.plot(grid / (total / budget), np.mean(curves, axis=0), label=f"{method} ({len(own)} seeds)",
                lw=2.2 if method == BASELINE else 1.3)  # fmt: skip
    ax.set(xlabel="full-trial equivalents spent", ylabel="test regret of the incumbent (mean)", yscale="symlog",
           title=f"{prob}: anytime regret, budget {budget}")  # fmt: skip
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def print_tables(result: dict, methods: list[str]) -> None:
    """Markdown: per budget, each method's mean final regret, mean rank and Wilcoxon p against tunebench."""
    for budget, entry in result["pooled"].items():
        final = entry["final_regret"]
        if not final:
            continue
        print(f"\nbudget {budget} full trials: {final['blocks']} (problem, seed) blocks, "
              f"Friedman p = {final.get('friedman_p', float('nan')):.3g}\n")  # fmt: skip
        print("| method | mean final regret | mean rank | anytime regret | anytime rank | p vs tunebench (final) |")
        print("|---|---|---|---|---|---|")
        anyt = entry["anytime_regret"]
        for x in methods:
            test = final.get("wilcoxon_vs_tunebench", {}).get(x)
            shown = "" if test is None else f"{test['p']:.3g} ({test['tunebench_better']}:{test['peer_better']})"
            print(f"| {x} | {final['mean'][x]:.4f} | {final['mean_rank'][x]:.2f} | {anyt['mean'][x]:.4f} | "
                  f"{anyt['mean_rank'][x]:.2f} | {shown} |")  # fmt: skip


PEER_NAMES = {
    "tunebench": "tunebench",
    "random": "random",
    "optuna_tpe_median": "TPE + median",
    "optuna_tpe_hyperband": "TPE + Hyperband",
    "keras_tuner_hyperband": "KT Hyperband",
    "ray_asha": "Ray ASHA",
    "smac": "SMAC3 MF",
}


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}".replace("e-0", "e-")


def rank_table(final_by_budget: dict, methods: list[str]) -> str:
    """Markdown, a row per budget: each method's mean rank on final regret (the best in bold), tunebench's
    two-sided Wilcoxon p against each peer in brackets, and the Friedman p (`final_by_budget`: budget ->
    a `compare` result)."""
    head = ["budget", "blocks", *(PEER_NAMES.get(x, x) for x in methods), "Friedman p"]
    rows = []
    for budget in sorted(final_by_budget, key=int):
        final = final_by_budget[budget]
        best = min(final["mean_rank"][x] for x in methods)
        cells = []
        for x in methods:
            rank = f"{final['mean_rank'][x]:.2f}"
            cell = f"**{rank}**" if final["mean_rank"][x] == best else rank
            test = final.get("wilcoxon_vs_tunebench", {}).get(x)
            cells.append(cell if test is None else f"{cell} ({_p(test['p'])})")
        friedman = final.get("friedman_p")  # none with fewer than 3 methods
        rows.append([budget, final["blocks"], *cells, "-" if friedman is None else _p(friedman)])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def load_rows(path: Path) -> list[dict]:
    """The searches recorded in `path` (JSON lines), the last of each (problem, method, budget, seed)."""
    if not path.exists():
        return []
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[(r["problem"], r["method"], r["budget"], r["seed"])] = r
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    run = Run("benchmarks.replay.bench", argv)
    ap = parser(__doc__, "replay.json")
    ap.add_argument("--curves", type=Path, default=CURVES, help="the folder of the recordings")
    ap.add_argument("--problems", nargs="+", help="recordings in --curves (default: all)")
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=[*TUNEBENCH, *PEERS])
    ap.add_argument("--budgets", nargs="+", type=int, default=[10, 30, 100])
    ap.add_argument("--seeds", type=int, default=25, help="search seeds 0..N-1 (from --first-seed)")
    ap.add_argument("--first-seed", type=int, default=0, help="the first search seed (held-out seeds: 25)")
    ap.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[RESULTS / "replay_runs.jsonl"],
        help="JSON lines of finished searches: all are read, new ones appended to the first",
    )
    ap.add_argument("--report", action="store_true", help="only rebuild the results from --runs")
    ap.add_argument("--workdir", type=Path, help="where tunebench's projects go (default: a temporary folder)")
    ap.add_argument("--fast", action="store_true", help="tunebench's rounds in memory (fast.py): for screening only")
    ap.add_argument("--screen", type=Path, help="with --report: each tunebench variant against the peers, to here")
    args = ap.parse_args(argv)
    args.problems = args.problems or sorted(p.stem for p in args.curves.glob("*.npz"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="replay-"))
    done = {(r["problem"], r["method"], r["budget"], r["seed"]) for p in args.runs for r in load_rows(p)}
    args.runs[0].parent.mkdir(parents=True, exist_ok=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    for prob, budget, seed, method in (
        (p, b, s, x) for p in args.problems for b in args.budgets for s in seeds for x in args.methods
    ):
        if args.report or (prob, method, budget, seed) in done:
            continue
        row = run_one(m.ReplayProblem(str(args.curves / f"{prob}.npz")), method, budget, seed, workdir, args.fast)
        with args.runs[0].open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{prob} b{budget} s{seed} {method}: regret {row['final_regret']:.4f} ({row['wall_s']} s)", flush=True)
    wanted = {"problem": args.problems, "method": args.methods, "budget": args.budgets, "seed": seeds}
    rows = [r for p in args.runs for r in load_rows(p) if all(r[k] in v for k, v in wanted.items())]
    if args.screen:
        variants = [x for x in args.methods if x in TUNEBENCH]
        run.save(args.screen, {"budgets": screen(rows, variants)})
        return 0
    result = report(rows, args.methods)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    wall = {x: round(sum(r["wall_s"] for r in rows if r["method"] == x), 1) for x in args.methods}
    plots = [
        str(figure(rows, p, args.methods, args.out.parent / f"{args.out.stem}_{p}.png"))
        for p in sorted({r["problem"] for r in rows})
    ]
    summary = {"methods": args.methods, "seconds_by_method": wall, "plots": plots, "searches": len(rows), **result}
    print_tables(result, args.methods)
    run.save(args.out, json.loads(json.dumps(summary, default=float)))
    print(f"\nseconds by method: {wall}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
