"""A finished search read back from its studies: what it cost and how it went, for `dvc metrics` and `dvc plots`.

`effort` gives the numbers of `metrics/<b>.json`'s `search` (trials, pruned, epochs trained, wall
time); `write_history` writes one table per round under `plots/<b>/search/` (trial number, value),
which `dvc plots` draws as the coarse-to-fine history, one marker shape per round. Trials that never
counted (surplus, discarded, cut off by a crash) are left out, as in the budget.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from pipeline import paths
from pipeline.errors import MissingInputError
from pipeline.search.budget import _counts as counts_in_budget
from pipeline.search.storage import open_storage

SEARCH_PLOTS = "search"  # plots/<b>/search/<k>-<round>.csv


def round_file(k: int, name: str) -> str:
    """The history table of round `k` (from 1) named `name`, relative to `plots/<b>/`."""
    return f"{SEARCH_PLOTS}/{k}-{name}.csv"


def trial_rows(storage_url: str | None, benchmark: str, result: dict, *, kfold: bool) -> list[dict]:
    """One row per trial that counted, in the order the rounds ran: round, number, state, value, epochs, times.

    Args:
        `result`: the search result (`results/search/<b>.json`), which names each round's study.
        `kfold`: the data has folds, so each reported step is a whole fold of the round's epochs.

    Raises:
        MissingInputError: a study the result names is gone from the storage.
    """
    storage = open_storage(storage_url, benchmark)
    rows: list[dict] = []
    for k, rnd in enumerate(result.get("rounds", []), start=1):
        try:
            study = optuna.load_study(study_name=rnd["study"], storage=storage)
        except KeyError:
            raise MissingInputError(
                f"{paths.search_result(benchmark)} names study {rnd['study']}, which its storage does not hold; "
                f"rerun `tunebench search --benchmark {benchmark}`"
            ) from None
        attrs = study.user_attrs
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if not counts_in_budget(attrs, t):
                continue
            steps = len(t.intermediate_values) or (1 if t.state == optuna.trial.TrialState.COMPLETE else 0)
            rows.append({
                "round": k, "round_name": rnd["round"], "trial": t.number, "state": t.state.name.lower(),
                "value": t.value, "epochs": steps * (rnd["epochs"] if kfold else 1),
                "start": t.datetime_start, "end": t.datetime_complete,
            })  # fmt: skip
    return rows


def effort(rows: list[dict]) -> dict:
    """Trials, pruned trials, epochs trained and wall time (seconds from each round's first start to its last end)."""
    wall = 0.0
    for k in sorted({r["round"] for r in rows}):
        starts = [r["start"] for r in rows if r["round"] == k and r["start"] is not None]
        ends = [r["end"] for r in rows if r["round"] == k and r["end"] is not None]
        if starts and ends:
            wall += max(0.0, (max(ends) - min(starts)).total_seconds())
    return {
        "trials": len(rows),
        "pruned": sum(r["state"] == "pruned" for r in rows),
        "epochs": int(sum(r["epochs"] for r in rows)),
        "wall_s": round(wall, 1),
    }


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
