"""Drive the coarse-to-fine rounds of one benchmark.

Each round is its own Optuna study (`<benchmark>.<k>-<round>.<hash>`, the
hash covering everything that defines the round, so a changed configuration
starts fresh studies while an interrupted run resumes its own; a round's own
budget, `n_trials` and `timeout`, is left out, so raising it extends the
study). Round k+1's ranges are narrowed from round k's best trials, and round
k's best configurations are enqueued first. The ranges of every round are
saved in the search result and logged to the round's MLflow parent run.

The budget counts finished trials (COMPLETE, PRUNED, FAIL) except those cut
off by a crash (`interrupted`), whose configurations are retried instead. It
is shared by every process working on the study, local workers and launchers
on other machines alike: each stops once finished plus running trials reach
it, and trial numbers settle a tie (see `optimize`). The creator of a round's
study sets the round up (MLflow parent run, enqueued best trials); a launcher
that finds the study just created waits for that, and a later round waits
for the trials still running in the previous one before narrowing from it.
After every trial the Keras session is cleared and garbage collected. That
does not stop TensorFlow from keeping ~5 MB of every model built in a process
(`benchmarks/trial_memory.py` measures it), so Keras trials run in spawned
worker processes of at most `TRIALS_PER_PROCESS` trials each when a round has
more than that. `--workers N` runs N such processes side by side.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from collections import Counter
from typing import Any

import optuna

from pipeline import paths, tracking
from pipeline.config import Params, ParamRange, RoundConfig, fingerprint
from pipeline.errors import MissingInputError, SearchFailedError
from pipeline.search.objective import TrialContext, run_trial
from pipeline.search.spaces import narrow, space_to_dict, top_trials
from pipeline.search.storage import (
    WORKER_ATTR,
    describe,
    fail_interrupted,
    is_interrupted,
    is_journal,
    make_pruner,
    make_sampler,
    open_storage,
    worker_alive,
    worker_id,
)
from pipeline.tasks import task_metric

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials instead
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
RELEASE_MEMORY = True  # clear the Keras session and collect garbage after every trial (off only to measure)
SETUP_WAIT_S = 120.0  # how long a launcher waits for the creator of a round's study to set the round up
OWNER_ATTR = "created_by"  # study user attr: the worker that created the study and sets the round up
DISCARDED_PREFIX = "discarded."  # study user attr `discarded.<number>`: a failed attempt's trial, budget freed
SURPLUS_ATTR = "surplus"  # trial user attr: asked after the budget was claimed elsewhere; stopped at once
TRIALS_PER_PROCESS = 50  # Keras families: trials per worker process before a fresh one (see trials_per_process)


def one_line(text: str, limit: int = 500) -> str:
    """`text` on one line (whitespace runs collapsed), cut at `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class _OneLineTrialFailures(logging.Filter):
    """Optuna's report of a failed trial as one line, without the traceback.

    The traceback is kept where it can be read later: the trial's MLflow run (artifact
    `error.txt`) and the trial's `fail_reason` user attr hold the error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if " failed with value None" in message:  # Optuna's second line about the same failure
            return False
        record.msg, record.args, record.exc_info, record.exc_text = one_line(message), (), None, None
        return True


logging.getLogger("optuna.study._optimize").addFilter(_OneLineTrialFailures())


def study_name(params: Params, key: str, k: int) -> str:
    """The name of round `k` (0-based) of benchmark `key`: `<key>.<k+1>-<round name>.<hash>`.

    The hash covers what defines the round's trials: the dataset's preprocessing, the model,
    fixed hyperparameters, the space, every earlier round (their results shape this round's
    ranges), this round without its budget (`n_trials`, `timeout`), seeds and the sampler.
    Tracking, workers and storage settings do not change it.
    """
    bench = params.benchmark(key)
    this = bench.rounds[k].model_dump(exclude={"n_trials", "timeout"})
    fp = fingerprint(
        params.dataset(bench.dataset).preprocess, bench.model, bench.hparams, bench.space,
        bench.rounds[:k], this, bench.seed, params.search.sampler, params.search.seed,
    )  # fmt: skip
    return f"{key}.{k + 1}-{bench.rounds[k].name}.{fp}"


def _counts(attrs: dict, t: optuna.trial.FrozenTrial) -> bool:
    """Whether trial `t` counts against the budget (`attrs`: the study's user attrs)."""
    return (t.state in FINISHED and not is_interrupted(attrs, t) and SURPLUS_ATTR not in t.user_attrs
            and f"{DISCARDED_PREFIX}{t.number}" not in attrs)  # fmt: skip


def _discard_failed_attempt(study: optuna.Study) -> int:
    """Let a rerun retry a round that ended without a completed trial (the search failed there).

    Its finished trials stop counting against the budget (study user attr `discarded.<number>`),
    so the rerun, once the cause is fixed, runs the whole budget again. Only while no trial
    runs: other launchers still working on the round keep their trials.

    Returns:
        How many trials were discarded.
    """
    trials = study.get_trials(deepcopy=False)
    if no_completed_trial(study) is None or any(t.state == optuna.trial.TrialState.RUNNING for t in trials):
        return 0
    attrs = study.user_attrs
    stale = [t for t in trials if _counts(attrs, t)]
    for t in stale:
        study.set_user_attr(f"{DISCARDED_PREFIX}{t.number}", "the round had no completed trial; retried on rerun")
    return len(stale)


def _claims(attrs: dict, t: optuna.trial.FrozenTrial) -> bool:
    """Whether `t` counts against the budget or will once finished (it runs now)."""
    return _counts(attrs, t) or (t.state == optuna.trial.TrialState.RUNNING and SURPLUS_ATTR not in t.user_attrs)


def claimed(study: optuna.Study, before: int | None = None) -> int:
    """Trials counted against the budget plus those running now; only numbers below `before` if given."""
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    return sum(1 for t in trials if (before is None or t.number < before) and _claims(attrs, t))


class _StopAtBudget:
    """Trial callback: stop this worker once the study's budget is claimed (by any process, anywhere)."""

    def __init__(self, budget: int):
        self.budget = budget

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if claimed(study) >= self.budget:
            study.stop()


def budget_used(study: optuna.Study) -> int:
    """Trials that count against the budget: finished ones, less those cut off by a crash and surplus ones."""
    attrs = study.user_attrs
    return sum(1 for t in study.get_trials(deepcopy=False) if _counts(attrs, t))


def _load_data(dataset: str):
    from pipeline.features import ProcessedData  # noqa: PLC0415

    return ProcessedData.load(paths.processed_dir(dataset))


@dataclass(frozen=True)
class _Job:
    """What every worker process of one round needs (picklable for spawned processes)."""

    params_path: str
    key: str
    k: int
    space: dict
    storage_url: str | None
    parent_run_id: str
    experiment_id: str
    budget: int
    threads: int = 1


def trials_per_process(model: str) -> int:
    """How many trials one worker process runs before a fresh one takes over (0: no limit).

    TensorFlow keeps about 5 MB of every model built in a process, `clear_session` or not
    (tensorflow#36465; measured by `benchmarks/trial_memory.py`), so the Keras families run
    at most `TRIALS_PER_PROCESS` trials a process; other families never need a fresh one.
    `TUNEBENCH_TRIALS_PER_PROCESS` overrides it (0 turns it off).
    """
    env = os.environ.get("TUNEBENCH_TRIALS_PER_PROCESS")
    if env not in (None, ""):
        return max(0, int(env))
    return TRIALS_PER_PROCESS if model.startswith("keras_") else 0


def _worker(job: _Job, n_trials: int, timeout: float | None, slot: int) -> None:
    """Run `n_trials` of round `job.k` in this process (also the body of every spawned worker).

    The sampler draws from a seed and each trial's number (`storage.per_trial_seed`), so
    parallel workers, launchers and every resumed or recycled process sample new points.
    """
    os.environ["TUNEBENCH_THREADS"] = str(job.threads)
    from pipeline.config import load_params  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415

    params = load_params(job.params_path)
    bench = params.benchmark(job.key)
    rnd = bench.rounds[job.k]
    storage = open_storage(job.storage_url, job.key, tracking_uri=params.tracking_uri())
    space_r = {n: ParamRange(**v) for n, v in job.space.items()}
    data = _load_data(bench.dataset)
    study = optuna.load_study(
        study_name=study_name(params, job.key, job.k), storage=storage,
        sampler=make_sampler(rnd.sampler or params.search.sampler, params.search.seed + 1000 * job.k, space_r),
        pruner=make_pruner(rnd, steps=len(data.folds) if data.folds else rnd.epochs),
    )  # fmt: skip
    mlc = tracking.client(params.tracking_uri())
    ctx = TrialContext(
        family=get_family(bench.model), data=data, space=space_r, fixed=bench.hparams, epochs=rnd.epochs,
        seed=bench.seed, mlc=mlc, experiment_id=job.experiment_id, parent_run_id=job.parent_run_id,
        tags=_trial_tags(params, job.key, job.k, study.study_name), log_models=params.tracking.log_models,
    )  # fmt: skip
    if claimed(study) >= job.budget:  # other workers or launchers took the rest meanwhile
        return
    bar = _ProgressBar(study, job.budget) if slot == 0 else None
    try:
        optimize(study, ctx, n_trials=n_trials, timeout=timeout, budget=job.budget,
                 callbacks=[_StopAtBudget(job.budget), *([bar] if bar else [])])  # fmt: skip
    finally:
        if bar is not None:
            bar.bar.close()


def optimize(study: optuna.Study, ctx: TrialContext, *, n_trials: int | None, timeout: float | None,
             budget: int | None = None, callbacks: list | None = None) -> None:  # fmt: skip
    """Run trials of `study` in this process: the loop of every worker.

    Each trial first records its worker (so a later resume can tell it from a crashed one);
    after each, the Keras session is cleared and garbage collected (`RELEASE_MEMORY`). Stops
    after `n_trials`, once `timeout` seconds have passed (the running trial finishes), or once
    the study's `budget` is claimed by any process. Trial numbers decide who gets the last
    places: a trial asked while trials of lower numbers already claim the whole budget (two
    launchers finishing at the same moment) stops at once, PRUNED with user attr `surplus`,
    before it samples or trains; it counts nowhere.
    """
    me = worker_id()

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, me)
        if budget is not None and claimed(study, before=trial.number) >= budget:
            trial.set_user_attr(SURPLUS_ATTR, True)
            trial.set_user_attr("pruned_reason", "surplus: the budget was already claimed by other workers")
            study.stop()
            raise optuna.TrialPruned("surplus: the budget was already claimed by other workers")
        try:
            return run_trial(trial, ctx)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # failed before `run_trial` could record why (bad hyperparameters, tracking...)
            if "fail_reason" not in trial.user_attrs:
                trial.set_user_attr("fail_reason", tracking.redact(f"{type(exc).__name__}: {exc}")[:2000])
            raise

    release = _ReleaseMemory() if RELEASE_MEMORY else None
    try:
        study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(Exception,),
                       callbacks=[*([release] if release else []), *(callbacks or [])])  # fmt: skip
    finally:
        if release is not None and release.frozen:
            gc.unfreeze()


class _ReleaseMemory:
    """Trial callback: clear the Keras session (if Keras is loaded) and collect garbage.

    What survives that collection stays for good (TensorFlow, MLflow, the data, and the
    ~9,000 objects of graph state TensorFlow keeps from every model): it is moved out of the
    collector's sight (`gc.freeze`), so each collection only walks what the next trial makes.
    A full collection with TensorFlow loaded took 0.25 s and grew with every trial; frozen,
    0.01 s (a trial pays two: here and in the Keras family's `clear_session`).
    """

    def __init__(self) -> None:
        self.frozen = False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        release_memory()
        gc.freeze()
        self.frozen = True


def release_memory() -> None:
    """Drop what a finished trial left behind: the Keras session (if Keras is loaded) and garbage."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        keras.backend.clear_session()  # also runs gc.collect()
    else:
        gc.collect()


def _trial_tags(params: Params, key: str, k: int, name: str) -> dict[str, Any]:
    bench = params.benchmark(key)
    digest = paths.file_sha256(paths.processed_dir(bench.dataset) / "manifest.json")
    return {
        "study_name": name, "round": k + 1, "round_name": bench.rounds[k].name, "benchmark": key,
        "dataset": bench.dataset, "model": bench.model, "dataset_manifest_hash": digest,
        "git_commit": tracking.git_commit(),
    }  # fmt: skip


class _ProgressBar:
    """A live line for the round: trials counted against the budget, pruned, failed, best so far."""

    def __init__(self, study: optuna.Study, budget: int):
        from tqdm import tqdm  # noqa: PLC0415

        self.bar = tqdm(total=budget, initial=budget_used(study), desc=study.study_name, unit="trial",
                        file=sys.stderr, leave=True)  # fmt: skip

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        try:
            best = f"{study.best_value:.4g}"
        except ValueError:
            best = "-"
        self.bar.n = budget_used(study)  # every worker's trials, not only this process's
        self.bar.set_postfix(
            complete=states.count(optuna.trial.TrialState.COMPLETE),
            pruned=states.count(optuna.trial.TrialState.PRUNED),
            failed=states.count(optuna.trial.TrialState.FAIL), best=best,
        )  # fmt: skip


def run_round(params: Params, params_path: str, key: str, k: int, space: dict[str, ParamRange], *,
              prev: optuna.Study | None, n_trials: int | None, timeout: float | None, workers: int,
              storage_url: str | None, notes: list[str], direction: str) -> optuna.Study:  # fmt: skip
    """Create or resume round `k`'s study, run its remaining budget, and log its parent run."""
    bench = params.benchmark(key)
    rnd = bench.rounds[k]
    storage = open_storage(storage_url, key, tracking_uri=params.tracking_uri())
    name = study_name(params, key, k)
    try:  # creating a study is atomic in every storage: its creator sets the round up (parent run, enqueues)
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        study.set_user_attr(OWNER_ATTR, worker_id())
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        _wait_for_setup(study)
    interrupted = fail_interrupted(study, journal=is_journal(storage_url), tracking_uri=params.tracking_uri())
    if interrupted:
        print(f"{name}: {interrupted} trial(s) interrupted earlier marked FAIL and queued again; resuming",
              file=sys.stderr)  # fmt: skip
    discarded = _discard_failed_attempt(study)
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
        space = {n: ParamRange(**v) for n, v in study.user_attrs["space"].items()}
        notes = [*study.user_attrs.get("narrowing_notes", []), "resumed with the ranges this study started with"]
    budget = n_trials if n_trials is not None else rnd.n_trials
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:  # set the round up; the parent run id goes last: launchers waiting for it find the rest
        parent = tracking.start_run(mlc, experiment_id, name, tags=_trial_tags(params, key, k, name) | {
            "kind": "study_round"})
        study.set_user_attr("space", space_to_dict(space))
        study.set_user_attr("narrowing_notes", notes)
        tracking.log_params(mlc, parent, {f"range.{n}": v for n, v in space_to_dict(space).items()}
                            | {"epochs": rnd.epochs, "n_trials": budget, "pruner": rnd.pruner})
        enqueued = any("enqueued_from" in t.user_attrs for t in study.get_trials(deepcopy=False))
        if prev is not None and rnd.enqueue_best and not enqueued:
            for t in top_trials(prev.get_trials(deepcopy=False), direction, 1.0)[: rnd.enqueue_best]:
                inside = {n: v for n, v in t.params.items() if n in space and _inside(space[n], v)}
                if len(inside) == len(space):
                    study.enqueue_trial(inside, user_attrs={"enqueued_from": f"{prev.study_name}#{t.number}"})
        study.set_user_attr("mlflow_parent_run_id", parent)
    else:
        tracking.reopen_run(mlc, parent)
    remaining = budget - claimed(study)
    if remaining > 0:
        job = _Job(params_path, key, k, space_to_dict(space), storage_url, parent, experiment_id, budget)
        _run_workers(job, study, remaining, timeout or rnd.timeout, workers, trials_per_process(bench.model))
    else:
        print(f"{name}: budget of {budget} trials already met; nothing to run", file=sys.stderr)
    _summarize_round(mlc, parent, study, space, notes, budget)
    return study


def _wait_for_setup(study: optuna.Study, limit: float = SETUP_WAIT_S) -> None:
    """Wait while another launcher that just created this round's study sets it up.

    Returns at once when the round is set up, was created without an owner (by hand, to
    enqueue trials), or its owner is a dead process of this host; else after `limit` seconds.
    """
    t0 = time.monotonic()
    while True:
        attrs = study.user_attrs
        owner = attrs.get(OWNER_ATTR)
        if "mlflow_parent_run_id" in attrs or owner is None:
            return
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


def _run_workers(job: _Job, study: optuna.Study, remaining: int, timeout: float | None, workers: int,
                 per_process: int) -> None:  # fmt: skip
    """Run `remaining` trials: in this process, or in spawned worker processes.

    `workers` processes share the study, each with its share of the trials; a worker slot
    runs its share in consecutive fresh processes of at most `per_process` trials (0: one
    process). With one worker and no limit reached, the trials run here. A `timeout` (seconds)
    covers the whole round: no new process starts after it. Every worker also stops once the
    study's budget is claimed, so launchers sharing a study (other machines) run it once.

    Raises:
        SearchFailedError: a worker process failed (the study stays resumable); its error is in the message.
    """
    own_threads = int(os.environ.get("TUNEBENCH_THREADS", "1"))
    if workers <= 1 and (not per_process or remaining <= per_process):
        _worker(replace(job, threads=own_threads), remaining, timeout, 0)
        return
    job = replace(job, threads=own_threads if workers <= 1 else max(1, (os.cpu_count() or 1) // workers))
    quotas = [remaining // workers + (i < remaining % workers) for i in range(workers)]
    per = per_process or max(quotas)
    deadline = None if timeout is None else time.monotonic() + timeout
    ctx = mp.get_context("spawn")
    left = dict(enumerate(quotas))
    running: dict[int, tuple[Any, int]] = {}
    bad: list[int] = []
    errors = ctx.SimpleQueue()
    while True:
        for slot, quota in left.items():
            if quota <= 0 or slot in running or bad:
                continue
            rest = None if deadline is None else deadline - time.monotonic()
            if (rest is not None and rest <= 0) or claimed(study) >= job.budget:
                left[slot] = 0
                continue
            n = min(quota, per)
            proc = ctx.Process(target=_worker_process, args=(job, n, rest, slot, errors),
                               name=f"tunebench-worker-{slot}")  # fmt: skip
            proc.start()
            running[slot] = (proc, n)
        if not running:
            break
        mp.connection.wait([p.sentinel for p, _ in running.values()])
        for slot, (proc, n) in list(running.items()):
            if proc.exitcode is None:
                continue
            proc.join()
            del running[slot]
            if proc.exitcode != 0:
                bad.append(proc.exitcode)
                left[slot] = 0
            else:
                left[slot] -= n
    if bad:
        why = [errors.get() for _ in range(len(bad)) if not errors.empty()]
        why += [f"killed by signal {-c}" + (" (out of memory?)" if c == -9 else "") for c in bad if c < 0]
        raise SearchFailedError(
            f"{study.study_name}: {len(bad)} search worker process(es) failed: {'; '.join(why) or f'exit codes {bad}'}"
            "; the study is kept: fix the cause and rerun the same command to resume"
        )


def _worker_process(job: _Job, n_trials: int, timeout: float | None, slot: int, errors) -> None:
    """The body of a spawned worker: `_worker`, its failure sent to the parent as one line (no traceback)."""
    try:
        _worker(job, n_trials, timeout, slot)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the search with it
        from pipeline.errors import TunebenchError  # noqa: PLC0415

        text = str(exc) if isinstance(exc, TunebenchError) else f"{type(exc).__name__}: {exc}"
        errors.put(f"worker {slot}: {one_line(tracking.redact(text))}")
        sys.exit(1)


def _summarize_round(mlc, parent: str, study: optuna.Study, space: dict, notes: list[str], budget: int) -> None:
    """Log the round's outcome to its parent run: best, counts, trials table, Optuna plots."""
    from pipeline.search.plots import write_study_plots  # noqa: PLC0415

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    metrics = {f"n_{k}": v for k, v in counts.items()} | {"budget": budget, "budget_used": budget_used(study)}
    tags: dict[str, Any] = {"narrowing_notes": "\n".join(notes)[:5000]}
    try:
        best = study.best_trial
        metrics["best_value"] = best.value
        tags.update({"best_trial": best.number, "best_params": repr(best.params)})
        tracking.log_params(mlc, parent, {f"best.{k}": v for k, v in best.params.items()})
    except (ValueError, Exception) as exc:  # no completed trial, or params already logged on resume
        tags["best_note"] = str(exc)[:500]
    tracking.log_metrics(mlc, parent, metrics)
    tracking.set_tags(mlc, parent, tags)
    with tempfile.TemporaryDirectory() as tmp:
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # no "There are no complete trials." per plot
        try:
            files = write_study_plots(study, Path(tmp), list(space))
        finally:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        df = study.trials_dataframe()
        df.to_csv(Path(tmp) / "trials.csv", index=False)
        paths.write_json_atomic(Path(tmp) / "ranges.json", {"ranges": space_to_dict(space), "notes": notes})
        tracking.log_figure_files(mlc, parent, [*files, Path(tmp) / "trials.csv", Path(tmp) / "ranges.json"])
    status = "FINISHED" if counts.get("complete") else "FAILED"
    mlc.set_terminated(parent, status=status)


def run_search(params: Params, params_path: str, key: str, *, only_round: int | None = None,
               n_trials: int | None = None, timeout: float | None = None, workers: int | None = None,
               storage_url: str | None = None) -> dict:  # fmt: skip
    """Run (or resume) every round of benchmark `key` and write its search result.

    Before anything is created, the tracking store must be reachable, the storage open and the
    processed data intact. `studies/<key>/storage.json` says where the studies live (any storage;
    no credentials), so the folder DVC expects always exists. A round without a completed trial
    fails the search unless an earlier round has one (then it is warned about: the overall best
    stays the earlier round's).

    Returns:
        The result written to `results/search/<key>.json`.

    Raises:
        SearchFailedError: no completed trial (the message gives the most common reason and its count).
        TrackingError, StorageError, MissingInputError: before any study or run is created.
    """
    bench = params.benchmark(key)
    storage_url = storage_url or params.storage_url()
    tracking.check_reachable(params.tracking_uri())
    open_storage(storage_url, key, tracking_uri=params.tracking_uri())  # a bad URL or dead server fails here
    _, direction = task_metric(_load_data(bench.dataset).task)
    names = [study_name(params, key, k) for k in range(len(bench.rounds))]
    paths.write_json_atomic(paths.study_dir(key) / "storage.json", {**describe(storage_url, key), "studies": names})
    workers = workers or params.search.workers
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
            study = run_round(params, params_path, key, k, space, prev=prev, n_trials=n_trials, timeout=timeout,
                              workers=workers, storage_url=storage_url, notes=notes, direction=direction)  # fmt: skip
        else:
            study = _load_existing(params, key, k, storage_url)
        if "space" in study.user_attrs:  # the ranges the study really used (stable across resumes)
            space = {n: ParamRange(**v) for n, v in study.user_attrs["space"].items()}
            notes = study.user_attrs.get("narrowing_notes", notes)
        rounds_out.append(_round_result(study, rnd, space, notes))
        prev = study
        failure = no_completed_trial(study)
        if failure is not None:
            failure = f"{key}: no completed trial in round {k + 1} ({rnd.name}): {failure}"
            if _overall_best(rounds_out, direction) is None:
                result = {"benchmark": key, "dataset": bench.dataset, "model": bench.model, "direction": direction,
                          "rounds": rounds_out, "best": None, "failure": failure}  # fmt: skip
                paths.write_json_atomic(paths.search_result(key), result)
                raise SearchFailedError(f"{failure}; fix the cause and rerun `tunebench search --benchmark {key}`")
            print(f"warning: {failure}; the best stays that of an earlier round", file=sys.stderr)
    result = {"benchmark": key, "dataset": bench.dataset, "model": bench.model, "direction": direction,
              "rounds": rounds_out, "best": _overall_best(rounds_out, direction)}  # fmt: skip
    paths.write_json_atomic(paths.search_result(key), result)
    return result


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def no_completed_trial(study: optuna.Study) -> str | None:
    """None when `study` has a completed trial; else how its trials ended and their most common reason.

    E.g. `6 of 6 trials failed; most common reason (6 trials): ValueError: unknown optimizer 'adamm'`.
    Surplus trials (stopped before sampling) do not count.
    """
    attrs = study.user_attrs
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED and SURPLUS_ATTR not in t.user_attrs
              and f"{DISCARDED_PREFIX}{t.number}" not in attrs]  # fmt: skip
    if any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        return None
    if not trials:
        return "no trial finished (the time or trial budget ran out first)"

    def reason(t: optuna.trial.FrozenTrial) -> str:
        if is_interrupted(attrs, t):
            return "interrupted (its worker stopped)"
        why = t.user_attrs.get("fail_reason") or t.user_attrs.get("pruned_reason")
        return one_line(why, 300) if why else f"{t.state.name.lower()} (no reason recorded)"

    reasons = [reason(t) for t in trials]
    (kind, n), = Counter(_NUMBER.sub("#", r) for r in reasons).most_common(1)  # alike but for the numbers
    why = next(r for r in reasons if _NUMBER.sub("#", r) == kind)
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in trials)
    pruned = len(trials) - failed
    ended = " and ".join(x for x in (f"{failed} failed" if failed else "", f"{pruned} pruned" if pruned else "") if x)
    return f"{len(trials)} trial(s) ended, {ended}; most common reason ({n} of {len(trials)}): {why}"


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


def _round_result(study: optuna.Study, rnd: RoundConfig, space: dict, notes: list[str]) -> dict:
    trials = study.get_trials(deepcopy=False)
    out: dict[str, Any] = {
        "study": study.study_name, "round": rnd.name, "epochs": rnd.epochs, "ranges": space_to_dict(space),
        "notes": notes, "parent_run_id": study.user_attrs.get("mlflow_parent_run_id"),
        "counts": {s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState},
    }  # fmt: skip
    try:
        b = study.best_trial
        out["best"] = {"value": b.value, "params": b.params, "trial": b.number,
                       "epoch": b.user_attrs.get("best_epoch", rnd.epochs),
                       "run_id": b.user_attrs.get("mlflow_run_id")}  # fmt: skip
    except ValueError:
        out["best"] = None
    return out


def _overall_best(rounds: list[dict], direction: str) -> dict | None:
    """The last round's best (it trained longest); earlier rounds only if the last has none."""
    for r in reversed(rounds):
        if r["best"] is not None:
            return {**r["best"], "study": r["study"], "round": r["round"]}
    return None
