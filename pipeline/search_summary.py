"""A finished search read back from its studies: what it cost and how it went, for `dvc metrics` and `dvc plots`.

`accounting` gives the numbers of `metrics/<b>.json`'s `search` (trials, pruned, epochs trained and
saved by pruning, wall time, when the best and a value near it were reached; also per round, as each
round's MLflow parent run logs them). Wall time is time spent in trials: the union of the trials'
busy intervals (`busy_spans`), so the idle time between the runs of an extended or resumed study
never counts; `write_history` writes one table per round under
`plots/<b>/search/` (trial number, value), which `dvc plots` draws as the coarse-to-fine history,
one marker shape per round. Trials that never
counted (surplus, discarded, cut off by a crash) are left out, as in the budget.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd

from pipeline import paths
from pipeline.errors import MissingInputError
from pipeline.search.budget import budget_view, counts_in_budget
from pipeline.search.storage import open_storage

SEARCH_PLOTS = "search"  # plots/<b>/search/<k>-<round>.csv
NEAR_POINTS = 0.005  # "near the best" for a maximised metric (accuracy): within 0.5 points
NEAR_RATIO = 0.02  # and for a minimised one (MAE): within 2% of the best
SESSION_GAP_S = 60.0  # busy intervals further apart than this are separate sessions (runs of the search)


def round_file(k: int, name: str) -> str:
    """The history table of round `k` (from 1) named `name`, relative to `plots/<b>/`."""
    return f"{SEARCH_PLOTS}/{k}-{name}.csv"


def trial_rows(storage_url: str | None, benchmark: str, result: dict, *, folds: int | None) -> list[dict]:
    """One row per trial that counted, in the order the rounds ran (see `study_rows`).

    Args:
        `result`: the search result (`results/search/<b>.json`), which names each round's study.
        `folds`: the data's number of folds (None without folds): each reported step is then a whole
            fold of the round's epochs.

    Raises:
        MissingInputError: a study the result names is gone from the storage.
    """
    storage = open_storage(storage_url, benchmark)
    rows: list[dict] = []
    for k, rnd in enumerate(result.get("rounds", []), start=1):
        try:
            study = budget_view(optuna.load_study(study_name=rnd["study"], storage=storage), rnd.get("budget"))
        except KeyError:
            raise MissingInputError(
                f"{paths.search_result(benchmark)} names study {rnd['study']}, which its storage does not hold; "
                f"rerun `tunebench search --benchmark {benchmark}`"
            ) from None
        rows += study_rows(study, k, rnd["round"], rnd["epochs"], folds)
    return rows


def study_rows(study: optuna.Study, k: int, name: str, epochs: int, folds: int | None) -> list[dict]:
    """The rows of round `k` (from 1) named `name`, `epochs` a trial: round, number, state, value, times,
    `epochs` trained (reported steps, times `epochs` with folds) and `full` (what it costs unpruned)."""
    attrs = study.user_attrs
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if not counts_in_budget(attrs, t):
            continue
        steps = len(t.intermediate_values) or (1 if t.state == optuna.trial.TrialState.COMPLETE else 0)
        rows.append({
            "round": k, "round_name": name, "trial": t.number, "state": t.state.name.lower(), "value": t.value,
            "epochs": steps * (epochs if folds else 1), "full": epochs * (folds or 1),
            "start": t.datetime_start, "end": t.datetime_complete,
        })  # fmt: skip
    return rows


def round_key(row: dict) -> str:
    """The key of a row's round in `search.rounds`: `1-coarse`."""
    return f"{row['round']}-{row['round_name']}"


def near_best(value: float, best: float, direction: str) -> bool:
    """Within 0.5 points of `best` (maximised metrics, accuracy as a fraction) or 2% of it (minimised, MAE)."""
    if direction == "maximize":
        return value >= best - NEAR_POINTS
    return value <= best + NEAR_RATIO * abs(best)


def accounting(rows: list[dict], direction: str) -> dict:
    """What the search cost, over all `rows` and per round (`rounds`, keyed `1-coarse`): numbers only.

    `trials`, `pruned`, `epochs` trained, `epochs_saved` by pruning (each pruned trial's full cost,
    folds x epochs with folds, less what it trained), `wall_s` (the seconds some trial of the round
    ran, `busy_spans`, summed over the rounds, which run one after the other), and when the best
    value (completed trials) was reached: `best_at_epochs` and `best_at_s`, the epochs of the
    trials finished by then (ordered by end time, round by round) and the busy seconds until then
    (the earlier rounds' and this round's up to that trial's end); `near_best_at_*` the same for
    the first value within 0.5 points (2% for a minimised metric) of it. Per round, everything is
    counted from the round's start, against the round's own best.
    """
    out = _figures(rows, direction)
    out["rounds"] = {key: _figures([r for r in rows if round_key(r) == key], direction)
                     for key in dict.fromkeys(round_key(r) for r in rows)}  # fmt: skip
    return out


def busy_spans(rows: list[dict]) -> list[tuple[datetime, datetime]]:
    """The time some trial of `rows` ran: their (start, end) intervals merged across workers, in time order."""
    spans: list[tuple[datetime, datetime]] = []
    for start, end in sorted((r["start"], r["end"]) for r in rows if r["start"] is not None and r["end"] is not None):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def busy_seconds(spans: list[tuple[datetime, datetime]], until: datetime | None = None) -> float:
    """The seconds inside `spans` (`busy_spans`), up to `until` if given."""
    return sum(max(0.0, (min(end, until or end) - start).total_seconds()) for start, end in spans)


def sessions(spans: list[tuple[datetime, datetime]]) -> int:
    """How many separate sessions `spans` (`busy_spans`) make: gaps over `SESSION_GAP_S` split them."""
    return len(spans) and 1 + sum((b[0] - a[1]).total_seconds() > SESSION_GAP_S for a, b in zip(spans, spans[1:]))


def _figures(rows: list[dict], direction: str) -> dict:
    """`accounting` of `rows` without the per-round block."""
    ordered: list[tuple[float, dict]] = []  # (busy seconds since the first round began, row), in end order
    wall = 0.0
    for k in sorted({r["round"] for r in rows}):
        own = [r for r in rows if r["round"] == k]
        spans = busy_spans(own)
        busy = busy_seconds(spans)
        ordered += sorted(((wall + (busy_seconds(spans, r["end"]) if r["end"] else busy), r) for r in own),
                          key=lambda x: (x[0], x[1]["trial"]))  # fmt: skip
        wall += busy
    out = {
        "trials": len(rows),
        "pruned": sum(r["state"] == "pruned" for r in rows),
        "epochs": int(sum(r["epochs"] for r in rows)),
        "epochs_saved": int(sum(max(0, r["full"] - r["epochs"]) for r in rows if r["state"] == "pruned")),
        "wall_s": round(wall, 1),
    }
    done = [r["value"] for _, r in ordered if r["state"] == "complete" and r["value"] is not None]
    if not done:
        return out
    best = max(done) if direction == "maximize" else min(done)
    seen = 0
    for at, r in ordered:
        seen += r["epochs"]
        if r["state"] != "complete" or r["value"] is None:
            continue
        if "near_best_at_epochs" not in out and near_best(r["value"], best, direction):
            out |= {"near_best_at_epochs": int(seen), "near_best_at_s": round(at, 1)}
        if r["value"] == best:
            out |= {"best_at_epochs": int(seen), "best_at_s": round(at, 1)}
            break
    return out


def write_history(rows: list[dict], result: dict, out: Path) -> list[Path]:
    """Write `out/search/<k>-<round>.csv` (trial: its number across rounds from 1, value) for every round."""
    (out / SEARCH_PLOTS).mkdir(parents=True, exist_ok=True)
    written, seq = [], 0
    for k, rnd in enumerate(result.get("rounds", []), start=1):
        table = []
        for r in (r for r in rows if r["round"] == k):
            seq += 1
            if r["state"] == "complete" and r["value"] is not None:
                table.append({"trial": seq, "value": r["value"], "epochs": r["epochs"]})
        path = out / round_file(k, rnd["round"])
        pd.DataFrame(table, columns=["trial", "value", "epochs"]).to_csv(path, index=False)
        written.append(path)
    return written
