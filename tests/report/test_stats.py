"""The statistics behind reported numbers: seed intervals, where a reference lies, the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from pipeline.models.base import evaluate_predictions
from pipeline.stats import paired_bootstrap, placement, seed_summary


def test_seed_summary_is_the_student_t_interval():
    s = seed_summary([0.90, 0.92, 0.91, 0.95, 0.89])
    lo, hi = st.t.interval(0.95, 4, loc=np.mean(s["values"]), scale=st.sem(s["values"]))
    assert s["mean"] == pytest.approx(0.914) and s["std"] == pytest.approx(np.std(s["values"], ddof=1))
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(lo), pytest.approx(hi)) and s["n"] == 5
    one = seed_summary([2.5])
    assert (one["ci_low"], one["ci_high"], one["std"]) == (2.5, 2.5, 0.0)


@pytest.mark.parametrize(("value", "direction", "verdict"), [
    (0.85, "maximize", "yes"), (0.95, "maximize", "no"), (0.91, "maximize", "inconclusive"),
    (3.0, "minimize", "yes"), (2.0, "minimize", "no"), (2.5, "minimize", "inconclusive"),
])  # fmt: skip
def test_placement_of_a_reference(value, direction, verdict):
    low, high = (0.90, 0.93) if direction == "maximize" else (2.3, 2.7)
    assert placement(value, low, high, direction) == verdict


def _accuracy(y, p):
    return evaluate_predictions("binary", p, y)["accuracy"]


def test_paired_bootstrap_tells_a_real_gain_from_noise():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 600)
    truth = np.where(y == 1, 0.9, 0.1)
    right = rng.random(600)
    champion = np.where(right < 0.80, truth, 1 - truth)  # 80% right
    better = np.where(right < 0.88, truth, 1 - truth)  # 88% right on the same examples (and the same ones and more)
    noisy = champion.copy()
    flip = rng.choice(600, 6, replace=False)  # 6 examples changed either way: a wash
    noisy[flip] = 1 - noisy[flip]
    gain = paired_bootstrap(_accuracy, y, better, champion, "maximize")
    assert gain["gain"] == pytest.approx(_accuracy(y, better) - _accuracy(y, champion))
    assert gain["p_value"] < 0.01 and gain["ci_low"] > 0
    wash = paired_bootstrap(_accuracy, y, noisy, champion, "maximize")
    assert wash["p_value"] > 0.05 and wash["ci_low"] <= 0 <= wash["ci_high"]


def test_paired_bootstrap_turns_the_sign_for_a_minimised_metric():
    rng = np.random.default_rng(2)
    y = rng.normal(20, 5, 200)
    champion, challenger = y + rng.normal(0, 3, 200), y + rng.normal(0, 1, 200)

    def mae(t, p):
        return evaluate_predictions("regression", p, t)["mae"]

    out = paired_bootstrap(mae, y, challenger, champion, "minimize")
    assert out["gain"] > 1 and out["p_value"] < 0.01  # lower MAE is a positive gain
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap(mae, y, challenger[:10], champion, "minimize")
