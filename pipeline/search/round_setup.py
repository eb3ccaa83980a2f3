"""Setting a round up: its Optuna study created or joined, its MLflow parent run, its first trials.

Creating a study is atomic in every storage: its creator sets the round up (`set_up_round`: the
MLflow parent run, the ranges, the enqueued first trials, and the parent run's id last); a
launcher that finds the study just created waits for that (`create_or_join` polls the study's
user attrs). Before and after a round, the MLflow runs that ended processes left RUNNING are
closed (`close_left_runs`, `close_stray_runs`).
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

import optuna

from pipeline import fileio, paths, tracking
from pipeline.config import ParamRange, Params, RoundConfig
from pipeline.processes import worker_alive, worker_id
from pipeline.search.spaces import random_points, space_to_dict, top_trials
from pipeline.tasks import task_metric

SETUP_WAIT_S = 120.0  # how long a launcher waits for the creator of a round's study to set the round up
OWNERLESS_WAIT_S = 10.0  # how long a launcher waits for the creator of a new study to name itself (OWNER_ATTR)
OWNER_ATTR = "created_by"  # study user attr: the worker that created the study and sets the round up


def create_or_join(storage, name: str, direction: str, dataset: str) -> optuna.Study:
    """Create round study `name` (its objective and creator named), or load it and wait while its creator sets it up."""
    try:  # creating a study is atomic in every storage: its creator sets the round up (parent run, enqueues)
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        _name_objective(study, dataset)
        study.set_user_attr(OWNER_ATTR, worker_id())
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        _wait_for_setup(study)
    return study


def trial_tags(params: Params, key: str, k: int, name: str) -> dict[str, Any]:
    """MLflow tags of the round's parent run and of every trial's run (the study's hash in `study_hash`)."""
    bench = params.benchmark(key)
    digest = fileio.file_sha256(paths.processed_manifest(bench.dataset))
    commit = tracking.git_commit()
    return {
        "study_name": name, "study_hash": name.rpartition(".")[2], "round": k + 1, "round_name": bench.rounds[k].name,
        "benchmark": key, "dataset": bench.dataset, "model": bench.model, "dataset_manifest_hash": digest,
        "git_commit": commit, **tracking.source_tags("tunebench search", commit),
    }  # fmt: skip


def round_run_name(params: Params, key: str, k: int) -> str:
    """The parent run of round `k` (0-based): `coarse · r1`, what the runs table shows first."""
    return f"{params.benchmark(key).rounds[k].name} · r{k + 1}"


def set_up_round(study: optuna.Study, mlc, experiment_id: str, params: Params, key: str, k: int,
                 space: dict[str, ParamRange], notes: list[str], *, budget: int, tags: dict[str, Any],
                 prev: optuna.Study | None, direction: str) -> str:  # fmt: skip
    """The id of round `k`'s MLflow parent run: its own, reopened; or a new one, set up with the round's ranges and
    notes and its first trials enqueued (`enqueue_first`) when it has none (the creator, or a lost parent run)."""
    name = study.study_name
    bench = params.benchmark(key)
    rnd = bench.rounds[k]
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is not None and not tracking.reopen_run(mlc, parent):
        print(f"{name}: its MLflow parent run {parent} is gone from {tracking.redact(params.tracking_uri())} (the "
              "store was deleted or replaced); the round gets a new one", file=sys.stderr)  # fmt: skip
        parent = None
    if parent is None:  # set the round up; the parent run id goes last: launchers waiting for it find the rest
        parent = tracking.start_run(mlc, experiment_id, round_run_name(params, key, k), tags=tags | {
            "kind": "study_round", "mlflow.note.content": f"Optuna study `{name}`: round {k + 1} ({rnd.name}) of "
            f"{key}, {rnd.epochs} epochs a trial; one nested run per trial"})  # fmt: skip
        tracking.log_dataset(mlc, parent, bench.dataset, tags["dataset_manifest_hash"], "train/validation")
        study.set_user_attr("space", space_to_dict(space))
        study.set_user_attr("narrowing_notes", notes)
        tracking.log_params(mlc, parent, {f"range.{n}": v for n, v in space_to_dict(space).items()}
                            | {"epochs": rnd.epochs, "n_trials": budget, "pruner": rnd.pruner})  # fmt: skip
        if not any("enqueued_from" in t.user_attrs for t in study.get_trials(deepcopy=False)):
            enqueue_first(study, prev, rnd, space, bench.space, direction, budget=budget,
                          seed=params.search.seed + 1000 * k, salt=key)  # fmt: skip
        study.set_user_attr("mlflow_parent_run_id", parent)
    return parent


def close_left_runs(mlc, experiment_id: str, name: str) -> None:
    """Before round `name` runs: mark FAILED the MLflow runs an interrupted process left RUNNING."""
    closed = tracking.close_orphan_runs(mlc, experiment_id, by="search")
    if closed:
        print(f"{name}: {len(closed)} MLflow run(s) left RUNNING by an interrupted process marked FAILED",
              file=sys.stderr)  # fmt: skip


def close_stray_runs(mlc, experiment_id: str, study: optuna.Study) -> None:
    """After a round ran: mark FAILED the MLflow runs its workers left RUNNING."""
    name = study.study_name
    # a run left RUNNING by its ended workers, or by a live (warm) one whose trial ended with another run:
    # created twice when the MLflow server went away mid-request
    finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    stray = tracking.close_orphan_runs(mlc, experiment_id, by="search")
    stray += tracking.close_runs_of_finished_trials(mlc, experiment_id, name, finished, by="search")
    if stray:
        print(f"{name}: {len(stray)} MLflow run(s) its workers left RUNNING marked FAILED", file=sys.stderr)


def enqueue_first(study: optuna.Study, prev: optuna.Study | None, rnd: RoundConfig, space: dict[str, ParamRange],
                  full: dict[str, ParamRange], direction: str, *, budget: int, seed: int,
                  salt: str) -> None:  # fmt: skip
    """Queue what round `rnd` runs first: the previous round's `enqueue_best` best configurations inside its
    ranges, then `explore` x `budget` configurations drawn at random from the `full` ranges (params.yaml's), so a
    narrowing that missed the best region can be recovered; drawn from `seed` and `salt` like the sampler."""
    if prev is not None and rnd.enqueue_best:
        for t in top_trials(prev.get_trials(deepcopy=False), direction, 1.0)[: rnd.enqueue_best]:
            inside = {n: v for n, v in t.params.items() if n in space and _inside(space[n], v)}
            if len(inside) == len(space):
                study.enqueue_trial(inside, user_attrs={"enqueued_from": f"{prev.study_name}#{t.number}"})
    for i, config in enumerate(random_points(full, round(rnd.explore * budget), seed, salt)):
        study.enqueue_trial(config, user_attrs={"enqueued_from": f"explore#{i}"})


def _inside(r: ParamRange, v) -> bool:
    return v in r.choices if not r.is_numeric else r.low <= v <= r.high


def _name_objective(study: optuna.Study, dataset: str) -> None:
    """Name the objective (`best_val_accuracy` / `best_val_mae`, the trial runs' MLflow metric) so
    optuna-dashboard and `trials_dataframe` label it."""
    metric, _ = task_metric(fileio.read_json(paths.processed_manifest(dataset))["task"])
    with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"best_val_{metric}"])


def _wait_for_setup(study: optuna.Study, limit: float = SETUP_WAIT_S) -> None:
    """Wait while another launcher that just created this round's study sets it up.

    Returns at once when the round is set up or its owner is a dead process of this host; after
    `OWNERLESS_WAIT_S` when no owner has named itself (a study created by hand, to enqueue
    trials); else after `limit` seconds.
    """
    t0 = time.monotonic()
    while True:
        attrs = study.user_attrs
        owner = attrs.get(OWNER_ATTR)
        if "mlflow_parent_run_id" in attrs:
            return
        if owner is None:  # just created (its creator names itself a moment later), or created by hand
            if time.monotonic() - t0 > OWNERLESS_WAIT_S:
                return
            time.sleep(0.2)
            continue
        if owner.get("host") == worker_id()["host"] and not worker_alive(owner):
            return
        if time.monotonic() - t0 > limit:
            print(f"{study.study_name}: its creator did not set it up in {limit:.0f} s; setting it up here",
                  file=sys.stderr)  # fmt: skip
            return
        time.sleep(0.5)
