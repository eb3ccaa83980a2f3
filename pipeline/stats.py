"""The statistics behind the numbers tunebench reports: a mean over seeds with its confidence interval,
and the paired bootstrap test that gates promotion.

`seed_summary` gives a metric's mean, sample standard deviation and two-sided 95% Student-t
interval over training seeds (per-seed values kept). `paired_bootstrap` compares two models on the
same test examples: it resamples the examples with replacement, recomputes both models' metric on
each resample and reports the gain's interval and a one-sided p-value (the share of resamples
where the challenger does not beat the champion). Pairing removes the test set's own difficulty
from the comparison, so it detects smaller gains than comparing two independent scores, and it
needs no assumption on the metric's distribution (accuracy, MAE alike).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000


def seed_summary(values: list[float], level: float = LEVEL) -> dict:
    """`{"mean", "std", "ci_low", "ci_high", "n", "values"}` of per-seed `values` (Student-t interval;
    with one value the interval is that value and `std` is 0)."""
    from scipy import stats  # noqa: PLC0415

    x = np.asarray(values, dtype=np.float64)
    n, mean = len(x), float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n,
            "values": [float(v) for v in x]}  # fmt: skip


def placement(value: float, low: float, high: float, direction: str) -> str:
    """Where a reference result lies against an interval of ours: `yes` (we beat it: the whole interval is
    better), `no` (the whole interval is worse) or `inconclusive` (it lies within)."""
    if low <= value <= high:
        return "inconclusive"
    beats = value < low if direction == "maximize" else value > high
    return "yes" if beats else "no"


def paired_bootstrap(metric: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, challenger: np.ndarray,
                     champion: np.ndarray, direction: str, *, resamples: int = BOOTSTRAP_RESAMPLES,
                     level: float = LEVEL, seed: int = 0) -> dict:  # fmt: skip
    """Paired bootstrap of the gain `challenger - champion` in `metric(y, pred)` (sign turned so that a
    positive gain is better in `direction`).

    Returns:
        `{"test": "paired bootstrap", "gain", "ci_low", "ci_high", "p_value", "resamples", "n"}`:
        the observed gain, its percentile interval and the one-sided p-value of "no gain".
    """
    y, a, b = np.asarray(y), np.asarray(challenger), np.asarray(champion)
    if not (len(y) == len(a) == len(b)):
        raise ValueError(f"paired test needs predictions of the same examples: {len(y)}, {len(a)}, {len(b)}")
    sign = 1.0 if direction == "maximize" else -1.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(resamples, len(y)))
    gains = np.array([sign * (metric(y[i], a[i]) - metric(y[i], b[i])) for i in idx])
    alpha = 1 - level
    return {
        "test": "paired bootstrap", "gain": float(sign * (metric(y, a) - metric(y, b))),
        "ci_low": float(np.quantile(gains, alpha / 2)), "ci_high": float(np.quantile(gains, 1 - alpha / 2)),
        "p_value": float((np.sum(gains <= 0) + 1) / (resamples + 1)), "resamples": resamples, "n": int(len(y)),
    }  # fmt: skip
