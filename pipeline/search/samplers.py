"""Samplers and pruners: what draws a trial's hyperparameters and what stops a poor trial early.

A new sampler or pruner is one branch of `make_sampler` or `make_pruner` here, plus its name
in `pipeline.config.SAMPLERS` / `PRUNERS` (what `params.yaml` may name).
"""

from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Mapping

import optuna

from pipeline import compat
from pipeline.config import ParamRange, RoundConfig
from pipeline.errors import ConfigError
from pipeline.search.storage import REDRAW_ATTR, is_enqueued


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


def make_sampler(name: str, seed: int, space: Mapping[str, ParamRange] | None = None,
                 salt: str = "") -> optuna.samplers.BaseSampler:  # fmt: skip
    """A seeded sampler: tpe, random, grid (4 points a range), cmaes or gp.

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
    return per_trial_seed(sampler, seed, salt)


def per_trial_seed(sampler: optuna.samplers.BaseSampler, seed: int, salt: str = "") -> optuna.samplers.BaseSampler:
    """Make `sampler` reseed its random states from `(seed, draw index, salt)` before each trial.

    The draw index of a trial is how many trials numbered below it drew their own parameters:
    enqueued ones (an earlier round's best, the retry of an interrupted trial) do not count, so a
    run cut off mid-trial and resumed draws the same configurations as an uninterrupted one. It is
    fixed when the trial is created (enqueued trials get their numbers when enqueued) and unique
    among the trials that draw. A trial interrupted before or while it drew is followed by one that
    makes its whole draw again (user attr `redraw_of`, see `storage.InterruptedTrial`).

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
