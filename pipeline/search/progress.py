"""The live line of a round: the budget used (in full trials), pruned, failed, best so far."""

from __future__ import annotations

import sys

import optuna

from pipeline.search.budget import budget_used


class ProgressBar:
    """A live line for the round: the budget used in full trials (a pruned trial of a round with
    `reinvest_pruned` counts the share of its epochs it trained), pruned, failed, best so far."""

    def __init__(self, study: optuna.Study, budget: int):
        import threading  # noqa: PLC0415

        from tqdm import tqdm  # noqa: PLC0415

        # one bar a round: a thread lock will do. tqdm's default also makes a multiprocessing lock, which a
        # SIGKILLed worker leaves behind ("resource_tracker: ... leaked semaphore objects" at the end)
        tqdm.set_lock(threading.RLock())

        self.budget = budget
        self.bar = tqdm(total=budget, initial=self._used(study), desc=study.study_name, unit="trial",
                        file=sys.stderr, leave=True)  # fmt: skip

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        try:
            best = f"{study.best_value:.4g}"
        except ValueError:
            best = "-"
        self.bar.n = self._used(study)  # every worker's trials, not only this process's
        self.bar.set_postfix(
            complete=states.count(optuna.trial.TrialState.COMPLETE),
            pruned=states.count(optuna.trial.TrialState.PRUNED),
            failed=states.count(optuna.trial.TrialState.FAIL), best=best,
        )  # fmt: skip

    def _used(self, study: optuna.Study) -> float:
        """The budget used, at most the budget (the last trial starts while any of it is left and may train
        all its epochs)."""
        return min(self.budget, round(budget_used(study), 2))

    def close(self, study: optuna.Study) -> None:
        """End the line; erased when the budget is not used up yet (pruned trials gave epochs back, and
        the next batch of trials continues on a fresh line), kept once it is."""
        self.bar.leave = budget_used(study) >= self.budget
        self.bar.close()
