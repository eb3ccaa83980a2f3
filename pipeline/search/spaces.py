"""Search spaces: sampling a trial's hyperparameters and narrowing ranges between rounds.

A space maps a hyperparameter name to a `ParamRange`, from `params.yaml` to
`suggest` (`space_to_dict` / `space_from_dict` only where it is stored). Narrowing works in the
space the range is sampled in (log10 for log ranges): the next round covers
the values of the best trials of this round, padded by a fraction of the
original width, clipped to the original range. A log range whose best trial
sits at an edge of the original range is widened on that side instead (the
range was probably wrong there), and the note says so.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Mapping
from typing import Any

import optuna

from pipeline.config import ParamRange
from pipeline.models import hparams

EDGE_FRACTION = 0.02


def suggest(trial: optuna.Trial, space: Mapping[str, ParamRange]) -> dict[str, Any]:
    """Sample every dimension of `space` for `trial`.

    Returns:
        A plain dict of hyperparameters, ready for `ModelFamily.train`.
    """
    params: dict[str, Any] = {}
    with warnings.catch_warnings():  # an enqueued `explore` trial lies outside the narrowed ranges on purpose
        warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range", category=UserWarning)
        for name, r in space.items():
            if not r.is_numeric:
                params[name] = trial.suggest_categorical(name, r.choices)
            elif r.int:
                params[name] = trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
            else:
                params[name] = trial.suggest_float(name, r.low, r.high, log=r.log)
    return params


def distributions(space: Mapping[str, ParamRange]) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distributions `suggest` draws `space` from."""
    d = optuna.distributions
    return {
        name: d.CategoricalDistribution(r.choices) if not r.is_numeric
        else d.IntDistribution(int(r.low), int(r.high), log=r.log) if r.int
        else d.FloatDistribution(r.low, r.high, log=r.log)
        for name, r in space.items()
    }  # fmt: skip


def random_points(space: Mapping[str, ParamRange], n: int, seed: int, salt: str = "") -> list[dict[str, Any]]:
    """`n` configurations drawn uniformly from `space` (log ranges in log space); the same seed and salt, the same."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(salt.encode())])
    points = []
    for _ in range(n):
        point: dict[str, Any] = {}
        for name, r in space.items():
            if not r.is_numeric:
                point[name] = r.choices[int(rng.integers(len(r.choices)))]
                continue
            x = _inv(rng.uniform(_fwd(r.low, r.log), _fwd(r.high, r.log)), r.log)
            point[name] = min(max(int(round(x)), int(r.low)), int(r.high)) if r.int else min(max(x, r.low), r.high)
        points.append(point)
    return points


def _fwd(x: float, log: bool) -> float:
    return math.log10(x) if log else x


def _inv(x: float, log: bool) -> float:
    return 10.0**x if log else x


def top_trials(trials: list[optuna.trial.FrozenTrial], direction: str, quantile: float):
    """The best `quantile` of completed trials (at least one, at least two when there are two)."""
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    done.sort(key=lambda t: t.value, reverse=(direction == "maximize"))
    k = min(len(done), max(2, math.ceil(quantile * len(done))))
    return done[:k]


def narrow(
    space: Mapping[str, ParamRange],
    trials: list[optuna.trial.FrozenTrial],
    direction: str,
    *,
    top_quantile: float = 0.25,
    pad: float = 0.1,
    widen_at_edge: bool = True,
) -> tuple[dict[str, ParamRange], list[str]]:
    """Narrow every range of `space` to the region of the best trials.

    Args:
        `space`: the ranges the trials were sampled from.
        `trials`: the finished trials of that round.
        `direction`: `maximize` or `minimize`.
        `top_quantile`: fraction of completed trials that defines the region.
        `pad`: padding on each side, as a fraction of the original width.
        `widen_at_edge`: widen a log range past its edge when the best trial sits on it.

    Returns:
        The new space and human-readable notes (one per changed or kept dimension).
    """
    best = top_trials(trials, direction, top_quantile)
    if not best:
        return dict(space), ["no completed trial: ranges kept as they were"]
    notes: list[str] = []
    new: dict[str, ParamRange] = {}
    for name, r in space.items():
        values = [t.params[name] for t in best if name in t.params]
        if not values:
            new[name] = r
            notes.append(f"{name}: not sampled by the best trials; kept")
            continue
        if not r.is_numeric:
            kept = [c for c in r.choices if c in values]
            new[name] = ParamRange(choices=kept)
            notes.append(f"{name}: choices {r.choices} -> {kept}")
            continue
        new[name], note = _narrow_numeric(name, r, values, best[0].params.get(name), pad, widen_at_edge)
        notes.append(note)
    return new, notes


def _narrow_numeric(name, r: ParamRange, values, best_value, pad, widen_at_edge):
    lo_t, hi_t = _fwd(r.low, r.log), _fwd(r.high, r.log)
    width = hi_t - lo_t
    v = [_fwd(x, r.log) for x in values]
    lo, hi = min(v) - pad * width, max(v) + pad * width
    if hi - lo < 0.05 * width:  # all best trials agree: keep a sliver around them
        mid = (lo + hi) / 2
        lo, hi = mid - 0.025 * width, mid + 0.025 * width
    note = ""
    b = _fwd(best_value, r.log) if best_value is not None else None
    at_low = b is not None and b - lo_t <= EDGE_FRACTION * width
    at_high = b is not None and hi_t - b <= EDGE_FRACTION * width
    span = hi - lo
    if widen_at_edge and r.log and not r.int and at_low:
        lo = lo_t - span / 2
        note = f" (best trial at the low edge {r.low:g}: widened below it)"
    else:
        lo = max(lo, lo_t)
    if widen_at_edge and r.log and not r.int and at_high:
        hi = hi_t + span / 2
        note += f" (best trial at the high edge {r.high:g}: widened above it)"
    else:
        hi = min(hi, hi_t)
    # a bound clipped to the original range keeps its exact value (10**log10(x) may differ from x)
    low = r.low if lo == lo_t else _inv(lo, r.log)
    high = r.high if hi == hi_t else _inv(hi, r.log)
    low, high = _clip_to_domain(name, low, high)
    if r.int:
        low, high = math.floor(low), math.ceil(high)
        if low >= high:
            high = low + 1
    out = ParamRange(low=low, high=high, log=r.log, int=r.int)
    return out, f"{name}: [{r.low:g}, {r.high:g}] -> [{out.low:g}, {out.high:g}]{note}"


def _clip_to_domain(name: str, low: float, high: float) -> tuple[float, float]:
    """Keep a widened range inside the hyperparameter's domain (e.g. `dropout` below 1)."""
    domain = hparams.domain(name)
    if hparams.numeric(domain) is None:
        return low, high
    d_low, d_high, low_open, high_open = hparams.bounds(domain)
    if d_high is not None and high >= d_high:
        high = math.nextafter(d_high, -math.inf) if high_open else d_high
    if d_low is not None and low <= d_low:
        low = math.nextafter(d_low, math.inf) if low_open else d_low
    return low, high


def space_to_dict(space: Mapping[str, ParamRange]) -> dict[str, dict]:
    """JSON-ready form of a space: the one way out to results files, MLflow and the study's user attrs."""
    return {k: v.model_dump(exclude_defaults=True) for k, v in space.items()}


def space_from_dict(raw: Mapping[str, Mapping]) -> dict[str, ParamRange]:
    """The space a `space_to_dict` form describes (read back from a study's user attrs)."""
    return {k: ParamRange(**v) for k, v in raw.items()}
