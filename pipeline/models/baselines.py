"""Single-shot families: `linear` (scikit-learn, predicted with NumPy) and `majority` (the floor).

Both record one "epoch" in the history (train and validation scores of the fitted model,
data loss without penalty) and call `on_epoch(0, logs)` once, like the iterative families.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, softmax

from pipeline.models.arrays import as_labels
from pipeline.models.base import ModelFamily, TrainedModel
from pipeline.models.epoch_loop import EpochLoop

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


@dataclass(kw_only=True, eq=False)
class LinearModel(TrainedModel):
    """Coefficients of a linear model, predicted with NumPy; saved as `coefficients.npz`.

    Attributes:
        `coef` (k, d), `intercept` (k,): decision function `X @ coef.T + intercept`.
        `classes`: the class labels the k rows stand for (k = 1 for two classes: P(classes[1])).
    """

    family = "linear"
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    classes: np.ndarray | None = None

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

    def kernel_weights(self) -> list[np.ndarray]:
        """The coefficient matrix (intercepts are not penalized)."""
        return [self.coef]


def _estimator(task: str, hp: dict, seed: int):
    """The scikit-learn estimator of `hp["regularizer"]` with its strengths (see `Linear`)."""
    from sklearn.linear_model import ElasticNet, Lasso, LogisticRegression, Ridge  # noqa: PLC0415 - import cost

    regularizer, l1, l2, max_iter = hp["regularizer"], hp["l1"], hp["l2"], int(hp["max_iter"])
    if regularizer == "l2":
        if task == "regression":
            return Ridge(alpha=float(l2) if l2 else 1.0, random_state=seed)
        return LogisticRegression(C=1.0 / float(l2) if l2 else 1.0, max_iter=max_iter, random_state=seed)
    strength = float(l1) if l1 is not None else 1.0
    if regularizer == "l1_l2":
        strength += float(l2) if l2 is not None else 1.0
        ratio = (float(l1) if l1 is not None else 1.0) / strength if strength > 0 else 0.5
    if task == "regression":
        if regularizer == "l1":
            return Lasso(alpha=strength, max_iter=max_iter, random_state=seed)
        return ElasticNet(alpha=strength, l1_ratio=ratio, max_iter=max_iter, random_state=seed)
    c = 1.0 / strength if strength > 0 else 1e12
    if regularizer == "l1":
        solver = "liblinear" if task == "binary" else "saga"
        return LogisticRegression(C=c, l1_ratio=1.0, solver=solver, max_iter=max_iter, random_state=seed)
    return LogisticRegression(C=c, l1_ratio=ratio, solver="saga", max_iter=max_iter, random_state=seed)


class Linear(ModelFamily):
    """LogisticRegression for classification, Ridge / Lasso / ElasticNet for regression.

    `regularizer` l2 (default): C = 1/l2, Ridge alpha = l2; l1: penalty l1 (liblinear for binary,
    saga otherwise) with C = 1/l1, Lasso alpha = l1; l1_l2: elastic net (saga) with C = 1/(l1+l2),
    l1_ratio = l1/(l1+l2), ElasticNet alpha = l1+l2 alike. In scikit-learn's scaling the classifiers
    minimize `sum(log loss) + l1*sum|w| + 0.5*l2*sum(w^2)` and Lasso / ElasticNet
    `mean(squared error)/2 + l1*sum|w| + 0.5*l2*sum(w^2)`. A strength left None is 1.0
    (scikit-learn's default). Defaults: `l2` None, `max_iter` 1000. `epochs` is ignored; the
    training loss is fixed (log loss, squared error): `loss` is not read.
    """

    model_class = LinearModel

    def fit(self, hp, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed, on_epoch):
        """Fit once on `X_train` (dense or CSR); see `ModelFamily.train`."""
        est = _estimator(task, hp, seed)
        if task == "regression":
            est.fit(X_train, y_train)
            classes = np.zeros(0, dtype=np.int64)
        else:
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


@dataclass(kw_only=True, eq=False)
class MajorityModel(TrainedModel):
    """Predicts the training class frequencies (argmax: the majority class) or the training mean."""

    family = "majority"
    value: np.ndarray | None = None  # float64: the class frequencies, or the mean as one value

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

    model_class = MajorityModel

    def fit(self, hp, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed, on_epoch):
        """Count classes (or average targets) of `y_train`; see `ModelFamily.train`."""
        y = as_labels(task, y_train, targets=np.float64)
        if task == "regression":
            value = np.array([y.mean()])
        else:
            value = np.bincount(y, minlength=_n_outputs(task, n_classes)) / len(y)
        model = MajorityModel(value=value, hparams=hp, history={}, best_epoch=1, task=task, n_classes=n_classes)
        return _one_epoch(model, X_train, y_train, X_val, y_val, on_epoch)
