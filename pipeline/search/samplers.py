"""Samplers and pruners: what draws a trial's hyperparameters and what stops a poor trial early.

A new sampler or pruner is one branch of `make_sampler` or `make_pruner` here, plus its name
in `pipeline.config.SAMPLERS` / `PRUNERS` (what `params.yaml` may name).
"""

from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Mapping, Sequence

import optuna

from pipeline import compat
from pipeline.config import ParamRange, RoundConfig
from pipeline.errors import ConfigError
from pipeline.search.spaces import distributions
from pipeline.search.execution.stale_trials import REDRAW_ATTR, is_enqueued


def grid_points(space: Mapping[str, ParamRange], points: int = 4) -> dict[str, list]:
    """A grid over `space`: `points` values per numeric range (log-spaced for log ranges)."""
    import numpy as np  # noqa: PLC0415

    grid = {}
    for name, r in space.items():
        if not r.is_numeric:
            grid[name] = list(r.choices)
            continue
        vals = np.geomspace(r.low, r.high, points) if r.log else np.linspace(r.low, r.high, points)
        grid[name] = sorted({int(round(v)) for v in vals}) if r.int else [float(v) for v in vals]
    return grid


def make_sampler(name: str, seed: int, space: Mapping[str, ParamRange] | None = None, salt: str = "",
                 warm: Sequence[optuna.trial.FrozenTrial] = ()) -> optuna.samplers.BaseSampler:  # fmt: skip
    """A seeded sampler: tpe, random, grid (4 points a range), cmaes or gp; a tpe sampler given `warm` trials
    (an earlier round's) learns from them too (`WarmStarted`).

    Its random state is reseeded before every trial from `seed`, `salt` (the search passes the
    benchmark's name) and the trial's draw index (`per_trial_seed`), so what a trial draws does
    not depend on which process asks: parallel workers, launchers on other machines and resumed or
    recycled processes never replay one another's draws, a rerun of the same study draws the same,
    and benchmarks with identical spaces draw different configurations.
    """
    s = optuna.samplers
    if name == "tpe":
        sampler = s.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
    elif name == "random":
        sampler = s.RandomSampler(seed=seed)
    elif name == "cmaes":
        sampler = s.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    elif name == "gp":
        if importlib.util.find_spec("torch") is None:
            raise ConfigError(
                "sampler `gp` (search.sampler or a round's sampler) needs PyTorch, which Optuna's GPSampler uses "
                "and tunebench does not install: `pip install torch`, or choose tpe, random, grid or cmaes"
            )
        sampler = s.GPSampler(seed=seed)
    elif name == "grid":
        sampler = s.GridSampler(grid_points(space or {}), seed=seed)
    else:
        raise ValueError(f"unknown sampler {name!r}")
    if warm and name == "tpe":
        sampler = WarmStarted(sampler, space or {}, warm)
    return per_trial_seed(sampler, seed, salt)


class WarmStarted(optuna.samplers.BaseSampler):
    """A sampler that sees an earlier round's trials (`warm`) besides its own study's (a round's `warm_start`).

    The inner sampler reads a study of both: the earlier trials whose parameters lie in this round's
    `space`, then this round's, as trials of this round's distributions. Rounds train for different
    epochs, so a completed trial's value is its rank within its own round, scaled to (0, 1] (the order
    `direction` reads is kept); pruned trials keep their intermediate values. TPE weighs the older
    (earlier-round) trials down once there are more than 25. The inner sampler draws for a running
    stand-in of the trial in that study (TPE's constant liar writes its draw there).
    """

    def __init__(self, inner: optuna.samplers.BaseSampler, space: Mapping[str, ParamRange],
                 warm: Sequence[optuna.trial.FrozenTrial]) -> None:  # fmt: skip
        self._inner = inner
        self._distributions = distributions(space)
        self._warm = _as_ranks(warm, self._distributions)
        self._view: tuple[int, optuna.Study, optuna.trial.FrozenTrial] | None = None

    def _study(self, study: optuna.Study, trial: optuna.trial.FrozenTrial):
        """The study the inner sampler reads and the trial's stand-in there: built once a trial (nothing
        finishes while it draws)."""
        if self._view is None or self._view[0] != trial.number:
            view = optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=study.directions,
                                       sampler=optuna.samplers.RandomSampler())  # fmt: skip
            view.add_trials(self._warm + _as_ranks(study.get_trials(deepcopy=False), self._distributions))
            view.ask()
            self._view = (trial.number, view, view.get_trials(deepcopy=False)[-1])
        return self._view[1:]

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(*self._study(study, trial))

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(*self._study(study, trial), search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(*self._study(study, trial), param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)


def _as_ranks(trials: Sequence[optuna.trial.FrozenTrial], dists: Mapping) -> list[optuna.trial.FrozenTrial]:
    """The completed and pruned `trials` whose parameters lie in `dists`, as new trials of those distributions;
    a completed trial's value is its rank among the completed ones, scaled to (0, 1]."""
    TS = optuna.trial.TrialState

    def inside(t) -> bool:
        return all(n in t.params and d._contains(d.to_internal_repr(t.params[n])) for n, d in dists.items())

    kept = [t for t in sorted(trials, key=lambda t: t.number) if t.state in (TS.COMPLETE, TS.PRUNED) and inside(t)]
    done = sorted((t for t in kept if t.state == TS.COMPLETE), key=lambda t: (t.value, t.number))
    rank = {t.number: (i + 1) / len(done) for i, t in enumerate(done)}
    return [
        optuna.trial.create_trial(
            state=t.state, value=rank.get(t.number), params={n: t.params[n] for n in dists}, distributions=dict(dists),
            intermediate_values=dict(t.intermediate_values) if t.state == TS.PRUNED else None,
        )
        for t in kept
    ]  # fmt: skip


def per_trial_seed(sampler: optuna.samplers.BaseSampler, seed: int, salt: str = "") -> optuna.samplers.BaseSampler:
    """Make `sampler` reseed its random states from `(seed, draw index, salt)` before each trial.

    The draw index of a trial is how many trials numbered below it drew their own parameters:
    enqueued ones (an earlier round's best, the retry of an interrupted trial) do not count, so a
    run cut off mid-trial and resumed draws the same configurations as an uninterrupted one. It is
    fixed when the trial is created (enqueued trials get their numbers when enqueued) and unique
    among the trials that draw. A trial interrupted before or while it drew is followed by one that
    makes its whole draw again (user attr `redraw_of`, see `execution.stale_trials.InterruptedTrial`).

    Returns:
        The same sampler.
    """
    import numpy as np  # noqa: PLC0415

    states = compat.sampler_random_states(sampler)

    def reseed(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # a redraw draws with the index of the trial it replaces; a retry (its parameters fixed) with its original's
        number = trial.user_attrs.get(REDRAW_ATTR, trial.system_attrs.get("failed_trial", trial.number))
        index = sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and not is_enqueued(t))
        entropy = [seed & 0xFFFFFFFF, index, *([zlib.crc32(salt.encode())] if salt else [])]
        base = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        for i, state in enumerate(states):
            state.seed((base + i) & 0xFFFFFFFF)

    return compat.before_each_trial(sampler, reseed)


def make_pruner(rnd: RoundConfig, steps: int | None = None) -> optuna.pruners.BasePruner:
    """The round's pruner.

    Args:
        `rnd`: the round (its `pruner` and `epochs`).
        `steps`: pruning steps of one trial: the epochs (default), or the folds of a K-fold objective.
    """
    p = optuna.pruners
    steps = steps or rnd.epochs
    warmup = max(1, steps // 4)
    if rnd.pruner == "median":
        return p.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup)
    if rnd.pruner == "percentile":
        return p.PercentilePruner(33.0, n_startup_trials=2, n_warmup_steps=warmup)
    if rnd.pruner == "successive_halving":
        return p.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if rnd.pruner == "hyperband":
        return p.HyperbandPruner(min_resource=1, max_resource=steps, reduction_factor=3)
    return p.NopPruner()
