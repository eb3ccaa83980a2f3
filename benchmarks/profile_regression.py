"""Does more search ever give a worse model? Compare two runs of the pipeline, benchmark by benchmark.

Reads `results/evaluation/<benchmark>.json` (the per-seed test scores that `evaluate` writes) from a
project that ran the default profile and one that ran a bigger profile (e.g. `full`), for every
benchmark both ran. For each: both runs' seed means with their 95% Student-t intervals
(`pipeline.stats.seed_summary`, the intervals the leaderboard shows), Welch's t-test of the
difference (two-sided), and the verdict the issue's rule asks for: `worse` only when the bigger
run's interval lies entirely on the worse side of the default run's, `better` for the mirror case,
else `same within the intervals`. Saves `benchmarks/results/profile_regression.json`.

    python -m benchmarks.profile_regression --default ../default-run --bigger ../full-run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.runner import Run, parser
from pipeline.stats import seed_summary


def load_scores(project: Path) -> dict[str, dict]:
    """`{benchmark: {"metric", "direction", "values", "served"}}` from a project's evaluation files."""
    out = {}
    for path in sorted((project / "results" / "evaluation").glob("*.json")):
        e = json.loads(path.read_text())
        values = [s[e["metric"]] for s in e["per_seed"]]
        out[e["benchmark"]] = {"metric": e["metric"], "direction": e["direction"], "values": values}
    return out


def verdict(default: dict, bigger: dict, direction: str) -> str:
    """`worse`, `better` or `same within the intervals`, by where the two 95% intervals lie."""
    sign = 1 if direction == "maximize" else -1
    lo_d, hi_d = sorted((sign * default["ci_low"], sign * default["ci_high"]))
    lo_b, hi_b = sorted((sign * bigger["ci_low"], sign * bigger["ci_high"]))
    if hi_b < lo_d:
        return "worse"
    if lo_b > hi_d:
        return "better"
    return "same within the intervals"


def compare(default: dict[str, dict], bigger: dict[str, dict]) -> list[dict]:
    """One row a benchmark both runs evaluated."""
    from scipy import stats  # noqa: PLC0415

    rows = []
    for name in sorted(set(default) & set(bigger)):
        d, b = default[name], bigger[name]
        sd, sb = seed_summary(d["values"]), seed_summary(b["values"])
        p = None  # one seed, or scores that do not vary over seeds (a deterministic model): no test
        if min(sd["n"], sb["n"]) > 1 and max(sd["std"], sb["std"]) > 1e-12:
            p = float(stats.ttest_ind(sb["values"], sd["values"], equal_var=False).pvalue)
        rows.append({"benchmark": name, "metric": d["metric"], "direction": d["direction"], "default": sd,
                     "bigger": sb, "welch_p": p, "verdict": verdict(sd, sb, d["direction"])})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    run = Run("benchmarks.profile_regression", argv)
    ap = parser(__doc__, "profile_regression.json")
    ap.add_argument("--default", required=True, type=Path, help="a project that ran the default profile")
    ap.add_argument("--bigger", required=True, type=Path, help="a project that ran a bigger profile (e.g. full)")
    args = ap.parse_args(argv)
    default, bigger = load_scores(args.default), load_scores(args.bigger)
    rows = compare(default, bigger)
    if not rows:
        print(f"error: no benchmark evaluated in both {args.default} and {args.bigger} (results/evaluation/)",
              file=sys.stderr)  # fmt: skip
        return 2
    for r in rows:
        d, b = r["default"], r["bigger"]
        p = "-" if r["welch_p"] is None else f"{r['welch_p']:.3f}"
        print(f"{r['benchmark']:>26} {r['metric']}: default {d['mean']:.4f} [{d['ci_low']:.4f}, {d['ci_high']:.4f}] "
              f"(n={d['n']}), bigger {b['mean']:.4f} [{b['ci_low']:.4f}, {b['ci_high']:.4f}] (n={b['n']}), "
              f"Welch p {p}: {r['verdict']}")  # fmt: skip
    out = {"rows": rows, "worse": [r["benchmark"] for r in rows if r["verdict"] == "worse"]}
    run.save(args.out, out)
    return 1 if out["worse"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
