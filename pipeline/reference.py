"""Reference results the leaderboard is compared with (Chollet, Deep Learning with Python, 2nd ed., ch. 3).

Keys are dataset names; each entry gives the book's network, the metric and
its reported test value. Datasets without a published figure have none.
"""

from __future__ import annotations

REFERENCE: dict[str, dict] = {
    "imdb": {"model": "Dense 16-16-1, rmsprop, 4 epochs", "metric": "accuracy", "value": 0.8836, "loss": 0.29},
    "reuters": {"model": "Dense 64-64-46, rmsprop, 9 epochs", "metric": "accuracy", "value": 0.791},
    "boston_housing": {"model": "Dense 64-64-1, rmsprop, 80 epochs batch 16", "metric": "mae", "value": 2.61,
                       "mse": 17.4},
    "cifar10": {"model": "two-layer net (lecture notes)", "metric": "accuracy", "value": 0.50},
}


def reference_for(dataset: str) -> dict | None:
    """The reference result of `dataset`, or None."""
    return REFERENCE.get(dataset)
