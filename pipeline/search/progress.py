"""The live line of a round: trials counted against the budget, pruned, failed, best so far."""

from __future__ import annotations

import sys

import optuna

from pipeline.search.budget import budget_used


class ProgressBar:
    """A live line for the round: trials counted against the budget, pruned, failed, best so far."""

    def __init__(self, study: optuna.Study, budget: int):
        import threading  # noqa: PLC0415

        from tqdm import tqdm  # noqa: PLC0415

        # one bar a round: a thread lock will do. tqdm's default also makes a multiprocessing lock, which a
        # SIGKILLed worker leaves behind ("resource_tracker: ... leaked semaphore objects" at the end)
        tqdm.set_lock(threading.RLock())

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
