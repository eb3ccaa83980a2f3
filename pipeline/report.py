"""The benchmark report: a leaderboard across datasets and model families, next to published results.

`collect` gathers one row per benchmark of params.yaml from the stage files (`metrics/`,
`results/`, `promotions/`), the Optuna storages (trials by round, failed ones) and MLflow (the
registry version and aliases of the evaluated model, the best trial's learning curves); a
benchmark whose data is not available here is a row "not run here" with the fetch hint.
`write_report` writes `reports/leaderboard.{md,csv}`, the self-contained page
`reports/index.html` (`pipeline.report_page`) and the DVC metric `test_metrics.json`
(`metric_per_benchmark`). To add a column: a key in `_row` and an entry in `MD_COLUMNS`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline import fileio, paths, report_sources, tracking
from pipeline.config import Params
from pipeline.reference import goal_for, reference_for
from pipeline.stats import placement

NOT_RUN = "not run here"
NOT_YET = "not evaluated yet"


def collect(params: Params, *, details: bool = False) -> list[dict]:
    """One dict per benchmark (params.yaml's order); with `details`, also `trials_table` (Optuna),
    `curves` (the best trial's per-epoch MLflow metrics) and `ranges` (each round's search space).
    An unreachable database or MLflow server is noted at once (only a search rides out outages)."""
    mlc, mlflow_note = None, None
    rows = []
    for key, bench in params.benchmarks.items():
        row = _row(params, key, bench)
        if row["status"] == "run" and mlc is None and mlflow_note is None:
            mlc, mlflow_note = report_sources.tracking_client(params)
        if row["status"] == "run":
            _add_stores(params, row, mlc, mlflow_note, details)
        rows.append(row)
    return rows


def _row(params: Params, key: str, bench) -> dict:
    """The row of one benchmark from the stage files and the reference table."""
    catalog = params.catalog_name(bench.dataset)
    ref = reference_for(catalog, bench.model)
    goal = goal_for(catalog, bench.model)
    row: dict = {"benchmark": key, "dataset": bench.dataset, "model": bench.model,
                 "reference": ref.value if ref else None, "reference_shown": ref.shown if ref else "no reference",
                 "reference_model": ref.model if ref else None, "reference_source": ref.source if ref else None,
                 "goal": goal[1] if goal else None}  # fmt: skip
    mfile = paths.metrics_file(key)
    if not mfile.exists() or not paths.evaluation_file(key).exists():
        where, hint = report_sources.availability(params, bench.dataset)
        return {**row, "status": NOT_RUN if hint else NOT_YET, "availability": where, "fetch_hint": hint,
                "metric": ref.metric if ref else None}  # fmt: skip
    m, meaning = fileio.read_json(mfile), fileio.read_json(paths.evaluation_file(key))
    search = fileio.read_json(paths.search_result(key)) if paths.search_result(key).exists() else {}
    metric, direction = meaning["metric"], meaning["direction"]
    s = fileio.read_json(paths.accounting_file(key)) if paths.accounting_file(key).exists() else {}
    test = m["test"][metric]
    promo = paths.promotion_file(key)
    ok_ref = ref is not None and ref.metric == metric
    row.update({
        "status": "run", "metric": metric, "direction": direction, "test": test, "test_loss": m["test"].get("loss"),
        "baseline": m["baseline"][metric], "n_test": meaning.get("n_test"), "run_id": meaning.get("run_id"),
        "vs_reference": test - ref.value if ok_ref else None,
        "goal_met": (test >= goal[1] if direction == "maximize" else test <= goal[1]) if goal else None,
        "trials": s.get("trials"), "pruned": s.get("pruned"), "failed": None, "epochs": s.get("epochs"),
        "epochs_saved": s.get("epochs_saved"), "search_wall_s": s.get("wall_s"),
        "best_at_epochs": s.get("best_at_epochs"), "best_at_s": s.get("best_at_s"),
        "near_best_at_epochs": s.get("near_best_at_epochs"),
        "weight_sparsity": (m.get("weights") or {}).get("sparsity"),
        "best_params": (search.get("best") or {}).get("params"),
        "best_trial_run_id": (search.get("best") or {}).get("run_id"),
        "promoted": fileio.read_json(promo).get("promote") if promo.exists() else None,
        "registered_name": tracking.experiment_name(key, bench.dataset, bench.model),
        "data_source": report_sources.data_source(bench.dataset),
        "_search": search,
    })  # fmt: skip
    row.update(_seed_columns(m, meaning, promo, metric, direction, ref.value if ok_ref else None))
    if not ok_ref:
        row["reference"] = None
    row["beats_baseline"] = test > row["baseline"] if direction == "maximize" else test < row["baseline"]
    return row


def _seed_columns(m: dict, meaning: dict, promo: Path, metric: str, direction: str, ref: float | None) -> dict:
    """The final seeds' mean and 95% interval, each seed's score, the seeds' average and the first seed's
    model, where the reference lies against the interval (`beats_reference`: yes, no, inconclusive) and
    the promotion's paired test."""
    seeds = meaning.get("test_seeds") or {}
    test = (fileio.read_json(promo).get("test") or {}) if promo.exists() else {}
    out = {"seeds_mean": seeds.get("mean"), "seeds_ci_low": seeds.get("ci_low"), "seeds_ci_high": seeds.get("ci_high"),
           "seeds_n": seeds.get("n"), "seed_values": [s[metric] for s in meaning.get("per_seed", [])] or None,
           "ensemble": (m.get("test_ensemble") or {}).get(metric), "single": (m.get("test_single") or {}).get(metric),
           "serve": meaning.get("serve"), "promotion_p": test.get("p_value"), "beats_reference": None}  # fmt: skip
    if ref is not None and seeds:
        out["beats_reference"] = placement(ref, seeds["ci_low"], seeds["ci_high"], direction)
    return out


def _add_stores(params: Params, row: dict, mlc, mlflow_note: str | None, details: bool) -> None:
    """Fill a run row's columns that come from the search's trials table and the MLflow store."""
    notes = []
    search = row.pop("_search")
    try:
        table = report_sources.trials(row["benchmark"], search)
        row["failed"] = sum(t["state"] == "fail" for t in table)
    except Exception as err:  # noqa: BLE001 - a missing trials table empties these columns, with a note
        table = []
        notes.append(f"trials unreadable: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    curves = {}
    if mlc is None:
        notes.append(f"MLflow unreadable: {mlflow_note}")
    else:
        reg = report_sources.registry_entry(mlc, row["registered_name"], row["run_id"])
        row.update({"registry_version": reg.get("version"), "aliases": ",".join(reg.get("aliases", [])) or None,
                    "champion_version": reg.get("champion")})  # fmt: skip
        if details:
            curves = report_sources.learning_curves(mlc, row["best_trial_run_id"], row["metric"])
    row["note"] = "; ".join(notes) or None
    if details:
        ranges = [(k, r.get("ranges", {})) for k, r in enumerate(search.get("rounds", []), start=1)]
        row.update({"trials_table": table, "curves": curves, "ranges": ranges})


def leaderboard(params: Params) -> pd.DataFrame:
    """The leaderboard as a table: one row per benchmark (`status` says whether it ran here)."""
    return pd.DataFrame(collect(params))


def _num(v, fmt: str = "g") -> str:
    """A number for the table; `-` where there is none (None or NaN)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def params_text(bp: dict | None) -> str:
    """`lr=0.00316, units=64`: the best trial's sampled values (floats to 3 significant digits), or `-`."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (bp or {}).items()) or "-"


def _ref_text(r: dict, refs: list[str]) -> str:
    if r["reference_source"] is None:
        return "no reference"
    if r["reference_source"] not in refs:
        refs.append(r["reference_source"])
    return f"{r['reference_shown']} [{refs.index(r['reference_source']) + 1}]"


# (header, cell of a run row) of leaderboard.md; a new column is one entry here and one key in `_row`
def _model_text(r: dict) -> str:
    """The model family, with the share of near-zero weights of an L1 model (`metrics` `weights.sparsity`)."""
    sparse = r.get("weight_sparsity")
    return r["model"] if sparse is None or sparse != sparse else f"{r['model']} ({sparse:.0%} weights ~0)"


MD_COLUMNS = [
    ("benchmark", lambda r, refs: r["benchmark"]),
    ("model", lambda r, refs: _model_text(r)),
    ("metric", lambda r, refs: f"{r['metric']} ({r['direction'][:3]})"),
    ("test", lambda r, refs: f"{r['test']:.4f}"),
    ("seeds: mean [95% CI]", lambda r, refs: seeds_text(r)),
    ("ensemble / single", lambda r, refs: f"{_num(r['ensemble'], '.4f')} / {_num(r['single'], '.4f')}"),
    ("baseline", lambda r, refs: f"{r['baseline']:.4f}"),
    ("reference", _ref_text),
    ("test - ref", lambda r, refs: _num(r["vs_reference"], "+.4f")),
    ("beats ref", lambda r, refs: r["beats_reference"] or "-"),
    ("goal", lambda r, refs: "-" if r["goal"] is None else f"{r['goal']:g} {'met' if r['goal_met'] else 'not met'}"),
    ("trials (pruned, failed)", lambda r, refs: f"{r['trials']} ({r['pruned']}, {_num(r['failed'])})"),
    ("epochs (saved by pruning)", lambda r, refs: f"{r['epochs']} ({_num(r['epochs_saved'])})"),
    ("to best: epochs, s", lambda r, refs: f"{_num(r['best_at_epochs'])}, {_num(r['best_at_s'])}"),
    ("search s", lambda r, refs: _num(r["search_wall_s"], ".0f")),
    ("best params", lambda r, refs: params_text(r["best_params"])),
    (
        "registry",
        lambda r, refs: f"v{r['registry_version']} {r['aliases'] or ''}".strip() if r.get("registry_version") else "-",
    ),
    ("promotion", lambda r, refs: promotion_text(r)),
]


def seeds_text(r: dict) -> str:
    """`0.9130 [0.9010, 0.9250] (3 seeds)`: the final seeds' mean test score and its 95% interval."""
    if r.get("seeds_mean") is None:
        return "-"
    return f"{r['seeds_mean']:.4f} [{r['seeds_ci_low']:.4f}, {r['seeds_ci_high']:.4f}] ({r['seeds_n']} seeds)"


def promotion_text(r: dict) -> str:
    """The promotion decision with its paired test: `champion (p=0.0005)`, `kept champion (p=0.31)`, `champion`."""
    if r.get("promoted") is None:
        return "-"
    p = f" (p={r['promotion_p']:.2g})" if r.get("promotion_p") is not None else ""
    return ("champion" if r["promoted"] else "kept champion") + p


def markdown(rows: list[dict]) -> str:
    """`reports/leaderboard.md`: the table, the reference sources and the benchmarks not run here."""
    lines = ["# tunebench leaderboard", "",
             "Test-split results of each benchmark's retrained best model (`test`: the served model; `seeds`: the "
             "mean and 95% interval over the final training seeds; `ensemble / single`: the seeds' average and "
             "the first seed's model), the trivial baseline (majority class / mean), the published reference "
             "(source below; `test - ref` is signed: below zero is worse for accuracy, better for MAE; `beats ref`: "
             "yes when the whole interval is better, no when it is worse, inconclusive when the reference lies "
             "within it) and what the search cost.", ""]  # fmt: skip
    run = [r for r in rows if r["status"] == "run"]
    refs: list[str] = []
    if not run:
        lines.append("No benchmark has been evaluated yet (run `dvc repro`).")
    else:
        lines.append("| " + " | ".join(h for h, _ in MD_COLUMNS) + " |")
        lines.append("|" + "---|" * len(MD_COLUMNS))
        lines += ["| " + " | ".join(cell(r, refs) for _, cell in MD_COLUMNS) + " |" for r in run]
    if refs:
        lines += ["", "References:", ""] + [f"{i}. {src}" for i, src in enumerate(refs, start=1)]
    notes = [f"* {r['benchmark']}: {r['note']}" for r in run if r.get("note")]
    if notes:
        lines += ["", "Notes:", "", *notes]
    missing = [r for r in rows if r["status"] != "run"]
    if missing:
        lines += ["", "Not in the table:", ""]
        for r in missing:
            why = f"data {r['availability']}; {r['fetch_hint']}" if r["status"] == NOT_RUN else "run `dvc repro`"
            ref = f"reference {r['reference_shown']}" if r["reference_source"] else "no reference"
            lines.append(f"* {r['benchmark']} ({r['status']}; {ref}): {why}")
    return "\n".join(lines) + "\n"


CSV_DROP = ("trials_table", "curves", "ranges", "run_id", "best_trial_run_id")  # run ids: MLflow has them
COUNTS = (
    "trials",
    "pruned",
    "failed",
    "epochs",
    "epochs_saved",
    "best_at_epochs",
    "near_best_at_epochs",
    "n_test",
    "seeds_n",
)


def metric_per_benchmark(rows: list[dict]) -> dict[str, float]:
    """`test_metrics.json`: each evaluated benchmark's test metric, keyed by the benchmark (params.yaml's order).

    A DVC metric of the report stage, declared first in dvc.yaml: `dvc exp show` names a column by its key alone
    when no other metric or param has that key, and orders the columns by the stage declaring them, so these are
    its first columns, one a benchmark (the rest of `metrics/<b>.json` follows, file by file)."""
    return {r["benchmark"]: r["test"] for r in rows if r["status"] == "run"}


def write_report(params: Params) -> Path:
    """Write `reports/leaderboard.csv`, `reports/leaderboard.md`, `reports/index.html` and `test_metrics.json`;
    return the Markdown path.

    The temporary files a killed report left next to them are removed first."""
    from pipeline import report_page  # noqa: PLC0415

    for out in (paths.LEADERBOARD_CSV, paths.LEADERBOARD_MD, paths.REPORT_HTML, paths.TEST_METRICS):
        fileio.clean_staging(out)
    rows = collect(params, details=True)
    df = pd.DataFrame([{k: v for k, v in r.items() if k not in CSV_DROP} for r in rows])
    for col in (c for c in COUNTS if c in df):
        df[col] = df[col].astype("Int64")  # counts stay whole numbers beside the rows not run here
    fileio.write_text_atomic(paths.LEADERBOARD_CSV, df.to_csv(index=False))
    fileio.write_text_atomic(paths.LEADERBOARD_MD, markdown(rows))
    fileio.write_text_atomic(paths.REPORT_HTML, report_page.render(rows))
    fileio.write_json_atomic(paths.TEST_METRICS, metric_per_benchmark(rows), sort_keys=False)
    return paths.LEADERBOARD_MD


def summary_table(params: Params) -> str:
    """The end-of-job table (`tunebench summary`): per benchmark its test metric, the baseline and
    what happened to the registry's `champion` (moved to the new version, or kept)."""
    df = leaderboard(params)
    df = df[df["status"] == "run"] if not df.empty else df
    if df.empty:
        return "No benchmark has been evaluated yet (run `dvc repro`)."
    rows = [("benchmark", "metric", "test", "baseline", "champion")]
    for r in df.to_dict("records"):
        promo = paths.promotion_file(r["benchmark"])
        champion = _champion_note(fileio.read_json(promo)) if promo.exists() else "- (not promoted yet)"
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
