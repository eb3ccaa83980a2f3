"""Drive the coarse-to-fine rounds of one benchmark and write its search result.

Each round is its own Optuna study (`<benchmark>.<k>-<round>.<hash>`, the hash covering
everything that defines the round, so a changed configuration starts fresh studies while an
interrupted run resumes its own; a round's own budget, `n_trials`, `timeout` and
`reinvest_pruned`, is left out, so raising it extends the study). Round k+1's ranges are
narrowed from round k's best trials, and round k's best configurations are enqueued first.
The ranges of every round are saved in the search result and logged to the round's MLflow
parent run.

The creator of a round's study sets the round up (MLflow parent run, enqueued best trials); a
launcher that finds the study just created waits for that, and a later round waits for the
trials still running in the previous one before narrowing from it. The trials themselves run
in `workers`, within the budget of `budget`.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

import optuna

from pipeline import data_identity, fileio, paths, retry, search_summary, tracking
from pipeline.config import ParamRange, Params, RoundConfig, fingerprint
from pipeline.errors import ConfigError, MissingInputError, SearchFailedError
from pipeline.search import round_summary, selection
from pipeline.search.execution import concurrency
from pipeline.search.execution.budget import budget_view, discard_failed_attempt, no_completed_trial
from pipeline.search.spaces import narrow, random_points, space_from_dict, space_to_dict, top_trials
from pipeline.processes import worker_alive, worker_id
from pipeline.search.storage import describe, is_journal, open_storage
from pipeline.search.execution.stale_trials import fail_interrupted
from pipeline.search.execution.resume import run_budget
from pipeline.search.execution.fork_server import start_early
from pipeline.search.execution.job import RoundJob
from pipeline.search.execution.memory import trials_per_process
from pipeline.tasks import task_metric

SETUP_WAIT_S = 120.0  # how long a launcher waits for the creator of a round's study to set the round up
OWNERLESS_WAIT_S = 10.0  # how long a launcher waits for the creator of a new study to name itself (OWNER_ATTR)
OWNER_ATTR = "created_by"  # study user attr: the worker that created the study and sets the round up


def study_name(params: Params, key: str, k: int) -> str:
    """The name of round `k` (0-based) of benchmark `key`: `<key>.<k+1>-<round name>.<hash>`.

    The hash covers what defines the round's trials: the data (`data_identity.require_current`: the
    dataset's settings and raw files' content, checked against the processed data), the model,
    fixed hyperparameters, the space, every earlier round (their results shape this round's
    ranges), this round without its budget (`n_trials`, `timeout`, `reinvest_pruned`), seeds
    and the sampler.
    Tracking, workers and storage settings do not change it.
    """
    bench = params.benchmark(key)
    this = _identity(bench.rounds[k], exclude={"n_trials", "timeout", "reinvest_pruned"})
    fp = fingerprint(
        data_identity.require_current(params, bench.dataset), bench.model, bench.hparams, bench.space,
        [_identity(r) for r in bench.rounds[:k]], this, bench.seed, params.search.sampler, params.search.seed,
    )  # fmt: skip
    return f"{key}.{k + 1}-{bench.rounds[k].name}.{fp}"


def _identity(rnd: RoundConfig, exclude: set[str] | frozenset = frozenset()) -> dict:
    """A round's settings as its study name hashes them: `warm_start` and `explore` only when set, so rounds
    without them keep the names they had before the keys existed."""
    out = rnd.model_dump(exclude=set(exclude))
    return {k: v for k, v in out.items() if not (k in ("warm_start", "explore") and not v)}


def _trial_tags(params: Params, key: str, k: int, name: str) -> dict[str, Any]:
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


def run_round(params: Params, key: str, k: int, space: dict[str, ParamRange], *, prev: optuna.Study | None,
              n_trials: int | None, timeout: float | None, workers: int, storage_url: str | None, notes: list[str],
              direction: str, release_memory: bool = True) -> optuna.Study:  # fmt: skip
    """Create or resume round `k`'s study, run its remaining budget, and log its parent run.

    `release_memory`: clear the Keras session and collect garbage after every trial (off only to measure).
    """
    bench = params.benchmark(key)
    rnd = bench.rounds[k]
    storage = open_storage(storage_url, key, tracking_uri=params.tracking_uri())
    name = study_name(params, key, k)
    try:  # creating a study is atomic in every storage: its creator sets the round up (parent run, enqueues)
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        _name_objective(study, bench.dataset)
        study.set_user_attr(OWNER_ATTR, worker_id())
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        _wait_for_setup(study)
    interrupted = fail_interrupted(study, journal=is_journal(storage_url), tracking_uri=params.tracking_uri())
    if interrupted:
        print(f"{name}: {interrupted} trial(s) interrupted earlier marked FAIL and queued again; resuming",
              file=sys.stderr)  # fmt: skip
    discarded = discard_failed_attempt(study)
    if discarded:
        print(f"{name}: no trial of the {discarded} run earlier completed; running the round's budget again",
              file=sys.stderr)  # fmt: skip
    mlc = tracking.client(params.tracking_uri())
    experiment_id = tracking.ensure_experiment(mlc, tracking.experiment_name(key, bench.dataset, bench.model))
    closed = tracking.close_orphan_runs(mlc, experiment_id, by="search")
    if closed:
        print(f"{name}: {len(closed)} MLflow run(s) left RUNNING by an interrupted process marked FAILED",
              file=sys.stderr)  # fmt: skip
    if "space" in study.user_attrs and study.user_attrs["space"] != space_to_dict(space):
        space = space_from_dict(study.user_attrs["space"])
        notes = [*study.user_attrs.get("narrowing_notes", []), "resumed with the ranges this study started with"]
    budget = _budget(rnd, n_trials)
    tags = _trial_tags(params, key, k, name)
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
    job = RoundJob(
        key=key, study=name, storage_url=storage_url, bench=bench, rnd=rnd,
        sampler=rnd.sampler or params.search.sampler, sampler_seed=params.search.seed + 1000 * k, space=space,
        data_dir=paths.processed_dir(bench.dataset), tracking_uri=params.tracking_uri(),
        log_models=params.tracking.log_models, experiment_id=experiment_id, parent_run_id=parent, tags=tags,
        budget=budget, release_memory=release_memory, retry_s=params.search.retry_s,
        warm=tuple(prev.get_trials(deepcopy=False)) if prev is not None and rnd.warm_start else (),
    )  # fmt: skip
    if not run_budget(job, study, timeout or rnd.timeout, workers, trials_per_process(bench.model)):
        print(f"{name}: budget of {budget} trials already met; nothing to run", file=sys.stderr)
    # a run left RUNNING by its ended workers, or by a live (warm) one whose trial ended with another run:
    # created twice when the MLflow server went away mid-request
    finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    stray = tracking.close_orphan_runs(mlc, experiment_id, by="search")
    stray += tracking.close_runs_of_finished_trials(mlc, experiment_id, name, finished, by="search")
    if stray:
        print(f"{name}: {len(stray)} MLflow run(s) its workers left RUNNING marked FAILED", file=sys.stderr)
    study = budget_view(study, budget)  # a lowered budget: the trials a fresh run of it asks
    round_summary.log_round_summary(
        mlc, parent, study, space, notes, budget, k=k, rnd=rnd, dataset=bench.dataset, direction=direction
    )
    return study


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


def wait_round_finished(study: optuna.Study, storage_url: str | None, tracking_uri: str | None,
                        limit: float = 3600.0) -> None:  # fmt: skip
    """Wait until no trial of `study` runs any more (other launchers' last trials), before narrowing from it.

    Trials of crashed workers are failed on the way (`fail_interrupted`; with RDB storages once
    their heartbeat is older than the grace period). Gives up after `limit` seconds.
    """
    t0 = time.monotonic()
    running = optuna.trial.TrialState.RUNNING
    while study.get_trials(deepcopy=False, states=(running,)):
        if time.monotonic() - t0 > limit:
            print(f"{study.study_name}: trials still running after {limit:.0f} s; narrowing without them",
                  file=sys.stderr)  # fmt: skip
            return
        fail_interrupted(study, journal=is_journal(storage_url), tracking_uri=tracking_uri)
        time.sleep(1.0)


def _inside(r: ParamRange, v) -> bool:
    return v in r.choices if not r.is_numeric else r.low <= v <= r.high


def run_search(params: Params, key: str, *, only_round: int | None = None, n_trials: int | None = None,
               timeout: float | None = None, workers: int | None = None, storage_url: str | None = None,
               release_memory: bool = True) -> dict:  # fmt: skip
    """Run (or resume) every round of benchmark `key` and write its search result.

    Before anything is created, the tracking store must be reachable, the storage open and the
    processed data intact. `studies/<key>/storage.json` says where the studies live (any storage;
    no credentials), so the folder DVC expects always exists. A round without a completed trial
    fails the search unless an earlier round has one (then it is warned about: the overall best
    stays the earlier round's). `release_memory` off keeps what trials leave behind (only to measure it).

    Returns:
        The result written to `results/search/<key>.json`.

    Raises:
        SearchFailedError: no completed trial (the message gives the most common reason and its count).
        ConfigError: `only_round` is not a round of the benchmark.
        TrackingError, StorageError, MissingInputError: before any study or run is created.
    """
    from pipeline.search.execution.data_cache import load_processed  # noqa: PLC0415

    bench = params.benchmark(key)
    if only_round is not None and not 1 <= only_round <= len(bench.rounds):
        names = ", ".join(f"{k + 1} ({r.name})" for k, r in enumerate(bench.rounds))
        raise ConfigError(f"tunebench search --round {only_round}: benchmark {key} has rounds {names}; pick one of "
                          "them, or leave --round out to run them all")  # fmt: skip
    data_identity.require_current(params, bench.dataset)  # before anything: stale processed data is refused
    choice = concurrency.choose(workers or params.search.workers, model=bench.model, rounds=bench.rounds,
                             input_shape=concurrency.input_shape(paths.processed_manifest(bench.dataset)),
                             sampler=params.search.sampler)  # fmt: skip
    print(choice.line(key), file=sys.stderr, flush=True)
    workers = choice.workers
    if workers > 1:
        start_early(bench.model)
    storage_url = storage_url or params.storage_url()
    tracking.check_reachable(params.tracking_uri())
    open_storage(storage_url, key, tracking_uri=params.tracking_uri(), wait=False)  # a bad URL or dead server: fails
    retry.configure(params.search.retry_s)  # from here on, storage and tracking outages are ridden out
    _, direction = task_metric(load_processed(paths.processed_dir(bench.dataset)).task)
    names = [study_name(params, key, k) for k in range(len(bench.rounds))]
    fileio.write_json_atomic(paths.storage_note(key), {**describe(storage_url, key), "studies": names})
    rounds_out: list[dict] = []
    prev: optuna.Study | None = None
    space = dict(bench.space)
    for k, rnd in enumerate(bench.rounds):
        notes = ["ranges from params.yaml"]
        if prev is not None:
            if only_round is None or only_round == k + 1:
                wait_round_finished(prev, storage_url, params.tracking_uri())
            space, notes = narrow(space, prev.get_trials(deepcopy=False), direction, top_quantile=rnd.top_quantile,
                                  pad=rnd.pad, widen_at_edge=rnd.widen_at_edge)  # fmt: skip
        if only_round is None or only_round == k + 1:
            study = run_round(params, key, k, space, prev=prev, n_trials=n_trials, timeout=timeout, workers=workers,
                              storage_url=storage_url, notes=notes, direction=direction,
                              release_memory=release_memory)  # fmt: skip
        else:
            study = budget_view(_load_existing(params, key, k, storage_url), _budget(rnd, n_trials))
        if "space" in study.user_attrs:  # the ranges the study really used (stable across resumes)
            space = space_from_dict(study.user_attrs["space"])
            notes = study.user_attrs.get("narrowing_notes", notes)
        rounds_out.append(round_summary.round_result(study, rnd, space, notes, _budget(rnd, n_trials)))
        prev = study
        failure = no_completed_trial(study)
        if failure is not None:
            failure = f"{key}: no completed trial in round {k + 1} ({rnd.name}): {failure}"
            if round_summary.overall_best(rounds_out) is None:
                search_summary.write_trials(key, rounds_out, storage_url, bench.dataset)
                round_summary.write_result(params, key, direction, rounds_out, failure=failure)
                raise SearchFailedError(f"{failure}; fix the cause and rerun `tunebench search --benchmark {key}`")
            print(f"warning: {failure}; the best stays that of an earlier round", file=sys.stderr)
    last = only_round in (None, len(bench.rounds))  # robust selection follows the last round
    chosen = selection.run_selection(params, key, prev, direction) if last and prev is not None else None
    search_summary.write_trials(key, rounds_out, storage_url, bench.dataset)  # what later stages read of the trials
    return round_summary.write_result(params, key, direction, rounds_out, selection=chosen)


def _load_existing(params: Params, key: str, k: int, storage_url: str | None) -> optuna.Study:
    """Load round `k`'s study for a run of a later round only (`--round`)."""
    name = study_name(params, key, k)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage_url, key))
    except KeyError:
        raise MissingInputError(
            f"round {k + 1} of {key} ({name}) has not run with this configuration; "
            f"run `tunebench search --benchmark {key}` (or `--round {k + 1}`) first"
        ) from None


def _budget(rnd: RoundConfig, n_trials: int | None) -> int:
    """Round `rnd`'s budget in full trials: `--n-trials` if given, else its `n_trials`."""
    return n_trials if n_trials is not None else rnd.n_trials
