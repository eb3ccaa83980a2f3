"""tunebench's rounds on a replay, in memory: for screening schedule variants, not for the results.

`run_search` on a replay costs 20-100 s a search on this machine (journal storage, MLflow
tracking of every trial), so a variant's 120 searches take hours. This runs the same schedule
with tunebench's own pieces and no storage or tracking: the round's sampler
(`samplers.make_sampler`, seeds and salt as `run_round` passes them, `warm_start` included), its
pruner (`make_pruner`), narrowing (`spaces.narrow`), what a round runs first (`round_setup.enqueue_first`), the
budget's accounting (`budget.claimed`, pruned epochs reinvested) and the trial's reporting and
pruning as `objective.run_trial` does them: it draws, prunes and reports what `run_search` does
(tests/benchmarks/test_replay.py checks it), in about 1% of the time. Variants that win here are
then confirmed by `bench.py` without `--fast`.

    python -m benchmarks.replay.bench --fast --methods tunebench tunebench_warm --runs <screen.jsonl>
"""

from __future__ import annotations

import numpy as np
import optuna

from benchmarks.replay import methods as m
from pipeline.config import ParamRange, RoundConfig
from pipeline.config.benchmarks import SelectionConfig
from pipeline.search.execution.budget import COST_ATTR, claimed
from pipeline.search.round_setup import enqueue_first
from pipeline.search.selection import SEED_STRIDE, candidates
from pipeline.search.samplers import make_pruner, make_sampler
from pipeline.search.spaces import narrow, suggest


def run_rounds(problem: m.ReplayProblem, budget: int, seed: int, rounds: list[dict], key: str,
               sampler: str = "tpe", selection: dict | None = None) -> m.Trace:  # fmt: skip
    """`m.run_tunebench`'s search without storage or tracking: the trace of benchmark `key`, search seed `seed`;
    robust selection after the last round where `selection` asks (`selection.run_selection`'s seeds)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction, folds, trace = problem.direction, problem.folds, m.Trace()
    space = full = {n: ParamRange(**r) for n, r in problem.space.items()}
    prev = None
    for k, spec in enumerate(rounds):
        keep = spec.get("keep", [])  # a screen-only choice: dimensions the narrowing leaves as they were
        rnd = RoundConfig(**{n: v for n, v in spec.items() if n != "keep"})
        if prev is not None:
            narrowed, _ = narrow(space, prev.get_trials(deepcopy=False), direction, top_quantile=rnd.top_quantile,
                                 pad=rnd.pad, widen_at_edge=rnd.widen_at_edge)  # fmt: skip
            space = {n: space[n] if n in keep else r for n, r in narrowed.items()}
        warm = tuple(prev.get_trials(deepcopy=False)) if prev is not None and rnd.warm_start else ()
        study = optuna.create_study(
            direction=direction, sampler=make_sampler(rnd.sampler or sampler, seed + 1000 * k, space, key, warm),
            pruner=make_pruner(rnd, steps=folds if folds > 1 else rnd.epochs),
        )  # fmt: skip
        enqueue_first(study, prev, rnd, space, full, direction, budget=rnd.n_trials, seed=seed + 1000 * k, salt=key)
        while claimed(study) < rnd.n_trials:
            trial = study.ask()
            try:
                study.tell(trial, _trial(problem, trial, space, rnd, seed * folds))
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        for t in study.get_trials(deepcopy=False):
            trace.epochs += round(m._trial_epochs(t, rnd.epochs, folds))
            done = t.state == optuna.trial.TrialState.COMPLETE
            trace.trial_done(t.value if done else None, t.params if done else None)
        prev = study
    trace.best_value, trace.best_params = prev.best_value, prev.best_params
    sel = SelectionConfig(**selection) if selection is not None else None
    found = candidates(prev, direction, sel.top_k) if sel is not None and sel.repeats else []
    if found:
        means = []
        for t in found:
            scores = [_score(problem, t.params, rnd.epochs, seed * folds + SEED_STRIDE * (r + 1))
                      for r in range(sel.repeats)]  # fmt: skip
            means.append(float(np.mean(scores)))
            trace.epochs += sel.repeats * rnd.epochs * folds
        pick = int(np.argmax(means) if direction == "maximize" else np.argmin(means))
        trace.trial_done(None)
        trace.best_value, trace.best_params = means[pick], found[pick].params
    return trace


def _score(problem: m.ReplayProblem, config: dict, epochs: int, seed: int) -> float:
    """A selection repeat as `selection.score_repeat` trains it: every fold, the best epoch of the mean curve."""
    index = problem.curves.index(config)
    curves = [problem.curves.run(index, seed + fold)[0][:epochs].astype(float) for fold in range(problem.folds)]
    return problem.best(np.mean(curves, axis=0))


def _trial(problem: m.ReplayProblem, trial: optuna.Trial, space: dict, rnd: RoundConfig, seed: int) -> float:
    """One trial as `objective.run_trial` runs a replay: report, prune (not at the last step), record the cost;
    its value is the best epoch of the mean curve over folds."""
    config, folds, done, scores, curves = suggest(trial, space), problem.folds, 0, [], []
    try:
        for fold in range(folds):
            curve = problem.curves.run(problem.curves.index(config), seed + fold)[0][: rnd.epochs]
            curves.append(curve.astype(float))
            for epoch, value in enumerate(curve):
                if not np.isfinite(value):
                    raise optuna.TrialPruned("diverged")
                done += 1
                if folds == 1:
                    trial.report(float(value), epoch)
                    if epoch < rnd.epochs - 1 and trial.should_prune():
                        raise optuna.TrialPruned()
            scores.append(problem.best(curve))
            if folds > 1:
                trial.report(float(np.mean(scores)), fold)
                if fold < folds - 1 and trial.should_prune():
                    raise optuna.TrialPruned()
    except optuna.TrialPruned:
        if rnd.reinvest_pruned:
            trial.set_user_attr(COST_ATTR, done / (rnd.epochs * folds))
        raise
    return problem.best(np.mean(curves, axis=0))
