"""Drive the coarse-to-fine rounds of one benchmark.

Each round is its own Optuna study (`<benchmark>.<k>-<round>.<hash>`, the
hash covering everything that defines the round, so a changed configuration
starts fresh studies while an interrupted run resumes its own; a round's own
budget, `n_trials` and `timeout`, is left out, so raising it extends the
study). Round k+1's ranges are narrowed from round k's best trials, and round
k's best configurations are enqueued first. The ranges of every round are
saved in the search result and logged to the round's MLflow parent run.

The budget counts finished trials (COMPLETE, PRUNED, FAIL) except those cut
off by a crash (`interrupted`), whose configurations are retried instead.
After every trial the Keras session is cleared and garbage collected (see
`benchmarks/trial_memory.py` for what that saves).
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna

from pipeline import paths, tracking
from pipeline.config import Params, ParamRange, RoundConfig, fingerprint
from pipeline.search.objective import TrialContext, run_trial
from pipeline.search.spaces import narrow, space_to_dict, top_trials
from pipeline.search.storage import (
    WORKER_ATTR,
    fail_interrupted,
    is_interrupted,
    is_journal,
    make_pruner,
    make_sampler,
    open_storage,
    worker_id,
)
from pipeline.tasks import task_metric

optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials instead
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
RELEASE_MEMORY = True  # clear the Keras session and collect garbage after every trial (off only to measure)


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


def budget_used(study: optuna.Study) -> int:
    """Trials that count against the budget: finished ones, less those failed by an interruption."""
    attrs = study.user_attrs
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in FINISHED and not is_interrupted(attrs, t))


def _load_data(dataset: str):
    from pipeline.features import ProcessedData  # noqa: PLC0415

    return ProcessedData.load(paths.processed_dir(dataset))


def _worker(params_path: str, key: str, k: int, space: dict, n_trials: int, timeout, storage_url, threads: int,
            parent_run_id: str, experiment_id: str, seed_offset: int) -> None:  # fmt: skip
    """Run `n_trials` of round `k` in this process (also the body of each `--workers` process)."""
    os.environ["TUNEBENCH_THREADS"] = str(threads)
    from pipeline.config import load_params  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415

    params = load_params(params_path)
    bench = params.benchmark(key)
    rnd = bench.rounds[k]
    storage = open_storage(storage_url, key, tracking_uri=params.tracking_uri())
    space_r = {n: ParamRange(**v) for n, v in space.items()}
    data = _load_data(bench.dataset)
    study = optuna.load_study(
        study_name=study_name(params, key, k), storage=storage,
        sampler=make_sampler(rnd.sampler or params.search.sampler, params.search.seed + 1000 * k + seed_offset,
                             space_r),
        pruner=make_pruner(rnd, steps=len(data.folds) if data.folds else rnd.epochs),
    )  # fmt: skip
    mlc = tracking.client(params.tracking_uri())
    ctx = TrialContext(
        family=get_family(bench.model), data=data, space=space_r, fixed=bench.hparams, epochs=rnd.epochs,
        seed=bench.seed, mlc=mlc, experiment_id=experiment_id, parent_run_id=parent_run_id,
        tags=_trial_tags(params, key, k, study.study_name), log_models=params.tracking.log_models,
    )  # fmt: skip
    bar = _ProgressBar(study, n_trials) if seed_offset == 0 else None
    try:
        optimize(study, ctx, n_trials=n_trials, timeout=timeout, callbacks=[bar] if bar else None)
    finally:
        if bar is not None:
            bar.bar.close()


def optimize(study: optuna.Study, ctx: TrialContext, *, n_trials: int | None, timeout: float | None,
             callbacks: list | None = None) -> None:  # fmt: skip
    """Run trials of `study` in this process: the loop of every worker.

    Each trial first records its worker (so a later resume can tell it from a crashed one);
    after each, the Keras session is cleared and garbage collected (`RELEASE_MEMORY`). Stops
    after `n_trials` or once `timeout` seconds have passed (the running trial finishes).
    """
    me = worker_id()

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, me)
        return run_trial(trial, ctx)

    extra = [release_memory] if RELEASE_MEMORY else []
    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(Exception,),
                   callbacks=[*extra, *(callbacks or [])])  # fmt: skip


def release_memory(study: optuna.Study | None = None, trial: optuna.trial.FrozenTrial | None = None) -> None:
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
    """A live line per finished trial: done, pruned, failed, best so far."""

    def __init__(self, study: optuna.Study, total: int):
        from tqdm import tqdm  # noqa: PLC0415

        self.bar = tqdm(total=total, desc=study.study_name, unit="trial", file=sys.stderr, leave=True)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        try:
            best = f"{study.best_value:.4g}"
        except ValueError:
            best = "-"
        self.bar.set_postfix(
            complete=states.count(optuna.trial.TrialState.COMPLETE),
            pruned=states.count(optuna.trial.TrialState.PRUNED),
            failed=states.count(optuna.trial.TrialState.FAIL), best=best,
        )  # fmt: skip
        self.bar.update(1)


def run_round(params: Params, params_path: str, key: str, k: int, space: dict[str, ParamRange], *,
              prev: optuna.Study | None, n_trials: int | None, timeout: float | None, workers: int,
              storage_url: str | None, notes: list[str], direction: str) -> optuna.Study:  # fmt: skip
    """Create or resume round `k`'s study, run its remaining budget, and log its parent run."""
    bench = params.benchmark(key)
    rnd = bench.rounds[k]
    storage = open_storage(storage_url, key, tracking_uri=params.tracking_uri())
    name = study_name(params, key, k)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True)
    interrupted = fail_interrupted(study, journal=is_journal(storage_url), tracking_uri=params.tracking_uri())
    if interrupted:
        print(f"{name}: {interrupted} trial(s) interrupted earlier marked FAIL and queued again; resuming",
              file=sys.stderr)  # fmt: skip
    mlc = tracking.client(params.tracking_uri())
    experiment_id = tracking.ensure_experiment(mlc, tracking.experiment_name(key, bench.dataset, bench.model))
    if "space" in study.user_attrs and study.user_attrs["space"] != space_to_dict(space):
        space = {n: ParamRange(**v) for n, v in study.user_attrs["space"].items()}
        notes = [*study.user_attrs.get("narrowing_notes", []), "resumed with the ranges this study started with"]
    budget = n_trials if n_trials is not None else rnd.n_trials
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        parent = tracking.start_run(mlc, experiment_id, name, tags=_trial_tags(params, key, k, name) | {
            "kind": "study_round"})
        study.set_user_attr("mlflow_parent_run_id", parent)
        study.set_user_attr("space", space_to_dict(space))
        study.set_user_attr("narrowing_notes", notes)
        tracking.log_params(mlc, parent, {f"range.{n}": v for n, v in space_to_dict(space).items()}
                            | {"epochs": rnd.epochs, "n_trials": budget, "pruner": rnd.pruner})
        if prev is not None and rnd.enqueue_best:
            for t in top_trials(prev.get_trials(deepcopy=False), direction, 1.0)[: rnd.enqueue_best]:
                inside = {n: v for n, v in t.params.items() if n in space and _inside(space[n], v)}
                if len(inside) == len(space):
                    study.enqueue_trial(inside, user_attrs={"enqueued_from": f"{prev.study_name}#{t.number}"})
    else:
        mlc.update_run(parent, status="RUNNING")
    remaining = budget - budget_used(study)
    if remaining > 0:
        _run_workers(params_path, key, k, space, remaining, timeout or rnd.timeout, storage_url, workers,
                     parent, experiment_id)  # fmt: skip
    else:
        print(f"{name}: budget of {budget} trials already met; nothing to run", file=sys.stderr)
    _summarize_round(mlc, parent, study, space, notes, budget)
    return study


def _inside(r: ParamRange, v) -> bool:
    return v in r.choices if not r.is_numeric else r.low <= v <= r.high


def _run_workers(params_path, key, k, space, remaining, timeout, storage_url, workers, parent, exp_id) -> None:
    space_d = space_to_dict(space)
    if workers <= 1:
        _worker(params_path, key, k, space_d, remaining, timeout, storage_url, int(os.environ.get(
            "TUNEBENCH_THREADS", "1")), parent, exp_id, 0)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    quotas = [remaining // workers + (i < remaining % workers) for i in range(workers)]
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(params_path, key, k, space_d, q, timeout, storage_url, threads, parent,
                                          exp_id, i))  # fmt: skip
        for i, q in enumerate(quotas) if q > 0
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} search worker(s) exited with codes {bad}; rerun to resume the study")


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
        files = write_study_plots(study, Path(tmp), list(space))
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

    Returns:
        The result written to `results/search/<key>.json`.
    """
    bench = params.benchmark(key)
    _, direction = task_metric(_load_data(bench.dataset).task)
    storage_url = storage_url or params.storage_url()
    workers = workers or params.search.workers
    rounds_out: list[dict] = []
    prev: optuna.Study | None = None
    space = dict(bench.space)
    for k, rnd in enumerate(bench.rounds):
        notes = ["ranges from params.yaml"]
        if prev is not None:
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
    result = {"benchmark": key, "dataset": bench.dataset, "model": bench.model, "direction": direction,
              "rounds": rounds_out, "best": _overall_best(rounds_out, direction)}  # fmt: skip
    paths.write_json_atomic(paths.search_result(key), result)
    return result


def _load_existing(params: Params, key: str, k: int, storage_url: str | None) -> optuna.Study:
    """Load round `k`'s study for a run of a later round only (`--round`)."""
    name = study_name(params, key, k)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage_url, key))
    except KeyError:
        raise RuntimeError(
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
