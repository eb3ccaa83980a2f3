"""`reports/index.html`: the leaderboard and per-benchmark figures in one self-contained page.

Inline CSS and inline SVG only (`pipeline.report_svg`): no script, no font, no image file, no
network, so the page opens anywhere, offline. Per benchmark that ran: the search history across
rounds (validation score per trial, and the first dimension the space searches on a log scale, the
learning rate in the shipped spaces, with each round's range shaded, which shows the coarse-to-fine
narrowing), the scatter of the first two such dimensions (lr vs l2) over every trial, and the
best trial's learning curves (MLflow per-epoch metrics). Benchmarks not run here list the fetch hint.
"""

from __future__ import annotations

import math
from html import escape

from pipeline.report_svg import Point, chart
from pipeline.report import params_text, promotion_text, seeds_text

CSS = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}section{margin-top:2em}.figs{display:flex;flex-wrap:wrap;gap:8px}
svg{background:#fff;border:1px solid #ddd}svg .t{font-size:12px;font-weight:600}svg .k{font-size:9px;fill:#555}
svg .a{font-size:10px}.muted{color:#777}"""

# (header, cell of a row that ran); a new column is one entry here (cells are escaped by `_cell`)
COLUMNS = [
    ("benchmark", lambda r: r["benchmark"]),
    ("model", lambda r: r["model"]),
    ("metric", lambda r: f"{r['metric']} ({r['direction'][:3]})"),
    ("test", lambda r: f"{r['test']:.4f}"),
    ("seeds: mean [95% CI]", lambda r: seeds_text(r)),
    ("ensemble / single", lambda r: f"{_fmt(r.get('ensemble'), '.4f')} / {_fmt(r.get('single'), '.4f')}"),
    ("baseline", lambda r: f"{r['baseline']:.4f}"),
    ("reference", lambda r: r["reference_shown"]),
    ("test − ref", lambda r: _fmt(r.get("vs_reference"), "+.4f")),
    ("beats ref", lambda r: r.get("beats_reference") or "-"),
    ("goal", lambda r: "-" if r.get("goal") is None else f"{r['goal']:g} {'met' if r['goal_met'] else 'not met'}"),
    ("trials", lambda r: _fmt(r.get("trials"))),
    ("pruned", lambda r: _fmt(r.get("pruned"))),
    ("failed", lambda r: _fmt(r.get("failed"))),
    ("epochs", lambda r: _fmt(r.get("epochs"))),
    ("search s", lambda r: _fmt(r.get("search_wall_s"), ".0f")),
    ("to best s", lambda r: _fmt(r.get("best_at_s"), ".0f")),
    ("best params", lambda r: params_text(r.get("best_params"))),
    ("registry", lambda r: f"v{r['registry_version']} {r.get('aliases') or ''}" if r.get("registry_version") else "-"),
    ("promotion", lambda r: promotion_text(r)),
]
NUMERIC = {"test", "baseline", "test − ref", "trials", "pruned", "failed", "epochs", "search s", "to best s"}


def _fmt(v, spec: str = "g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def _cell(header: str, text: str) -> str:
    return f'<td class="n">{escape(text)}</td>' if header in NUMERIC else f"<td>{escape(text)}</td>"


def table(rows: list[dict]) -> str:
    """The leaderboard table: one row per benchmark, those not run here with their status."""
    head = "".join(f"<th>{escape(h)}</th>" for h, _ in COLUMNS)
    body = []
    for r in rows:
        if r["status"] == "run":
            cells = "".join(_cell(h, fn(r)) for h, fn in COLUMNS)
        else:
            cells = (f"<td>{escape(r['benchmark'])}</td><td>{escape(r['model'])}</td>"
                     f'<td colspan="{len(COLUMNS) - 2}" class="muted">{escape(r["status"])}; reference '
                     f"{escape(r['reference_shown'])}</td>")  # fmt: skip
        body.append(f'<tr data-benchmark="{escape(r["benchmark"])}" data-status="{escape(r["status"])}">{cells}</tr>')
    return f'<table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _log_axes(row: dict) -> list[str]:
    """The dimensions searched on a log scale that the trials sampled, in the order of the space: the figures'
    axes (the first: the narrowing figure's; the first two: the scatter's)."""
    trials = row.get("trials_table") or []
    ranges = (row.get("ranges") or [(1, {})])[0][1]
    return [n for n, r in ranges.items() if r.get("log") and any(n in t["params"] for t in trials)]


def figures(row: dict) -> list[str]:
    """The SVG figures of one benchmark that ran: history, the first log-scale dimension's range narrowing (lr in
    the shipped spaces), the first two against each other (lr vs l2), learning curves."""
    trials = row.get("trials_table") or []
    rounds = sorted({t["round"]: t["round_name"] for t in trials}.items())
    names = [f"r{k} {n}" for k, n in rounds]
    metric = f"val_{row['metric']}"
    done = [t for t in trials if t["value"] is not None and math.isfinite(t["value"])]
    order = {(t["round"], t["trial"]): i + 1 for i, t in enumerate(trials)}
    figs = [chart(f"{row['benchmark']}: search history", "trial (rounds in order)", f"{metric} (best epoch)",
                  points=[Point(order[(t["round"], t["trial"])], t["value"], t["round"] - 1,
                                label=f"r{t['round']} t{t['trial']}: {t['value']:.4g}") for t in done],
                  series=names, css_class="chart history")]  # fmt: skip
    axes = _log_axes(row)
    x = axes[0] if axes else None
    if x is not None:
        bands = []
        for k, ranges in row.get("ranges") or []:
            r = ranges.get(x) or {}
            idx = [order[(t["round"], t["trial"])] for t in trials if t["round"] == k]
            if idx and r.get("low") is not None:
                bands.append((min(idx) - 0.5, max(idx) + 0.5, r["low"], r["high"], k - 1))
        pts = [Point(order[(t["round"], t["trial"])], t["params"][x], t["round"] - 1, hollow=t["state"] != "complete",
                     label=f"r{t['round']} t{t['trial']} {t['state']}: {x}={t['params'][x]:.3g}")
               for t in trials if x in t["params"]]  # fmt: skip
        figs.append(chart(f"{x} sampled per trial, each round's range shaded", "trial (rounds in order)", x,
                          points=pts, bands=bands, series=names, ylog=True, css_class="chart narrowing"))  # fmt: skip
    y = axes[1] if len(axes) > 1 else None
    if x is not None:
        pts = [Point(t["params"][x], t["params"][y] if y else t["value"], t["round"] - 1,
                     hollow=t["state"] != "complete" or t["value"] is None,
                     label=f"r{t['round']} t{t['trial']} {t['state']}: {metric}={_fmt(t['value'], '.4g')}")
               for t in trials if x in t["params"] and (y in t["params"] if y else t["value"] is not None)]  # fmt: skip
        title = f"{x} vs {y} (filled: completed; hover: score)" if y else f"{metric} vs {x}"
        figs.append(chart(title, x, y or metric, points=pts, series=names, xlog=True, ylog=y is not None,
                          css_class="chart scatter"))  # fmt: skip
    if row.get("seed_values"):
        figs.append(_seeds_figure(row))
    curves = row.get("curves") or {}
    if any(len(v) > 1 for v in curves.values()):
        m = row["metric"]
        figs.append(
            chart(
                "best trial: loss per epoch",
                "epoch",
                "loss",
                lines={k: curves[k] for k in ("loss", "val_loss") if k in curves},
                css_class="chart curve",
            )
        )
        figs.append(
            chart(
                f"best trial: {m} per epoch",
                "epoch",
                m,
                lines={k: curves[k] for k in (m, f"val_{m}") if k in curves},
                css_class="chart curve",
            )
        )
    return figs


def _seeds_figure(row: dict) -> str:
    """Each final seed's test score, the 95% interval of their mean shaded, and the reference as a line."""
    values = row["seed_values"]
    m = row["metric"]
    pts = [Point(i + 1, v, 0, label=f"seed {i + 1}: test {m}={v:.4g}") for i, v in enumerate(values)]
    bands = [(0.5, len(values) + 0.5, row["seeds_ci_low"], row["seeds_ci_high"], 0)]
    lines = {"reference": [row["reference"]] * len(values)} if row.get("reference") is not None else None
    title = f"test {m} per seed, 95% CI shaded" + (", line: reference" if lines else "")
    return chart(title, "seed", f"test {m}", points=pts, bands=bands, lines=lines, series=["seeds"],
                 css_class="chart seeds")  # fmt: skip


def render(rows: list[dict]) -> str:
    """The whole page."""
    run = [r for r in rows if r["status"] == "run"]
    sections = []
    for r in run:
        note = f'<p class="muted">{escape(r["note"])}</p>' if r.get("note") else ""
        ref = (
            f"reference: {escape(r['reference_shown'])} ({escape(r['reference_model'] or '')}; "
            f"{escape(r['reference_source'])})"
            if r.get("reference_source")
            else "no published reference"
        )
        sections.append(f'<section id="{escape(r["benchmark"])}"><h2>{escape(r["benchmark"])}</h2>'
                        f'<p>{ref}</p>{note}<div class="figs">{"".join(figures(r))}</div></section>')  # fmt: skip
    missing = "".join(
        f"<li><b>{escape(r['benchmark'])}</b> ({escape(r['status'])}): "
        f"{escape(r.get('fetch_hint') or 'run `dvc repro`')}</li>"
        for r in rows
        if r["status"] != "run"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tunebench report</title>'
        f"<style>{CSS}</style></head><body><h1>tunebench report</h1>"
        "<p>Test-split result of each benchmark's retrained best model, the trivial baseline, the published "
        "reference and what the search cost. Figures per benchmark below.</p>"
        f"{table(rows)}{f'<h2>Not run here</h2><ul>{missing}</ul>' if missing else ''}{''.join(sections)}"
        "</body></html>\n"
    )
