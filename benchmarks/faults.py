"""Benchmark a distributed search under faults: nothing may be lost, and what does each fault cost?

On a throwaway PostgreSQL cluster and `mlflow server` (`pipeline/servers.py`), each scenario of
`fault_scenarios.SCENARIOS` (SIGKILL of one worker mid-trial; SIGKILL of every worker and the
launcher, then a rerun at once or after the heartbeat grace period; PostgreSQL restart
mid-round; MLflow server restart mid-round; 4 workers on 2 launchers with a PostgreSQL restart)
runs `--repeat` times through the real CLI (`python -m pipeline search --workers 2`), each time
paired with the same launches without the fault. Reported per scenario: trials expected,
finished, lost, duplicate configurations, trials left RUNNING, MLflow runs left RUNNING (the
last four must be 0), the launchers' exit codes, and the wall-time cost of the fault (median of
faulted minus baseline wall time).

Usage: `python -m benchmarks.faults [--repeat 3] [--quick] [--only NAME ...] [--out FILE.json]`
(`--quick`: one repeat of smaller rounds; default output `benchmarks/results/faults.json`).
Exits 1 when a scenario lost, duplicated or left anything running.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks import fault_scenarios as fs
from benchmarks.runner import Run, parser

ZEROS = ("lost", "duplicates", "running_left", "mlflow_running")
COLUMNS = ("expected", "finished", "lost", "duplicates", "running_left", "mlflow_running")


def summarize(name: str, pairs: list[tuple[dict, dict]]) -> dict:
    """One scenario's row: the faulted runs' counts (worst of the repeats) and the median cost of the fault."""
    faulted = [f for _, f in pairs]
    row = {"scenario": name, "repeats": len(pairs)}
    row["expected"] = faulted[0]["expected"]
    row["finished"] = min(f["finished"] for f in faulted)
    for col in ZEROS:
        row[col] = max(f[col] for f in faulted)
    row["interrupted"] = max(f["interrupted"] for f in faulted)
    row["exit_codes_ok"] = all(c == 0 for f in faulted for c in f["exit_codes"]) and all(
        c == 0 for b, _ in pairs for c in b["exit_codes"])  # fmt: skip
    row["tracebacks"] = sum(f["tracebacks"] for f in faulted)
    row["baseline_s"] = round(statistics.median(b["wall_s"] for b, _ in pairs), 1)
    row["faulted_s"] = round(statistics.median(f["wall_s"] for _, f in pairs), 1)
    row["cost_s"] = round(statistics.median(f["wall_s"] - b["wall_s"] for b, f in pairs), 1)
    row["ok"] = row["exit_codes_ok"] and all(row[c] == 0 for c in ZEROS) and row["finished"] == row["expected"]
    return row


def table(rows: list[dict]) -> str:
    """The Markdown table README quotes."""
    head = ("| scenario | trials expected | finished | lost | duplicate configs | RUNNING left | MLflow RUNNING left "
            "| wall s (no fault / fault) | cost of the fault |")  # fmt: skip
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['expected']} | {r['finished']} | {r['lost']} | {r['duplicates']} | "
                     f"{r['running_left']} | {r['mlflow_running']} | {r['baseline_s']} / {r['faulted_s']} | "
                     f"{r['cost_s']:+.1f} s |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run = Run("benchmarks.faults", argv)
    ap = parser(__doc__, "faults.json")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat of smaller rounds")
    ap.add_argument("--only", nargs="*", choices=fs.SCENARIOS, help="run only these scenarios")
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    sizes = fs.QUICK if args.quick else fs.Sizes()
    names = args.only or list(fs.SCENARIOS)
    runs: dict[str, list[tuple[dict, dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="tunebench-faults-") as tmp, fs.services() as svc:
        project = fs.make_project(Path(tmp) / "proj", svc.ml.uri)
        for i in range(repeat):
            for name in names:
                base = fs.run_scenario(name, svc, project, sizes, fault=False, tag=f"_{i}")
                hit = fs.run_scenario(name, svc, project, sizes, fault=True, tag=f"_{i}")
                runs.setdefault(name, []).append((base, hit))
                run.progress(f"{name} #{i + 1}: {base['wall_s']} s without the fault, {hit['wall_s']} s with it; "
                             + ", ".join(f"{c} {hit[c]}" for c in COLUMNS))  # fmt: skip
    rows = [summarize(name, runs[name]) for name in names]
    print(table(rows))
    result = {
        "what": "distributed search (PostgreSQL + mlflow server, --workers 2) under faults; counts must be 0 where "
                "named so; cost = median(faulted - baseline wall time)",
        "sizes": {"budgets": list(sizes.budgets), "epochs": sizes.epochs, "model": "numpy_mlp on digits"},
        "repeat": repeat, "grace_s": fs.GRACE_S, "heartbeat_s": fs.HEARTBEAT_S, "down_s": fs.DOWN_S,
        "scenarios": rows, "runs": runs, "table": table(rows), "seconds": round(run.seconds(), 1),
    }  # fmt: skip
    run.save(args.out, result)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
