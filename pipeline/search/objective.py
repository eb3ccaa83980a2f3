"""The objective of one trial: train, report per-epoch validation metrics, prune, track.

With a validation split the per-epoch validation metric is the pruning
signal. With K folds (small data) the folds run one after the other in the
trial, the running mean of the folds' best scores is reported after each fold
(the fold number is the pruning step), and the per-epoch curves logged to
MLflow are the mean over folds, as in Chollet's Boston example (a pruned
K-fold trial logs the mean curves over the folds it finished and the mean of
their best scores, `fold_mean_val_<metric>`; every fold's best score is
`fold_best_val_<metric>` at step = fold number).

Epochs are numbered from 1 in MLflow (metric steps, tags `best_epoch`,
`pruned_at_epoch`, the learning-curve axis); Optuna's intermediate values keep
the pruner's own step (epoch index from 0, or fold index).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from pipeline import tracking
from pipeline.errors import TunebenchError
from pipeline.models.hparams import resolve_hparams
from pipeline.redaction import redact
from pipeline.search.execution.budget import COST_ATTR
from pipeline.search.spaces import suggest
from pipeline.tasks import task_metric

HPARAMS_ATTR = "hparams"  # a trial's user attr: the resolved hyperparameters it trained with


@dataclass
class TrialContext:
    """Everything a trial needs besides the Optuna trial itself."""

    family: Any  # a `ModelFamily`
    data: Any  # a `ProcessedData`
    space: dict  # name -> `ParamRange`
    fixed: dict  # the benchmark's fixed hyperparameters
    epochs: int
    seed: int
    mlc: Any
    experiment_id: str
    parent_run_id: str
    tags: dict = field(default_factory=dict)
    log_models: bool | str = True  # `tracking.log_models`: True, the models of trials that beat `best`; `all`, every
    best: float | None = None  # the best value this process completed in the round so far (`_beats_best`)
    reinvest_pruned: bool = False  # record a pruned trial's share of its epochs, its budget cost (`budget.COST_ATTR`)


def trial_hparams(trial: optuna.trial.FrozenTrial, model: str, task: str, fixed: dict) -> dict:
    """The hyperparameters `trial` trained with, as `run_trial` recorded them; a trial recorded without them (by
    an earlier version, its study resumed) has them resolved from its sampled values."""
    recorded = trial.user_attrs.get(HPARAMS_ATTR)
    return recorded if recorded is not None else resolve_hparams(model, task, fixed, trial.params)


def best_of(curve: list[float], direction: str) -> tuple[float, int]:
    """Best value of a per-epoch curve and its 1-based epoch."""
    arr = np.asarray(curve, dtype=float)
    idx = int(np.nanargmax(arr) if direction == "maximize" else np.nanargmin(arr))
    return float(arr[idx]), idx + 1


def mean_history(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """The per-epoch mean over folds' histories (each key, up to the shortest curve)."""
    n = min(len(v) for h in histories for v in h.values())
    return {k: [float(np.mean([h[k][i] for h in histories])) for i in range(n)] for k in histories[0]}


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> float:
    """Train one sampled configuration and return its best validation score.

    Raises:
        optuna.TrialPruned: the pruner stopped it, or the loss diverged; the reason is in the
            `pruned_reason` user attr (`diverged: ...` for a NaN/inf loss).
    """
    from pipeline.features import holdout_or_folds  # noqa: PLC0415
    from pipeline.models import DivergedError  # noqa: PLC0415

    metric, direction = task_metric(ctx.data.task)
    if ctx.log_models and ctx.family.name.startswith("keras_"):
        tracking.warm_up_model_logging()  # once per process: done while this trial trains
    hparams = resolve_hparams(ctx.family.name, ctx.data.task, ctx.fixed, suggest(trial, ctx.space))
    trial.set_user_attr(HPARAMS_ATTR, hparams)  # what robust selection and `train_best` train
    sampled = {k: hparams[k] for k in ctx.space if k in hparams}
    run = tracking.TrialRun(ctx.mlc, ctx.experiment_id, ctx.parent_run_id, trial, ctx.tags,
                            name=trial_run_name(trial.number, sampled),
                            model_name=_model_name(ctx.tags, trial.number))  # fmt: skip
    tracking.log_params(ctx.mlc, run.run_id, {**hparams, "epochs": ctx.epochs})
    splits = list(holdout_or_folds(ctx.data))
    kfold = len(splits) > 1
    if "dataset" in ctx.tags and "dataset_manifest_hash" in ctx.tags:
        run.log_dataset(ctx.tags["dataset"], ctx.tags["dataset_manifest_hash"],
                        f"train ({len(splits)}-fold)" if kfold else "train/validation")  # fmt: skip
    histories: list[dict[str, list[float]]] = []
    fold_scores: list[float] = []
    trained = None
    epochs_done = [0]  # over every fold: what a pruned trial cost

    def on_epoch(epoch: int, logs: dict) -> None:
        epochs_done[0] += 1
        if not kfold:
            run.log_epoch(epoch + 1, logs)
            value = logs[f"val_{metric}"]
            if not math.isfinite(value):
                raise DivergedError(f"val_{metric} is {value} at epoch {epoch + 1}")
            trial.report(value, epoch)
            if epoch < ctx.epochs - 1 and trial.should_prune():  # a finished trial is worth keeping
                trial.set_user_attr("pruned_at_epoch", epoch + 1)
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} of {ctx.epochs} with val_{metric}={value:.4g}")

    try:
        for fold, (x_tr, y_tr, x_va, y_va) in enumerate(splits):
            trained = ctx.family.train(
                hparams, x_tr, y_tr, x_va, y_va, task=ctx.data.task, n_classes=ctx.data.n_classes,
                epochs=ctx.epochs, seed=ctx.seed + fold, on_epoch=on_epoch,
            )  # fmt: skip
            histories.append(trained.history)
            if kfold:
                fold_scores.append(best_of(trained.history[f"val_{metric}"], direction)[0])
                run.log_epoch(fold + 1, {f"fold_best_val_{metric}": fold_scores[-1]})
                running = float(np.mean(fold_scores))
                trial.report(running, fold)
                if fold < len(splits) - 1 and trial.should_prune():
                    trial.set_user_attr("pruned_at_fold", fold + 1)
                    raise optuna.TrialPruned(
                        f"pruned after fold {fold + 1} of {len(splits)} with mean val_{metric}={running:.4g}"
                    )
    except optuna.TrialPruned as exc:
        trial.set_user_attr("pruned_reason", str(exc)[:2000])
        _record_cost(trial, ctx, epochs_done[0], len(splits))
        _finish_partial(run, trial, histories, kfold, "PRUNED", str(exc), metric, direction)
        raise
    except DivergedError as exc:
        trial.set_user_attr("pruned_reason", f"diverged: {exc}"[:2000])
        _record_cost(trial, ctx, epochs_done[0], len(splits))
        _finish_partial(run, trial, histories, kfold, "PRUNED", f"diverged: {exc}", metric, direction)
        raise optuna.TrialPruned(f"diverged: {exc}") from exc
    except TunebenchError:
        raise  # an outage that outlasted `search.retry_s`: nothing is recorded, the rerun retries the trial
    except Exception as exc:
        if (cut := tracking.outage_error(ctx.mlc, exc)) is not None:
            raise cut from None
        reason = redact(f"{type(exc).__name__}: {exc}")
        trial.set_user_attr("fail_reason", reason[:2000])
        _finish_partial(run, trial, histories, kfold, "FAIL", reason, metric, direction)
        raise

    history = mean_history(histories) if kfold else histories[0]
    if kfold:
        _log_mean_epochs(run, history)
    value, best_epoch = best_of(history[f"val_{metric}"], direction)
    trial.set_user_attr("best_epoch", best_epoch)
    run.finish(
        "COMPLETE",
        history=history,
        final={f"best_val_{metric}": value, "score": value, "best_epoch": best_epoch},  # `score`: every run's column
        tags={"best_epoch": best_epoch},
        model=None if kfold else trained,
        log_model=ctx.log_models == "all" or (ctx.log_models is True and _beats_best(ctx, value, direction)),
        input_example=None if kfold else splits[0][2][:1],
    )
    return value


def _beats_best(ctx: TrialContext, value: float, direction: str) -> bool:
    """Whether `value` beats every trial this process completed in the round so far (it becomes the best).

    Its model is then logged: the round's best trial always has its model, at a fraction of the cost of
    logging every trial's (0.3-0.7 s each, `benchmarks/wall_ratio.py`).
    """
    if ctx.best is not None and not (value > ctx.best if direction == "maximize" else value < ctx.best):
        return False
    ctx.best = value
    return True


def _record_cost(trial: optuna.Trial, ctx: TrialContext, epochs_done: int, folds: int) -> None:
    """With `reinvest_pruned`, record what a pruned trial cost: the share of its epochs (over every fold) it trained."""
    if ctx.reinvest_pruned:
        trial.set_user_attr(COST_ATTR, epochs_done / (ctx.epochs * folds))


def trial_run_name(number: int, params: dict) -> str:
    """A trial run's name: its number and the sampled values in the order of the space, short
    (`t07 lr=3e-3 l2=1e-5 dropout=0.25`)."""
    return " ".join([f"t{number:02d}", *(f"{k}={_short(v)}" for k, v in params.items())])


def _model_name(tags: dict, number: int) -> str:
    """A trial's logged model: `coarse-r1-t07` (round name and number from the round's tags)."""
    prefix = f"{tags['round_name']}-r{tags['round']}" if "round_name" in tags and "round" in tags else "trial"
    return re.sub(r"[/:.%\"' ]", "_", f"{prefix}-t{number:02d}")  # characters MLflow refuses in a model name


def _short(v) -> str:
    """2 significant digits; `3e-3` rather than `0.003` or `3.0e-03`."""
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)
    if v != 0 and not 1e-2 <= abs(v) < 1e4:
        mantissa, _, exp = f"{v:.1e}".partition("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    return f"{v:.2g}"


def _log_mean_epochs(run, history: dict[str, list[float]]) -> None:
    for epoch in range(min((len(v) for v in history.values()), default=0)):
        run.log_epoch(epoch + 1, {k: v[epoch] for k, v in history.items()})


def _finish_partial(run, trial, histories, kfold, state, reason, metric, direction) -> None:
    """End the run of a pruned or failed trial; a K-fold one logs the mean over the folds it finished."""
    tags = {"reason": reason[:5000]}
    for key in ("pruned_at_epoch", "pruned_at_fold"):
        if key in trial.user_attrs:
            tags[key] = trial.user_attrs[key]
    history = mean_history(histories) if kfold and histories else None
    final = None
    if history:
        _log_mean_epochs(run, history)
        scores = [best_of(h[f"val_{metric}"], direction)[0] for h in histories]
        final = {f"fold_mean_val_{metric}": float(np.mean(scores)), "folds_done": len(histories)}
    run.finish(state, history=history, final=final, tags=tags)
