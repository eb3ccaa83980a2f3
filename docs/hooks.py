"""MkDocs hook: fills `<!-- table: NAME -->` markers with tables rendered from the committed results.

NAME is `metrics` (the default run: `metrics/*.json`) or a result of `benchmarks/results/` without `.json`
(its `figures`: `benchmarks.runner`), optionally `#PART` (a problem of a search-efficiency run,
`PROBLEM.paired` its paired comparison where the run has one, or the n-th table of `overhead`). The
tables are read at build time, so the pages always show the committed numbers; an unknown marker fails
the build.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- table: ([\w.-]+)(?:#([\w.-]+))? -->")


def on_config(config):
    """Make the repository's `benchmarks` package importable for the build (MkDocs restores `sys.path`
    after loading this file, so inserting it at import time would not last)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config


def _benchmarks():
    """The benchmarks' own table renderers (imported when a page needs one)."""
    from benchmarks import faults, overhead, search_efficiency  # noqa: PLC0415
    from benchmarks.replay import bench as replay  # noqa: PLC0415

    return faults, overhead, search_efficiency, replay


def _md(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _num(x, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def metrics_table() -> str:
    """The default run's figures, one row per `metrics/<benchmark>.json`."""
    rows = []
    for path in sorted((ROOT / "metrics").glob("*.json")):
        m = json.loads(path.read_text())
        test, base, s = m.get("test", {}), m.get("baseline", {}), m.get("search", {})
        metric = next((k for k in test if k not in ("loss", "mse")), "loss")
        seeds = m.get("test_seeds")
        spread = f"{_num(seeds['mean'])} [{_num(seeds['ci_low'])}, {_num(seeds['ci_high'])}]" if seeds else "-"
        rows.append([path.stem, metric, _num(test.get(metric)), spread, _num(base.get(metric)),
                     f"{s.get('trials', '-')} ({s.get('pruned', '-')})", s.get("epochs", "-"),
                     s.get("best_at_epochs", "-"), s.get("wall_s", "-")])  # fmt: skip
    head = ["benchmark", "metric", "test", "seeds: mean [95% CI]", "baseline", "trials (pruned)", "epochs",
            "epochs to best", "search s"]  # fmt: skip
    return _md(head, rows)


def results_table(name: str, part: str | None) -> str:
    from benchmarks.runner import RESULTS, figures  # noqa: PLC0415

    data = figures(RESULTS / f"{name}.json")
    faults, overhead, efficiency, replay = _benchmarks()
    if name == "faults":
        return faults.table(data["scenarios"])
    if name == "overhead":
        return overhead.table(data).split("\n\n")[int(part or 0)]
    if name.startswith("search_efficiency"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            efficiency.print_tables(data["summary"], {}, data.get("paired"))
        blocks = out.getvalue().strip().split("\n\n")
        return {blocks[i]: blocks[i + 1] for i in range(len(blocks) - 1) if blocks[i + 1].startswith("|")}[part]
    if name in ("replay", "replay_smac"):
        return replay.rank_table({b: e["final_regret"] for b, e in data["pooled"].items()}, data["methods"])
    if name == "replay_schedule":  # tunebench's default among the four peers of the schedule screen
        final = {b: e["tunebench"] for b, e in data["budgets"].items()}
        ranked = next(iter(final.values()))["mean_rank"]
        return replay.rank_table(final, [x for x in replay.PEER_NAMES if x in ranked])
    if name == "multihot":
        r, g = data["ratios"], data["goals"]
        return _md(["measure (compact CSR path / dense float32 path)", "ratio", "goal"], [
            ["peak memory of the data in preprocess + one epoch", r["memory_data_peak_csr_over_dense"],
             f"≤ {g['memory_ratio_max']}"],
            ["whole-process peak memory", r["memory_total_peak_rss_csr_over_dense"], "—"],
            ["training throughput, paired epochs in one process", r["throughput_csr_over_dense"],
             f"≥ {g['throughput_ratio_min']}"],
            ["vectorization vs the textbook loop, first call", f"{r['vectorize_speedup_first_call']}x",
             f"≥ {g['vectorize_speedup_min']}x"],
            ["vectorization vs the textbook loop, warm repeats", f"{r['vectorize_speedup_best_of']}x",
             "—"]])  # fmt: skip
    if name == "text_ceiling":
        return _md(["features", "columns", "logistic val / test (C)", "NB-logistic val / test (C)"], [
            ["words" if r["ngrams"] == [1] else "words and bigrams", f"{r['columns']:,}",
             f"{r['logistic']['val']} / {r['logistic']['test']} ({r['logistic']['C']})",
             f"{r['nb_logistic']['val']} / {r['nb_logistic']['test']} ({r['nb_logistic']['C']})"]
            for r in data["rows"]])  # fmt: skip
    if name == "tracking_overhead":
        rows = [[k, b["search_in_tracking_ratio_folder"], b["search_in_tracking_ratio_keras"]]
                for k, b in data["benchmarks"].items()]  # fmt: skip
        return _md(["benchmark (whole default search)", "tracking share, model as folder",
                    "tracking share, Keras flavor"], rows)  # fmt: skip
    if name == "trial_memory":
        keys = ["baseline_over_in_process_growth", "recycled_over_in_process_growth", "recycled_peak_saving_mb",
                "recycled_time_ratio"]  # fmt: skip
        return _md(["figure (trials in fresh processes against one process)", "value"], [[k, data[k]] for k in keys])
    if name == "profile_regression":

        def seeds(s: dict) -> str:
            return f"{_num(s['mean'])} [{_num(s['ci_low'])}, {_num(s['ci_high'])}] (n={s['n']})"

        return _md(["benchmark", "metric", "default: mean [95% CI]", "full: mean [95% CI]", "Welch p", "verdict"], [
            [r["benchmark"], r["metric"], seeds(r["default"]), seeds(r["bigger"]), _num(r["welch_p"], 3),
             r["verdict"]] for r in data["rows"]])  # fmt: skip
    raise ValueError(f"docs: unknown table marker {name!r}: add its renderer to docs/hooks.py")


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace every table marker of a page by its table."""
    return MARKER.sub(lambda m: metrics_table() if m[1] == "metrics" else results_table(m[1], m[2]), markdown)
