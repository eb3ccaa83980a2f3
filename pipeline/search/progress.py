"""The live line of a round: `benchmark · round`, the trials it ran, the budget used, the best so far."""

from __future__ import annotations

import sys

import optuna

from pipeline.search.execution.budget import counts_in_budget, trial_cost

SEP = " · "  # between the benchmark and the round in a bar's name


class ProgressBar:
    """A live line for the round, e.g. `digits_numpy_mlp · fine  57%|###   | 5 trials (3 pruned, 0 failed),
    budget 2.3/4, best 0.9528 [00:12<00:09]`.

    Trials are counted whole, and only those that count against the budget (not surplus, discarded or
    crashed ones). The bar and the budget count full trials: a pruned trial of a round with
    `reinvest_pruned` costs the share of its epochs it trained, so 5 trials may use 2.3 of 4.
    """

    def __init__(self, study: optuna.Study, budget: int, name: str):
        import threading  # noqa: PLC0415

        from tqdm import tqdm  # noqa: PLC0415

        # one bar a round: a thread lock will do. tqdm's default also makes a multiprocessing lock, which a
        # SIGKILLed worker leaves behind ("resource_tracker: ... leaked semaphore objects" at the end)
        tqdm.set_lock(threading.RLock())

        self.budget = budget
        used, bar_format = self._state(study)
        self.bar = tqdm(total=budget, initial=used, desc=name, bar_format=bar_format, file=sys.stderr, leave=True)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.update(study)

    def update(self, study: optuna.Study) -> None:
        """Redraw from the study: every worker's trials, not only this process's."""
        self.bar.n, self.bar.bar_format = self._state(study)
        self.bar.refresh()

    def _state(self, study: optuna.Study) -> tuple[float, str]:
        """The budget used (in full trials, at most the budget) and the line's format."""
        attrs = study.user_attrs
        counted = [t for t in study.get_trials(deepcopy=False) if counts_in_budget(attrs, t)]
        states = [t.state for t in counted]
        self.used = round(sum(map(trial_cost, counted)), 6)  # as `budget.budget_used`
        used = min(self.budget, round(self.used, 1))
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "-"
        text = (f"{len(counted)} trial{'s' * (len(counted) != 1)} ({states.count(optuna.trial.TrialState.PRUNED)} "
                f"pruned, {states.count(optuna.trial.TrialState.FAIL)} failed), budget {used:g}/{self.budget}, "
                f"best {best}")  # fmt: skip
        return used, f"{{desc}} {{percentage:3.0f}}%|{{bar:12}}| {text} [{{elapsed}}<{{remaining}}]"

    def close(self, study: optuna.Study) -> None:
        """End the line; erased when the budget is not used up yet (pruned trials gave epochs back, and
        the next batch of trials continues on a fresh line), kept once it is."""
        self.update(study)
        self.bar.leave = self.used >= self.budget
        self.bar.close()
