"""A round's trial budget, shared by every process working on its study.

The budget counts finished trials (COMPLETE, PRUNED, FAIL) except those cut off by a crash
(`interrupted`, see `stale_trials`), whose configurations are retried instead, each at its cost
(`trial_cost`): a full trial 1, a pruned one of a round with `reinvest_pruned` the share of its
epochs it trained, so the epochs pruning saves buy more configurations. It is shared by
every process working on the study, local workers and launchers on other machines alike:
each stops once finished plus running trials reach it (`claimed`, `worker.optimize`), and
trial numbers settle a tie (a trial asked after the budget is claimed is `surplus`, see
`worker.optimize`). A round that ended without a completed trial has its trials
`discarded`, so a rerun retries the whole budget. Raising `n_trials` extends a round's study;
lowering it keeps the study, and the round's outcome is read from the trials a run with the
lower budget would have asked (`budget_view`), so it equals a fresh run's.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter

import optuna

from pipeline.search.execution.stale_trials import is_interrupted

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
DISCARDED_PREFIX = "discarded."  # study user attr `discarded.<number>`: a failed attempt's trial, budget freed
SURPLUS_ATTR = "surplus"  # trial user attr: asked after the budget was claimed elsewhere; stopped at once
COST_ATTR = "budget_cost"  # trial user attr: a pruned trial's share of a full trial's epochs (`reinvest_pruned`)
MIN_COST = 0.1  # the least a trial costs: a round runs at most 10 x `n_trials` trials
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def one_line(text: str, limit: int = 500) -> str:
    """`text` on one line (whitespace runs collapsed), cut at `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _ended(attrs: dict, t: optuna.trial.FrozenTrial) -> bool:
    """Whether `t` finished and ran (not surplus, not discarded); `attrs`: the study's user attrs."""
    return t.state in FINISHED and SURPLUS_ATTR not in t.user_attrs and f"{DISCARDED_PREFIX}{t.number}" not in attrs


def counts_in_budget(attrs: dict, t: optuna.trial.FrozenTrial) -> bool:
    """Whether trial `t` counts against the budget (`attrs`: the study's user attrs)."""
    return _ended(attrs, t) and not is_interrupted(attrs, t)


def trial_cost(t: optuna.trial.FrozenTrial) -> float:
    """What trial `t` costs in full trials: 1, or for a pruned trial of a round with `reinvest_pruned`
    the share of the round's epochs (times folds) it trained (`COST_ATTR`), at least `MIN_COST`.
    A running trial may train every epoch: it holds 1."""
    if t.state != optuna.trial.TrialState.PRUNED or COST_ATTR not in t.user_attrs:
        return 1.0
    return min(1.0, max(MIN_COST, float(t.user_attrs[COST_ATTR])))


def _claims(attrs: dict, t: optuna.trial.FrozenTrial) -> bool:
    """Whether `t` counts against the budget or will once finished (it runs now)."""
    running = t.state == optuna.trial.TrialState.RUNNING and SURPLUS_ATTR not in t.user_attrs
    return counts_in_budget(attrs, t) or running


def claimed(study: optuna.Study, before: int | None = None) -> float:
    """The cost of the trials counted against the budget plus the trials running now (1 each);
    only numbers below `before` if given."""
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    return _total(trial_cost(t) for t in trials if (before is None or t.number < before) and _claims(attrs, t))


def budget_used(study: optuna.Study) -> float:
    """The cost of the trials that count against the budget: finished ones, less those cut off by a
    crash and surplus ones; their number when no pruned trial was reinvested."""
    attrs = study.user_attrs
    return _total(trial_cost(t) for t in study.get_trials(deepcopy=False) if counts_in_budget(attrs, t))


def _total(costs) -> float:
    """A sum of costs, rounded so that float error never starts or stops a trial (0.1 x 10 is 1)."""
    return round(sum(costs), 6)


def discard_failed_attempt(study: optuna.Study) -> int:
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
    stale = [t for t in trials if counts_in_budget(attrs, t)]
    for t in stale:
        study.set_user_attr(f"{DISCARDED_PREFIX}{t.number}", "the round had no completed trial; retried on rerun")
    return len(stale)


def no_completed_trial(study: optuna.Study) -> str | None:
    """None when `study` has a completed trial; else how its trials ended and their most common reason.

    E.g. `6 of 6 trials failed; most common reason (6 trials): ValueError: unknown optimizer 'adamm'`.
    Surplus trials (stopped before sampling) do not count.
    """
    attrs = study.user_attrs
    trials = [t for t in study.get_trials(deepcopy=False) if _ended(attrs, t)]
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
    ((kind, n),) = Counter(_NUMBER.sub("#", r) for r in reasons).most_common(1)  # alike but for the numbers
    why = next(r for r in reasons if _NUMBER.sub("#", r) == kind)
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in trials)
    pruned = len(trials) - failed
    ended = " and ".join(x for x in (f"{failed} failed" if failed else "", f"{pruned} pruned" if pruned else "") if x)
    return f"{len(trials)} trial(s) ended, {ended}; most common reason ({n} of {len(trials)}): {why}"


def within_budget(study: optuna.Study, budget: float) -> list[optuna.trial.FrozenTrial]:
    """The trials of `study` asked before `budget` was used, in number order: all of them, unless the
    study ran with a larger budget before (then the first ones, as a fresh run of `budget` asks them)."""
    attrs, used, out = study.user_attrs, 0.0, []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if used >= budget:
            break
        out.append(t)
        if counts_in_budget(attrs, t):
            used = _total((used, trial_cost(t)))
    return out


def budget_view(study: optuna.Study, budget: float | None) -> optuna.Study:
    """`study`, or, when it holds trials beyond `budget` (a lowered `n_trials`), an in-memory copy of the
    trials within it (`within_budget`), its user attrs and metric names: what the round's best, summary,
    plots, accounting and the next round's narrowing read. None, or a round still running: `study`."""
    if budget is None:
        return study
    trials = study.get_trials(deepcopy=False)
    kept = within_budget(study, budget)
    if len(kept) == len(trials) or any(t.state == optuna.trial.TrialState.RUNNING for t in trials):
        return study
    view = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name=study.study_name,
                               directions=study.directions)  # fmt: skip
    for key, value in study.user_attrs.items():
        view.set_user_attr(key, value)
    with warnings.catch_warnings():  # metric names: experimental since Optuna 3.2, still in 5.1
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names:
            view.set_metric_names(study.metric_names)
    view.add_trials(kept)
    return view
