"""A finished search: its trials as one table, what it cost and how it went, for `dvc metrics` and `dvc plots`.

The search stage writes every trial of its rounds, a row each (`write_trials`:
`results/search/<b>.trials.json`: round, study, number, state, value, parameters, reported values,
epochs trained, start and end, whether it counted in the budget), the one place later stages and
the notebook read trials from (`trial_rows`); nothing after the search reopens the Optuna storage.
`accounting` gives the numbers of `metrics/<b>.json`'s `search` (trials, pruned, epochs trained
and saved by pruning, wall time, when the best and a value near it were reached; also per round,
as each round's MLflow parent run logs them). Wall time is time spent in trials: the union of the
trials' busy intervals (`busy_spans`), so the idle time between the runs of an extended or resumed
study never counts; `write_history` writes one table per round under `plots/<b>/search/` (trial
number, value), which `dvc plots` draws as the coarse-to-fine history, one marker shape per round.
Trials that never counted (surplus, discarded, cut off by a crash) are left out, as in the budget.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import optuna
import pandas as pd

from pipeline import fileio, paths
from pipeline.errors import MissingInputError
from pipeline.search.execution.budget import budget_view, counts_in_budget
from pipeline.search.storage import open_storage

SEARCH_PLOTS = "search"  # plots/<b>/search/<k>-<round>.csv
NEAR_POINTS = 0.005  # "near the best" for a maximised metric (accuracy): within 0.5 points
NEAR_RATIO = 0.02  # and for a minimised one (MAE): within 2% of the best
SESSION_GAP_S = 60.0  # busy intervals further apart than this are separate sessions (runs of the search)


def round_file(k: int, name: str) -> str:
    """The history table of round `k` (from 1) named `name`, relative to `plots/<b>/`."""
    return f"{SEARCH_PLOTS}/{k}-{name}.csv"


def write_trials(benchmark: str, rounds: list[dict], storage_url: str | None, dataset: str) -> Path:
    """Write `results/search/<b>.trials.json`: every trial of the studies `rounds` (the search result's) name,
    a row each (`study_rows`, plus its study, `counted` in the budget, `params` and reported `values`)."""
    storage = open_storage(storage_url, benchmark)
    folds = len(fileio.read_json(paths.processed_manifest(dataset)).get("folds") or []) or None
    rows: list[dict] = []
    for k, rnd in enumerate(rounds, start=1):
        study = budget_view(optuna.load_study(study_name=rnd["study"], storage=storage), rnd.get("budget"))
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for row in study_rows(study, k, rnd["round"], rnd["epochs"], folds, counted_only=False):
            t = by_number[row["trial"]]
            rows.append({**row, "study": rnd["study"], "params": t.params,
                         "values": [t.intermediate_values[s] for s in sorted(t.intermediate_values)],
                         "start": _iso(row["start"]), "end": _iso(row["end"])})  # fmt: skip
    out = paths.search_trials(benchmark)
    fileio.write_json_atomic(out, {"benchmark": benchmark, "folds": folds, "studies": [r["study"] for r in rounds],
                               "trials": rows})  # fmt: skip
    return out


def trial_rows(benchmark: str, result: dict) -> list[dict]:
    """The trials that counted, a row each in the order the rounds ran (see `write_trials`), read from
    `results/search/<b>.trials.json`; `start` and `end` as datetimes.

    Raises:
        MissingInputError: the file is missing, or it holds other studies than `result` (the search result) names.
    """
    path = paths.search_trials(benchmark)
    table = fileio.read_json(path) if path.exists() else {}
    if table.get("studies") != [r["study"] for r in result.get("rounds", [])]:
        why = "is missing" if not table else "holds other studies than the search result names"
        raise MissingInputError(f"{path} {why}; rerun `tunebench search --benchmark {benchmark}` (it writes both)")
    return [{**r, "start": _when(r["start"]), "end": _when(r["end"])} for r in table["trials"] if r["counted"]]


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def study_rows(study: optuna.Study, k: int, name: str, epochs: int, folds: int | None, *,
               counted_only: bool = True) -> list[dict]:  # fmt: skip
    """The rows of round `k` (from 1) named `name`, `epochs` a trial: round, number, state, value, times,
    `epochs` trained (reported steps, times `epochs` with folds), `full` (what it costs unpruned) and
    `counted` (in the budget); only the trials that counted unless `counted_only` is off."""
    attrs = study.user_attrs
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        counted = counts_in_budget(attrs, t)
        if counted_only and not counted:
            continue
        steps = len(t.intermediate_values) or (1 if t.state == optuna.trial.TrialState.COMPLETE else 0)
        rows.append({
            "round": k, "round_name": name, "trial": t.number, "state": t.state.name.lower(), "value": t.value,
            "epochs": steps * (epochs if folds else 1), "full": epochs * (folds or 1),
            "start": t.datetime_start, "end": t.datetime_complete, "counted": counted,
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
