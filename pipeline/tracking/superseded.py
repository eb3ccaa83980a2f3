"""Runs something newer replaced, tagged so the MLflow UI, the notebook and the leaderboard agree on what is current.

A replaced run gets tag `superseded` (what replaces it: a study name or a run id) and a description
(`mlflow.note.content`) starting with a `Superseded: ...` paragraph. Two kinds of run are replaced:

- the round runs (`kind=study_round`) and trial runs (tag `study_name`) of a study the benchmark's
  search result no longer names (a changed configuration made new studies); `mark_rounds`, when a
  search writes its result, which also unmarks the runs of its current studies (a configuration
  changed back);
- the `kind=train_best` runs other than the one `tunebench train_best` just finished (`mark_best`).

Only the runs to change are fetched (filters on the tags), one `log_batch` each, so a benchmark with
hundreds of trial runs costs a few queries once its old runs are marked.
"""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.tracking.runs import set_tags

SUPERSEDED = "superseded"  # tag: the study or run that replaces this run
NOTE = "mlflow.note.content"
PREFIX = "Superseded: "  # the first paragraph of a replaced run's description


def mark_rounds(mlc: MlflowClient, experiment: str, current: list[str]) -> int:
    """Tag superseded the runs of experiment `experiment`'s studies not in `current` (round k's current study is
    `current[k - 1]`), and untag those of `current`. Returns how many runs changed."""
    found = mlc.get_experiment_by_name(experiment)
    if found is None:
        return 0
    eid = found.experiment_id
    parents = _runs(mlc, eid, f"tags.kind = 'study_round' and tags.{SUPERSEDED} IS NULL")
    stale = {r.data.tags.get("study_name"): r.data.tags.get("round", "") for r in parents}
    changed = 0
    for study, k in stale.items():
        if study is None or study in current:
            continue
        by = current[int(k) - 1] if k.isdigit() and 0 < int(k) <= len(current) else current[-1]
        why = f"study `{study}` was replaced by `{by}`, a study of the current search (its configuration changed)"
        runs = _runs(mlc, eid, f"tags.study_name = '{study}' and tags.{SUPERSEDED} IS NULL")
        for run in sorted(runs, key=lambda r: r.data.tags.get("kind") == "study_round"):  # the round run last: a
            _mark(mlc, run, by, why)  # marking cut off is finished by the next search, which finds it unmarked
            changed += 1
    for study in current:
        for run in _runs(mlc, eid, f"tags.study_name = '{study}' and tags.{SUPERSEDED} IS NOT NULL"):
            note = run.data.tags.get(NOTE, "")
            if note.startswith(PREFIX):
                set_tags(mlc, run.info.run_id, {NOTE: note.partition("\n\n")[2]})
            try:
                mlc.delete_tag(run.info.run_id, SUPERSEDED)
            except MlflowException:  # another launcher of the same search removed it first
                continue
            changed += 1
    return changed


def mark_best(mlc: MlflowClient, experiment_id: str, run_id: str) -> int:
    """Tag superseded by `run_id` the other `kind=train_best` runs of the experiment. Returns how many."""
    runs = _runs(mlc, experiment_id, f"tags.kind = 'train_best' and tags.{SUPERSEDED} IS NULL")
    old = [r for r in runs if r.info.run_id != run_id]
    for run in old:
        _mark(mlc, run, run_id, f"run {run_id} retrained the benchmark's best configuration later (its current model)")
    return len(old)


def _mark(mlc: MlflowClient, run: Run, by: str, why: str) -> None:
    note = run.data.tags.get(NOTE, "")
    set_tags(mlc, run.info.run_id, {SUPERSEDED: by, NOTE: f"{PREFIX}{why}." + (f"\n\n{note}" if note else "")})


def _runs(mlc: MlflowClient, experiment_id: str, query: str) -> list[Run]:
    """Every run of the experiment matching `query`, read in full before any is changed (pages are offsets)."""
    out, token = [], None
    while True:
        page = mlc.search_runs([experiment_id], query, max_results=1000, page_token=token)
        out += page
        token = page.token
        if not token:
            return out
