"""Opening Optuna storages, samplers and pruners.

The default storage is a journal file per benchmark (safe for several local
worker processes); any SQLAlchemy URL (PostgreSQL for many machines) or a
`journal:` path can be given instead.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from pipeline import paths
from pipeline.config import RoundConfig


def open_storage(url: str | None, benchmark: str) -> optuna.storages.BaseStorage:
    """Open the storage at `url`, or the benchmark's default journal file when `url` is None.

    Args:
        `url`: None, `journal:<path>`, or an SQLAlchemy URL (`sqlite:///...`, `postgresql://...`).
        `benchmark`: names the default journal file.
    """
    from optuna.storages import JournalStorage, RDBStorage  # noqa: PLC0415
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock  # noqa: PLC0415

    if url is None or url.startswith("journal:"):
        path = Path(url.removeprefix("journal:")) if url else paths.journal_file(benchmark)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    return RDBStorage(url, heartbeat_interval=30, grace_period=120, engine_kwargs={"pool_pre_ping": True})


def grid_points(space, points: int = 4) -> dict[str, list]:
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


def make_sampler(name: str, seed: int, space=None) -> optuna.samplers.BaseSampler:
    """A seeded sampler: tpe, random, grid (4 points a range), cmaes or gp."""
    s = optuna.samplers
    if name == "tpe":
        return s.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)
    if name == "random":
        return s.RandomSampler(seed=seed)
    if name == "cmaes":
        return s.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return s.GPSampler(seed=seed)
    if name == "grid":
        return s.GridSampler(grid_points(space or {}), seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def make_pruner(rnd: RoundConfig) -> optuna.pruners.BasePruner:
    """The round's pruner; epochs are the pruning steps."""
    p = optuna.pruners
    warmup = max(1, rnd.epochs // 4)
    if rnd.pruner == "median":
        return p.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup)
    if rnd.pruner == "percentile":
        return p.PercentilePruner(33.0, n_startup_trials=2, n_warmup_steps=warmup)
    if rnd.pruner == "successive_halving":
        return p.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if rnd.pruner == "hyperband":
        return p.HyperbandPruner(min_resource=1, max_resource=rnd.epochs, reduction_factor=3)
    return p.NopPruner()
