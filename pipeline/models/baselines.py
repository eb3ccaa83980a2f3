"""Single-shot families: `linear` (scikit-learn, predicted with NumPy) and `majority` (the floor).

Both record one "epoch" in the history (train and validation scores of the fitted model,
data loss without penalty) and call `on_epoch(0, logs)` once, like the iterative families.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import expit, softmax

from pipeline.models.arrays import as_labels
from pipeline.models.base import ModelFamily, TrainedModel
from pipeline.models.loop import EpochLoop

COEF_FILE = "coefficients.npz"


def _one_epoch(model: TrainedModel, X_train, y_train, X_val, y_val, on_epoch) -> TrainedModel:
    """Score a fitted single-shot model as epoch 0 and fill its `history` and `best_epoch`."""
    loop = EpochLoop(model.task, {}, has_val=X_val is not None, on_epoch=on_epoch)
    logs = model.evaluate(X_train, y_train)
    if X_val is not None:
        logs.update({f"val_{k}": v for k, v in model.evaluate(X_val, y_val).items()})
    loop.end_epoch(0, logs)
    model.history, model.best_epoch = loop.history, loop.best_epoch
    return model


def _n_outputs(task: str, n_classes: int | None) -> int:
    """Number of class columns (2 for binary), or 1 for regression."""
    return 1 if task == "regression" else 2 if task == "binary" else int(n_classes)


class LinearModel(TrainedModel):
    """Coefficients of a linear model, predicted with NumPy; saved as `coefficients.npz`.

    Attributes:
        `coef` (k, d), `intercept` (k,): decision function `X @ coef.T + intercept`.
        `classes`: the class labels the k rows stand for (k = 1 for two classes: P(classes[1])).
    """

    family = "linear"

    def __init__(self, *, coef=None, intercept=None, classes=None, **kwargs):
        super().__init__(**kwargs)
        self.coef, self.intercept, self.classes = coef, intercept, classes

    def predict(self, X) -> np.ndarray:
        """See `TrainedModel.predict`; classes never seen in training get probability 0."""
        z = np.asarray(X @ self.coef.T) + self.intercept
        if self.task == "regression":
            return z[:, 0]
        probs = np.zeros((z.shape[0], _n_outputs(self.task, self.n_classes)))
        if len(self.classes) == 2:
            p1 = expit(z[:, 0])
            probs[:, self.classes[0]], probs[:, self.classes[1]] = 1 - p1, p1
        else:
            probs[:, self.classes] = softmax(z, axis=1)
        return probs[:, 1] if self.task == "binary" else probs

    def _save_state(self, dir: Path) -> None:
        np.savez(dir / COEF_FILE, coef=self.coef, intercept=self.intercept, classes=self.classes)

    def _load_state(self, dir: Path, state: dict) -> None:
        with np.load(dir / COEF_FILE, allow_pickle=False) as data:
            self.coef, self.intercept, self.classes = data["coef"], data["intercept"], data["classes"]


class Linear(ModelFamily):
    """LogisticRegression (C = 1/l2) for classification, Ridge (alpha = l2) for regression.

    Defaults: `l2` None (scikit-learn's C = 1.0 / alpha = 1.0), `max_iter` 1000. `epochs` is ignored.
    """

    name = "linear"
    model_class = LinearModel

    def train(self, hparams, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed=0, on_epoch=None):
        """Fit once on `X_train` (dense or CSR); see `ModelFamily.train`."""
        from sklearn.linear_model import LogisticRegression, Ridge  # noqa: PLC0415 - import cost

        hp = self.resolve_hparams(task, hparams)
        l2 = hp["l2"]
        if task == "regression":
            est = Ridge(alpha=float(l2) if l2 else 1.0, random_state=seed).fit(X_train, y_train)
            classes = np.zeros(0, dtype=np.int64)
        else:
            est = LogisticRegression(C=1.0 / float(l2) if l2 else 1.0, max_iter=int(hp["max_iter"]), random_state=seed)
            est.fit(X_train, as_labels(task, y_train))
            classes = est.classes_.astype(np.int64)
        model = LinearModel(
            coef=np.atleast_2d(est.coef_).astype(np.float64),
            intercept=np.atleast_1d(est.intercept_).astype(np.float64),
            classes=classes,
            hparams=hp,
            history={},
            best_epoch=1,
            task=task,
            n_classes=n_classes,
        )
        return _one_epoch(model, X_train, y_train, X_val, y_val, on_epoch)


class MajorityModel(TrainedModel):
    """Predicts the training class frequencies (argmax: the majority class) or the training mean."""

    family = "majority"

    def __init__(self, *, value=None, **kwargs):
        super().__init__(**kwargs)
        self.value = None if value is None else np.asarray(value, dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        """See `TrainedModel.predict`: the same row for every input."""
        out = np.tile(self.value, (X.shape[0], 1))
        return out if self.task == "multiclass" else out[:, 1 if self.task == "binary" else 0]

    def _json_state(self) -> dict:
        return {"value": self.value.tolist()}

    def _load_state(self, dir: Path, state: dict) -> None:
        self.value = np.asarray(state["value"], dtype=np.float64)


class Majority(ModelFamily):
    """The floor of every leaderboard row: class frequencies or the mean target. No hyperparameters."""

    name = "majority"
    model_class = MajorityModel

    def train(self, hparams, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed=0, on_epoch=None):
        """Count classes (or average targets) of `y_train`; see `ModelFamily.train`."""
        hp = self.resolve_hparams(task, hparams)
        y = as_labels(task, y_train, targets=np.float64)
        if task == "regression":
            value = [float(y.mean())]
        else:
            value = np.bincount(y, minlength=_n_outputs(task, n_classes)) / len(y)
        model = MajorityModel(value=value, hparams=hp, history={}, best_epoch=1, task=task, n_classes=n_classes)
        return _one_epoch(model, X_train, y_train, X_val, y_val, on_epoch)
