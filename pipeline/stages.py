"""The thin I/O shell of each DVC stage: read inputs, call the pure core, write outputs atomically.

One function per stage, named like the stage and the CLI sub-command. Heavy
imports (TensorFlow through the models) happen inside the stages that train.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import data_identity, fileio, paths, tracking
from pipeline.config import Params
from pipeline.errors import MissingInputError, TrackingError
from pipeline.tasks import task_metric


def _recover(mlc, experiment: str, stage: str, *outputs: Path) -> None:
    """Before a stage starts: close the MLflow runs an interrupted predecessor left RUNNING, clean its outputs."""
    found = mlc.get_experiment_by_name(experiment)
    if found is not None:
        closed = tracking.close_orphan_runs(mlc, found.experiment_id, by=stage)
        if closed:
            print(f"{experiment}: {len(closed)} run(s) left RUNNING by an interrupted process marked FAILED",
                  file=sys.stderr)  # fmt: skip
    for out in outputs:
        fileio.clean_staging(out)


def fetch(params: Params, dataset: str) -> dict:
    """Fetch and verify one dataset's files into `data/raw/<dataset>`."""
    from pipeline import datasets  # noqa: PLC0415

    cfg = params.dataset(dataset)
    custom = None if cfg.source == "builtin" else cfg.source.model_dump()
    mirrors = [Path(m) for m in params.mirrors]
    return datasets.fetch(params.catalog_name(dataset), paths.raw_dir(dataset), mirrors=mirrors, custom=custom)


def _load_raw(params: Params, dataset: str):
    from pipeline import datasets  # noqa: PLC0415

    cfg = params.dataset(dataset)
    custom = None if cfg.source == "builtin" else cfg.source.model_dump()
    return datasets.load(params.catalog_name(dataset), paths.raw_dir(dataset), custom=custom, **cfg.options)


def preprocess(params: Params, dataset: str) -> Path:
    """Turn raw data into model-ready features in `data/processed/<dataset>`."""
    from pipeline import features, serving  # noqa: PLC0415

    dest = paths.processed_dir(dataset)
    fileio.clean_staging(dest)
    raw = _load_raw(params, dataset)
    data = features.preprocess(raw, params.dataset(dataset).preprocess.model_dump())
    with fileio.staged_dir(dest) as tmp:
        data.save(tmp, input_hashes=data_identity.processed_inputs(params, dataset))
        fileio.write_json_atomic(tmp / paths.RAW_EXAMPLE, serving.raw_example(raw))
    return dest


def search(params: Params, benchmark: str, **kwargs) -> dict:
    """Run or resume every round of one benchmark's search (`search.rounds.run_search`, which takes `kwargs`), its
    worker processes kept up from one round to the next, outages ridden out only while it runs."""
    from pipeline import retry  # noqa: PLC0415
    from pipeline.search.execution.fork_server import keep_warm  # noqa: PLC0415
    from pipeline.search.journal import remove_stale_lock_renames  # noqa: PLC0415
    from pipeline.search.rounds import run_search  # noqa: PLC0415

    with keep_warm(), retry.scoped():
        result = run_search(params, benchmark, **kwargs)
    remove_stale_lock_renames(paths.journal_file(benchmark))  # a killed search's, never part of the output
    return result


def _best(benchmark: str) -> dict:
    """The best trial of the benchmark's search (`results/search/<benchmark>.json`), with its `hparams`."""
    where = paths.search_result(benchmark)
    result = fileio.read_json(where)
    if not result.get("best"):
        why = f" ({result['failure']})" if result.get("failure") else ""
        raise MissingInputError(f"{where}: the search has no completed trial{why}; fix the cause and rerun "
                                f"`tunebench search --benchmark {benchmark}`")  # fmt: skip
    if "hparams" not in result["best"]:
        raise MissingInputError(f"{where}: written by an earlier version, without the best trial's "
                                f"hyperparameters; rerun `tunebench search --benchmark {benchmark}` (it resumes "
                                "its studies)")  # fmt: skip
    return result["best"]


def train_best(params: Params, benchmark: str) -> dict:
    """Retrain the best configuration on train+validation with `final_seeds` seeds; save every seed's model
    (`models/<b>/seeds/`, a `SeedEnsemble`) and the served MLflow pyfunc model: the seeds' average
    (`serve: ensemble`) or the first seed's model (`serve: single`)."""
    import numpy as np  # noqa: PLC0415
    import scipy.sparse as sp  # noqa: PLC0415

    from pipeline import serving  # noqa: PLC0415
    from pipeline.features import ProcessedData  # noqa: PLC0415
    from pipeline.models import get_family  # noqa: PLC0415
    from pipeline.models.ensemble import SeedEnsemble  # noqa: PLC0415
    from pipeline.tracking.superseded import mark_best  # noqa: PLC0415

    bench = params.benchmark(benchmark)
    data_identity.require_current(params, bench.dataset)
    best = _best(benchmark)
    mlc = tracking.connect(params.tracking_uri())
    data = ProcessedData.load(paths.processed_dir(bench.dataset))
    dest = paths.model_dir(benchmark)
    experiment = tracking.experiment_name(benchmark, bench.dataset, bench.model)
    _recover(mlc, experiment, "train_best", dest)
    family = get_family(bench.model)
    hparams = best["hparams"]  # as the search trained them (`results/search/<b>.json`)
    epochs = bench.final_epochs or int(best.get("epoch") or bench.rounds[-1].epochs)
    x, y = data.X_train, data.y_train
    if data.X_val is not None:
        x = sp.vstack([x, data.X_val]).tocsr() if sp.issparse(x) else np.concatenate([x, data.X_val])
        y = np.concatenate([y, data.y_val])
    digest = fileio.file_sha256(paths.processed_manifest(bench.dataset))
    exp = tracking.ensure_experiment(mlc, experiment)
    seeds = [bench.seed + i for i in range(bench.final_seeds)]
    run_id = tracking.start_run(mlc, exp, f"best · {benchmark}", tags={  # spans the training it records
        "kind": "train_best", "benchmark": benchmark, "source_study": best["study"], "source_trial": best["trial"],
        "source_run_id": best.get("run_id"), "dataset": bench.dataset, "dataset_manifest_hash": digest,
        "git_commit": tracking.git_commit(), **tracking.source_tags("tunebench train_best"),
        "serve": bench.serve,
        "mlflow.note.content": f"{benchmark}: the best trial of `{best['study']}` (trial {best['trial']}) retrained "
                               f"on train+validation for {epochs} epochs with seeds {seeds}; serves "
                               + ("their average" if bench.serve == "ensemble" else f"seed {seeds[0]}'s")})  # fmt: skip
    try:
        tracking.log_params(mlc, run_id, {**hparams, "epochs": epochs, "n_train": len(y), "seeds": seeds,
                                          "serve": bench.serve})  # fmt: skip
        tracking.log_dataset(mlc, run_id, bench.dataset, digest, "train+validation")
        members = []
        for i, seed in enumerate(seeds):  # the first seed's curves as `loss`..., the others' as `seed<s>.loss`...

            def on_epoch(epoch: int, logs: dict, prefix: str = "" if i == 0 else f"seed{seed}.") -> None:
                tracking.log_metrics(mlc, run_id, {prefix + k: v for k, v in logs.items()}, step=epoch + 1)

            members.append(family.train(hparams, x, y, None, None, task=data.task, n_classes=data.n_classes,
                                        epochs=epochs, seed=seed, on_epoch=on_epoch))  # fmt: skip
        ensemble = SeedEnsemble(members, seeds)
        with fileio.staged_dir(dest) as tmp:
            ensemble.save(tmp / paths.SEED_MODELS)
            model = tracking.create_logged_model(mlc, exp, run_id, "best", params={**hparams, "epochs": epochs},
                                                 model_type="best", step=epochs)  # fmt: skip
            served = tmp / paths.SERVED_MODEL
            serving.save_pyfunc(served, model=ensemble if bench.serve == "ensemble" else ensemble.single(),
                                transformer=data.transformer,
                                meta=fileio.read_json(paths.raw_example(bench.dataset)))  # fmt: skip
            tracking.stamp_mlmodel(served, model.model_id, run_id)
            mlc.log_model_artifacts(model.model_id, str(served))
            tracking.finish_logged_model(mlc, model.model_id, True)
            info = {"run_id": run_id, "model_id": model.model_id, "model_source": f"models:/{model.model_id}",
                    "hparams": hparams, "epochs": epochs, "seeds": seeds, "serve": bench.serve,
                    "source": best}  # fmt: skip
            fileio.write_json_atomic(tmp / paths.MODEL_INFO, info)
            mlc.set_terminated(run_id, "FINISHED")  # before the swap: a model in place never names an unfinished run
    except BaseException:
        mlc.set_terminated(run_id, "FAILED")
        raise
    mark_best(mlc, exp, run_id)  # the earlier best runs are tagged superseded
    return info


def _class_names(params: Params, dataset: str) -> list[str] | None:
    """The class names the dataset's catalog entry declares (None: the class indices are the names)."""
    from pipeline import datasets  # noqa: PLC0415

    cfg = params.dataset(dataset)
    custom = None if cfg.source == "builtin" else cfg.source.model_dump()
    return datasets.get_spec(params.catalog_name(dataset), custom).meta.get("label_names")


SEARCH_COMPARED = ("trials", "pruned", "epochs", "wall_s", "best_at_epochs")  # the search in metrics/<b>.json


def evaluate(params: Params, benchmark: str) -> dict:
    """Evaluate the retrained model once on the untouched test split; write metrics, plots and what they mean.

    `metrics/<b>.json` holds only the numbers people compare across experiments, a few columns each
    in `dvc exp show`: the task metric and loss on test, the final seeds' mean and 95% interval, the
    baseline and the search's `SEARCH_COMPARED` figures. The search's whole accounting
    (`search_summary.accounting`: per round, pruning's savings, selection) goes to
    `results/accounting/<b>.json`; the metric's name, its direction, the run evaluated and each
    seed's scores to `results/evaluation/<b>.json`.
    """
    from pipeline import evaluation, search_summary  # noqa: PLC0415
    from pipeline.features import ProcessedData  # noqa: PLC0415
    from pipeline.models import TrainedModel, get_family  # noqa: PLC0415

    bench = params.benchmark(benchmark)
    data_identity.require_current(params, bench.dataset)
    data = ProcessedData.load(paths.processed_dir(bench.dataset))
    info = fileio.read_json(paths.model_info(benchmark))
    result = fileio.read_json(paths.search_result(benchmark))
    mlc = tracking.connect(params.tracking_uri())
    model = TrainedModel.load(paths.trained_model(benchmark))  # what is served
    seeds = TrainedModel.load(paths.seed_models(benchmark)) if paths.seed_models(benchmark).exists() else None
    baseline = get_family("majority").train({}, data.X_train, data.y_train, None, None, task=data.task,
                                            n_classes=data.n_classes, epochs=1)  # fmt: skip
    metric, direction = task_metric(data.task)
    trials = search_summary.trial_rows(benchmark, result)  # the search stage's table: no Optuna storage here
    out_dir = paths.plots_dir(benchmark)
    _recover(mlc, tracking.experiment_name(benchmark, bench.dataset, bench.model), "evaluate", out_dir)
    with fileio.staged_dir(out_dir) as tmp:
        report = evaluation.evaluate(model, baseline, data, tmp, class_names=_class_names(params, bench.dataset))
        search_summary.write_history(trials, result, tmp)
    search = search_summary.accounting(trials, direction)
    if result.get("selection"):  # robust selection's cost: a phase of its own, after the rounds
        search["selection"] = {k: result["selection"][k] for k in ("epochs", "wall_s")}
    numbers = {"test": {k: v for k, v in report["test"].items() if k in (metric, "loss")},
               "baseline": {metric: report["baseline"][metric]},
               "search": {k: search[k] for k in SEARCH_COMPARED if k in search}}  # fmt: skip
    meaning = {"benchmark": benchmark, "dataset": bench.dataset, "model": bench.model, "metric": metric,
               "direction": direction, "task": data.task, "run_id": info["run_id"], "n_test": report["n_test"],
               "serve": info.get("serve", "single")}  # fmt: skip
    scores = dict(report["test"])
    if seeds is not None:  # the seeds' spread: mean and 95% interval of the task metric, each seed, their average
        by_seed = evaluation.seed_scores(seeds, data)
        summary = by_seed["seeds"][metric]
        numbers["test_seeds"] = {k: summary[k] for k in ("mean", "ci_low", "ci_high")}
        numbers["test_ensemble"] = {metric: by_seed["ensemble"][metric]}
        numbers["test_single"] = {metric: by_seed["single"][metric]}
        meaning |= {"test_seeds": {k: summary[k] for k in ("mean", "std", "ci_low", "ci_high", "n")},
                    "per_seed": by_seed["per_seed"]}  # fmt: skip
        scores |= {f"seeds_mean_{metric}": summary["mean"], f"seeds_ci_low_{metric}": summary["ci_low"],
                   f"seeds_ci_high_{metric}": summary["ci_high"],
                   f"ensemble_{metric}": by_seed["ensemble"][metric]}  # fmt: skip
    if "weights" in report:  # L1-regularized models: their weight sparsity
        numbers["weights"] = report["weights"]
    evaluation.write_test_predictions(paths.test_predictions(benchmark), data.task, model.predict(data.X_test),
                                      data.y_test)  # fmt: skip
    test = tracking.metric_batch({f"test_{k}": v for k, v in scores.items()} | {"score": scores[metric]}, 0)
    if info.get("model_id"):  # the Models tab shows the test metrics with the model
        test += tracking.link_metrics(test, info["model_id"])
    mlc.log_batch(info["run_id"], metrics=test)
    tracking.log_figure_files(mlc, info["run_id"], sorted(p for p in out_dir.iterdir() if p.is_file()), "evaluation")
    mlc.log_artifact(info["run_id"], str(paths.test_predictions(benchmark)), "evaluation")  # for later promotions
    fileio.write_json_atomic(paths.evaluation_file(benchmark), meaning)
    fileio.write_json_atomic(paths.accounting_file(benchmark), search)
    fileio.write_json_atomic(paths.metrics_file(benchmark), numbers)
    return numbers | meaning


def registered_name(params: Params, benchmark: str) -> str:
    """The registry name of a benchmark's model, unique per benchmark: its experiment's name (`<dataset>-<model>`,
    `-<benchmark>` added when the benchmark is not named `<dataset>_<model>`)."""
    bench = params.benchmark(benchmark)
    return tracking.experiment_name(benchmark, bench.dataset, bench.model)


def _paired_test(mlc, held, benchmark: str, evaluated: dict) -> dict:
    """The paired bootstrap of the evaluated model's test predictions against the champion's (logged by its
    evaluation), or `{"test": None, "why": ...}` when they cannot be paired."""
    import tempfile  # noqa: PLC0415

    from pipeline import evaluation, stats  # noqa: PLC0415
    from pipeline.models.base import evaluate_predictions  # noqa: PLC0415

    mine = evaluation.read_test_predictions(paths.test_predictions(benchmark))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            where = mlc.download_artifacts(held.run_id, f"evaluation/{paths.test_predictions(benchmark).name}", tmp)
            theirs = evaluation.read_test_predictions(Path(where))
        except Exception:  # noqa: BLE001 - a champion evaluated before predictions were kept, or gone
            return {"test": None, "why": "the champion's run keeps no test predictions"}
    if theirs["y"].shape != mine["y"].shape or not (theirs["y"] == mine["y"]).all():
        return {"test": None, "why": "the champion was tested on other examples"}
    metric = evaluated["metric"]

    def score(y, pred) -> float:
        return evaluate_predictions(mine["task"], pred, y)[metric]

    return stats.paired_bootstrap(score, mine["y"], mine["pred"], theirs["pred"], evaluated["direction"])


def promote(params: Params, benchmark: str, *, force: bool = False, dry_run: bool = False) -> dict:
    """Register the evaluated model and move `champion` if it beats the current one: by at least
    `promote.min_improvement` and significantly (paired bootstrap on the same test examples, p < `promote.alpha`)."""
    from dataclasses import asdict  # noqa: PLC0415

    from pipeline import registry  # noqa: PLC0415

    evaluated = fileio.read_json(paths.evaluation_file(benchmark))
    metrics = fileio.read_json(paths.metrics_file(benchmark))
    info = fileio.read_json(paths.model_info(benchmark))
    if info.get("run_id") is None or info["run_id"] != evaluated.get("run_id"):
        raise MissingInputError(
            f"{paths.evaluation_file(benchmark)} evaluates another model than "
            f"{paths.model_dir(benchmark)}; rerun `tunebench evaluate --benchmark {benchmark}`"
        )
    bench = params.benchmark(benchmark)
    data_identity.require_current(params, bench.dataset)
    mlc = tracking.connect(params.tracking_uri())
    metric = evaluated["metric"]
    tags = {"dataset_manifest_hash": fileio.file_sha256(paths.processed_manifest(bench.dataset)),
            "params": info["hparams"], "study": info["source"]["study"], "trial": info["source"]["trial"],
            "git_commit": tracking.git_commit(), "benchmark": benchmark}  # fmt: skip
    if not dry_run:
        _recover(mlc, tracking.experiment_name(benchmark, bench.dataset, bench.model), "promote")
    name = registered_name(params, benchmark)
    held = registry.champion(mlc, name)
    owner = held.tags.get("benchmark") if held is not None else None
    if owner not in (None, benchmark) and not force:  # a store from before names were unique per benchmark
        raise TrackingError(f"registered model {name}: its champion, version {held.version}, was promoted by "
                            f"benchmark {owner} (which now registers as its own model); rerun with --force to make "
                            f"{benchmark}'s model the champion of {name}")  # fmt: skip
    test = _paired_test(mlc, held, benchmark, evaluated) if held is not None and held.run_id != info["run_id"] else None
    decision = registry.promote(
        mlc, name, model_uri=info["model_source"], run_id=info["run_id"],
        model_id=info.get("model_id"),
        metric=metric, direction=evaluated["direction"], value=float(metrics["test"][metric]), tags=tags,
        min_improvement=params.promote.min_improvement, force=force, dry_run=dry_run,
        test=test, alpha=params.promote.alpha,
    )  # fmt: skip
    out = asdict(decision) | {"dry_run": dry_run}
    done = f"; model {decision.model_name} v{decision.version} is {'champion' if decision.promote else 'challenger'}"
    print(f"{benchmark}: {'PROMOTE' if decision.promote else 'keep champion'} - {decision.reason}"
          + (" (dry run: nothing changed)" if dry_run else done), file=sys.stderr)  # fmt: skip
    if not dry_run:  # last (see `registry`): a rerun after a kill before here completes these
        tracking.set_tags(mlc, info["run_id"], {"promotion": decision.reason, "registered_version": decision.version})
        fileio.write_json_atomic(paths.promotion_file(benchmark), out)
    return out


def report(params: Params) -> Path:
    """Write the leaderboard across benchmarks, compared with the reference results."""
    from pipeline import report as report_mod  # noqa: PLC0415

    return report_mod.write_report(params)
