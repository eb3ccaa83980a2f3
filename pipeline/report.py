"""The benchmark report: a leaderboard across datasets and model families, next to reference results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import io, paths
from pipeline.config import Params
from pipeline.reference import reference_for


def leaderboard(params: Params) -> pd.DataFrame:
    """One row per benchmark with a metrics file: test metric, baseline floor, reference, search cost and best."""
    rows = []
    for key, bench in params.benchmarks.items():
        mfile = paths.metrics_file(key)
        if not mfile.exists():
            continue
        m = io.read_json(mfile)
        meaning = io.read_json(paths.evaluation_file(key))
        search = io.read_json(paths.search_result(key)) if paths.search_result(key).exists() else {}
        ref = reference_for(bench.dataset) or {}
        metric = meaning["metric"]
        promo = paths.promotion_file(key)
        rows.append({
            "benchmark": key, "dataset": bench.dataset, "model": bench.model, "metric": metric,
            "test": m["test"][metric], "test_loss": m["test"].get("loss"), "baseline": m["baseline"][metric],
            "reference": ref.get("value") if ref.get("metric") == metric else None,
            "reference_model": ref.get("model"), "direction": meaning["direction"],
            "trials": m["search"]["trials"], "pruned": m["search"]["pruned"],
            "epochs": m["search"]["epochs"], "epochs_saved": m["search"].get("epochs_saved"),
            "search_wall_s": m["search"]["wall_s"], "best_at_epochs": m["search"].get("best_at_epochs"),
            "best_at_s": m["search"].get("best_at_s"), "near_best_at_epochs": m["search"].get("near_best_at_epochs"),
            "best_params": (search.get("best") or {}).get("params"),
            "champion": io.read_json(promo).get("promote") if promo.exists() else None,
            "weight_sparsity": (m.get("weights") or {}).get("sparsity"),
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
        lines.append("| benchmark | model | metric | test | baseline | reference | trials (pruned) "
                     "| epochs (saved by pruning) | to best: epochs, s | best params |")  # fmt: skip
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in df.to_dict("records"):
            ref = f"{r['reference']:.4g}" if r["reference"] is not None and r["reference"] == r["reference"] else "-"
            bp = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in (r["best_params"] or {}).items())  # fmt: skip
            sparse = r.get("weight_sparsity")
            model = r["model"] if sparse is None or sparse != sparse else f"{r['model']} ({sparse:.0%} weights ~0)"
            lines.append(f"| {r['benchmark']} | {model} | {r['metric']} ({r['direction'][:3]}) | "
                         f"{r['test']:.4f} | {r['baseline']:.4f} | {ref} | {r['trials']} ({r['pruned']}) | "
                         f"{r['epochs']} ({_num(r['epochs_saved'])}) | {_num(r['best_at_epochs'])}, "
                         f"{_num(r['best_at_s'])} | {bp} |")  # fmt: skip
    io.write_text_atomic(paths.LEADERBOARD_MD, "\n".join(lines) + "\n")
    return paths.LEADERBOARD_MD


def _num(v) -> str:
    """A count or seconds for the table; `-` where the metrics file has none (NaN in the frame)."""
    return "-" if v is None or v != v else f"{v:g}"


def summary_table(params: Params) -> str:
    """The end-of-job table (`tunebench summary`): per benchmark its test metric, the baseline and
    what happened to the registry's `champion` (moved to the new version, or kept)."""
    df = leaderboard(params)
    if df.empty:
        return "No benchmark has been evaluated yet (run `dvc repro`)."
    rows = [("benchmark", "metric", "test", "baseline", "champion")]
    for r in df.to_dict("records"):
        promo = paths.promotion_file(r["benchmark"])
        champion = _champion_note(io.read_json(promo)) if promo.exists() else "- (not promoted yet)"
        rows.append((r["benchmark"], f"{r['metric']} ({r['direction'][:3]})", f"{r['test']:.4f}",
                     f"{r['baseline']:.4f}", champion))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([*(c.rjust(w) if i in (2, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))),
                        row[4]]).rstrip()
             for row in rows]  # fmt: skip
    return "\n".join([*lines, f"(full leaderboard: {paths.LEADERBOARD_MD}; runs: `tunebench ui`)"])


def _champion_note(p: dict) -> str:
    """`moved to v3 (was v2: 0.7750)`, `kept v2 (0.7750); v3 is challenger`, `v1 (first)`."""
    value = f"{p['champion_value']:.4f}" if p.get("champion_value") is not None else None
    if not p.get("promote"):
        return f"kept v{p['champion_version']}{f' ({value})' if value else ''}; v{p['version']} is challenger"
    if p.get("champion_version") is None:
        return f"v{p['version']} (first)"
    if str(p["champion_version"]) == str(p["version"]):
        return f"v{p['version']} (unchanged)"
    was = f"v{p['champion_version']}{f': {value}' if value else ''}{', forced' if p.get('reason') == 'forced' else ''}"
    return f"moved to v{p['version']} (was {was})"
