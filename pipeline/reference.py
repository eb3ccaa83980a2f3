"""Published results the leaderboard compares each benchmark with, each with its source.

Only figures from the project's reference material (Chollet, *Deep Learning with Python*, 2nd ed.,
ch. 3; the lecture notes) or a source cited beside them; a dataset without one has no reference
and the report says so. `value` is the figure the difference is taken from; `shown` is the
published figure or range as printed. `goal` is the target issue 15 sets for the tuned model,
where it sets one. Protocols differ between sources (test split, cross-validation, leave-one-out),
so a difference is a guide, not a ranking.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One published result: `metric`, the compared `value`, `shown` as published, the `model` and `source`."""

    metric: str
    value: float
    shown: str
    model: str
    source: str
    families: tuple[str, ...] = ()  # the model families it applies to; empty: every family
    goal: float | None = None


BOOK = "Chollet, Deep Learning with Python, 2nd ed., ch. 3"
ZALANDO = "benchmark table of Zalando's fashion-mnist README"
MLP_FAMILIES = ("keras_mlp", "numpy_mlp", "linear")

REFERENCES: dict[str, tuple[Reference, ...]] = {
    "imdb": (
        Reference(
            "accuracy",
            0.8836,
            "0.884-0.885",
            "Dense 16-16-1 on 10,000-word multi-hot, 4 epochs",
            f"{BOOK} (0.8836); Maas et al. 2011 (ACL): 0.883-0.889",
            goal=0.91,
        ),
    ),
    "reuters": (
        Reference(
            "accuracy",
            0.791,
            "~0.79-0.80",
            "Dense 64-64-46 on 10,000-word multi-hot, 9 epochs",
            f"{BOOK} (0.791); Keras `reuters_mlp` example",
        ),
    ),
    "boston_housing": (
        Reference(
            "mae",
            2.61,
            "2.55-2.61",
            "Dense 64-64-1, 4-fold CV, 80 epochs batch 16",
            f"{BOOK} (test MAE 2.61, MSE 17.4)",
            goal=2.3,
        ),
    ),
    "mnist": (
        Reference(
            "accuracy", 0.9925, "0.9925-0.993", "small CNN", "Keras `mnist_cnn` example", families=("keras_cnn",)
        ),
    ),
    "fashion_mnist": (
        Reference(
            "accuracy", 0.925, "~0.925", "small CNN (< 100k parameters)", ZALANDO, families=("keras_cnn",), goal=0.925
        ),
        Reference("accuracy", 0.90, "~0.88-0.90", "MLP", ZALANDO, families=MLP_FAMILIES, goal=0.90),
    ),
    "cifar10": (
        Reference(
            "accuracy", 0.50, "~0.50-0.52", "two-layer net on pixels (PCA)", "the lecture notes; CS231n assignment 2"
        ),
    ),
    "digits": (
        Reference(
            "accuracy",
            0.97,
            "0.97",
            "SVC(gamma=0.001), first half train / second half test",
            "scikit-learn example 'Recognizing hand-written digits' (0.9689 reproduced here)",
        ),
    ),
    "wine": (
        Reference(
            "accuracy",
            0.989,
            "0.989 (LDA; RDA 1.00)",
            "LDA, leave-one-out",
            "Aeberhard, Coomans & de Vel 1992, quoted in scikit-learn's wine dataset description",
        ),
    ),
    "rt_polarity": (),  # no published figure for this corpus; issue 15's goal: 0.80 with n-grams
    "breast_cancer": (),
    "diabetes": (),
}
GOALS_WITHOUT_REFERENCE = {"rt_polarity": ("accuracy", 0.80)}


def reference_for(dataset: str, model: str | None = None) -> Reference | None:
    """The reference of catalog dataset `dataset` for model family `model` (any family when None), or None."""
    for ref in REFERENCES.get(dataset, ()):
        if model is None or not ref.families or model in ref.families:
            return ref
    return None


def goal_for(dataset: str, model: str | None = None) -> tuple[str, float] | None:
    """Issue 15's goal `(metric, value)` for a benchmark of `dataset` with `model`, or None."""
    ref = reference_for(dataset, model)
    if ref is not None and ref.goal is not None:
        return ref.metric, ref.goal
    return GOALS_WITHOUT_REFERENCE.get(dataset)
