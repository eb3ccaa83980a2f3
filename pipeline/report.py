"""The benchmark report: a leaderboard across datasets and model families, next to reference results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import io, paths
from pipeline.config import Params
from pipeline.reference import reference_for


def leaderboard(params: Params) -> pd.DataFrame:
    """One row per benchmark with a metrics file: test metric, baseline floor, reference, search summary."""
    rows = []
    for key, bench in params.benchmarks.items():
        mfile = paths.metrics_file(key)
        if not mfile.exists():
            continue
        m = io.read_json(mfile)
        search = io.read_json(paths.search_result(key)) if paths.search_result(key).exists() else {}
        ref = reference_for(bench.dataset) or {}
        metric = m["metric"]
        rounds = search.get("rounds", [])
        counts = [r.get("counts", {}) for r in rounds]
        promo = paths.promotion_file(key)
        rows.append({
            "benchmark": key, "dataset": bench.dataset, "model": bench.model, "metric": metric,
            "test": m["test"][metric], "test_loss": m["test"].get("loss"), "baseline": m["baseline"][metric],
            "reference": ref.get("value") if ref.get("metric") == metric else None,
            "reference_model": ref.get("model"), "direction": m["direction"],
            # trials that count against the budgets (interrupted and surplus ones do not), as the search ran them
            "trials": sum(r.get("budget_used", sum(r.get("counts", {}).values())) for r in rounds),
            "pruned": sum(c.get("pruned", 0) for c in counts),
            "best_params": (search.get("best") or {}).get("params"),
            "champion": io.read_json(promo).get("promote") if promo.exists() else None,
        })  # fmt: skip
    df = pd.DataFrame(rows)
    if not df.empty:
        df["beats_baseline"] = [
            (t > b) if d == "maximize" else (t < b) for t, b, d in zip(df["test"], df["baseline"], df["direction"])
        ]
    return df


def write_report(params: Params) -> Path:
    """Write `reports/leaderboard.csv` and `reports/leaderboard.md`; return the Markdown path."""
    df = leaderboard(params)
    io.write_text_atomic(paths.LEADERBOARD_CSV, df.to_csv(index=False))
    lines = ["# tunebench leaderboard", "",
             "Test-split results of each benchmark's retrained best model, the trivial baseline "
             "(majority class / mean) and the reference result where the book reports one.", ""]  # fmt: skip
    if df.empty:
        lines.append("No benchmark has been evaluated yet (run `dvc repro`).")
    else:
        lines.append("| benchmark | model | metric | test | baseline | reference | trials (pruned) | best params |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in df.to_dict("records"):
            ref = f"{r['reference']:.4g}" if r["reference"] is not None and r["reference"] == r["reference"] else "-"
            bp = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in (r["best_params"] or {}).items())  # fmt: skip
            lines.append(f"| {r['benchmark']} | {r['model']} | {r['metric']} ({r['direction'][:3]}) | "
                         f"{r['test']:.4f} | {r['baseline']:.4f} | {ref} | {r['trials']} ({r['pruned']}) | {bp} |")
    io.write_text_atomic(paths.LEADERBOARD_MD, "\n".join(lines) + "\n")
    return paths.LEADERBOARD_MD
