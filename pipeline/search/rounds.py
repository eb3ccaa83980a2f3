"""What a round is, and the rounds of one benchmark driven to its search result.

Each round is its own Optuna study (`<benchmark>.<k>-<round>.<hash>`, the hash covering
everything that defines the round, so a changed configuration starts fresh studies while an
interrupted run resumes its own; a round's own budget, `n_trials`, `timeout` and
`reinvest_pruned`, is left out, so raising it extends the study). Round k+1's ranges are
narrowed from round k's best trials, and round k's best configurations are enqueued first.
The ranges of every round are saved in the search result and logged to the round's MLflow
parent run.

The creator of a round's study sets the round up (`round_setup`: MLflow parent run, enqueued
best trials); a launcher that finds the study just created waits for that, and a later round
waits for the trials still running in the previous one before narrowing from it
(`execution.resume.wait_round_finished`). The trials themselves run in `execution`, within
the budget of `execution.budget`.
"""

from __future__ import annotations

import functools
import sys

import optuna

from pipeline import data_identity, fileio, paths, retry, search_summary, tracking
from pipeline.config import ParamRange, Params, RoundConfig, fingerprint
from pipeline.errors import ConfigError, MissingInputError, SearchFailedError
from pipeline.search import round_summary, selection
from pipeline.search.execution import concurrency
from pipeline.search.execution.budget import budget_view, discard_failed_attempt, no_completed_trial
from pipeline.search.execution.fork_server import start_early
from pipeline.search.execution.job import RoundJob
from pipeline.search.execution.memory import trials_per_process
from pipeline.search.execution.resume import run_budget, wait_round_finished
from pipeline.search.execution.stale_trials import fail_interrupted
from pipeline.search.objective import trial_hparams
from pipeline.search.round_setup import close_left_runs, close_stray_runs, create_or_join, set_up_round, trial_tags
from pipeline.search.spaces import narrow, space_from_dict, space_to_dict
from pipeline.search.storage import describe, is_journal, open_storage
from pipeline.tasks import task_metric


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
    study = create_or_join(storage, name, direction, bench.dataset)
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
    close_left_runs(mlc, experiment_id, name)
    if "space" in study.user_attrs and study.user_attrs["space"] != space_to_dict(space):
        space = space_from_dict(study.user_attrs["space"])
        notes = [*study.user_attrs.get("narrowing_notes", []), "resumed with the ranges this study started with"]
    budget = _budget(rnd, n_trials)
    tags = trial_tags(params, key, k, name)
    parent = set_up_round(study, mlc, experiment_id, params, key, k, space, notes, budget=budget, tags=tags,
                          prev=prev, direction=direction)  # fmt: skip
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
    close_stray_runs(mlc, experiment_id, study)
    study = budget_view(study, budget)  # a lowered budget: the trials a fresh run of it asks
    round_summary.log_round_summary(
        mlc, parent, study, space, notes, budget, k=k, rnd=rnd, dataset=bench.dataset, direction=direction
    )
    return study


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
    task = load_processed(paths.processed_dir(bench.dataset)).task
    _, direction = task_metric(task)
    hparams_of = functools.partial(trial_hparams, model=bench.model, task=task, fixed=bench.hparams)
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
        rounds_out.append(round_summary.round_result(study, rnd, space, notes, _budget(rnd, n_trials), hparams_of))
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
