"""The contract every model family follows: families, trained models, saving, divergence.

A *family* (`ModelFamily`) turns hyperparameters and arrays into a `TrainedModel`;
a trained model predicts, evaluates, and saves itself to a folder without pickle
(`meta.json` plus family files). `TrainedModel.load` reads `meta.json` and hands
the folder to the class of the family named there.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.models.arrays import as_labels
from pipeline.models.hparams import FAMILIES, KNOWN, defaults, reads, resolve_hparams
from pipeline.tasks import task_metric

# family name -> (module, ModelFamily subclass); modules are imported on demand so that
# only the Keras families ever import TensorFlow.
_LOCATIONS: dict[str, tuple[str, str]] = {
    "keras_mlp": ("pipeline.models.keras_mlp", "KerasMLP"),
    "keras_cnn": ("pipeline.models.keras_cnn", "KerasCNN"),
    "numpy_mlp": ("pipeline.models.numpy_mlp", "NumpyMLP"),
    "linear": ("pipeline.models.baselines", "Linear"),
    "majority": ("pipeline.models.baselines", "Majority"),
    "replay": ("pipeline.models.replay", "Replay"),  # benchmarking only: answers from recorded curves
}

META_FILE = "meta.json"
EPSILON = 1e-7  # probability clipping for log loss, as Keras does
OnEpoch = Callable[[int, dict[str, float]], None]


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss.

    Args:
        `message`: what diverged, naming the epoch and the value.
        `epoch`: 1-based epoch at which it happened, when known.
        `value`: the offending value, when known.
    """

    def __init__(self, message: str, *, epoch: int | None = None, value: float | None = None):
        super().__init__(message)
        self.epoch, self.value = epoch, value


def get_family(name: str) -> ModelFamily:
    """Return the model family called `name`.

    Args:
        `name`: one of `FAMILIES`.

    Returns:
        A `ModelFamily` instance; importing it does not import TensorFlow.

    Raises:
        ValueError: for an unknown name (the message lists the allowed names).
    """
    if name not in _LOCATIONS:
        raise ValueError(f"unknown model family {name!r}; expected one of {', '.join(FAMILIES)}")
    module, cls = _LOCATIONS[name]
    return getattr(importlib.import_module(module), cls)()


class ModelFamily:
    """A kind of model: its default hyperparameters and its training procedure (`fit`, which each family defines)."""

    model_class: ClassVar[type[TrainedModel]]  # what `train` returns and `TrainedModel.load` builds

    @property
    def name(self) -> str:
        """The family's name: its model class's `family` (saved with each model, read by `TrainedModel.load`)."""
        return self.model_class.family

    def default_hparams(self, task: str) -> dict:
        """Return the default hyperparameters for `task`, every key the family reads (`hparams.defaults`)."""
        return defaults(self.name, task)

    def resolve_hparams(self, task: str, hparams: dict | None) -> dict:
        """The values `train` uses: `hparams` validated by the family's model for `task` (`hparams.resolve_hparams`);
        keys only other families read are left out, so one set of values can train any family."""
        others = KNOWN - set(reads(self.name))
        return resolve_hparams(self.name, task, {k: v for k, v in (hparams or {}).items() if k not in others})

    def train(
        self,
        hparams: dict,
        X_train,
        y_train,
        X_val,
        y_val,
        *,
        task: str,
        n_classes: int | None,
        epochs: int,
        seed: int = 0,
        on_epoch: OnEpoch | None = None,
    ) -> TrainedModel:
        """Train a model and return it.

        Args:
            `hparams`: hyperparameters (the search's resolved ones, or some of them); missing or
                None values take the defaults of `default_hparams(task)`, keys of other families are ignored.
            `X_train`, `y_train`: features (float32 array or CSR matrix) and labels
                (int classes, or float targets for regression).
            `X_val`, `y_val`: validation data, or None to train on everything
                (then the history has no `val_` keys and `best_epoch` is the last epoch).
            `task`: `binary`, `multiclass` or `regression`.
            `n_classes`: number of classes (classification), else None.
            `epochs`: maximum number of epochs (single-shot families run one).
            `seed`: seed for initialization, shuffling and dropout.
            `on_epoch`: called as `on_epoch(epoch, logs)` after every epoch (epoch
                from 0); whatever it raises (e.g. `optuna.TrialPruned`) propagates.

        Returns:
            The `TrainedModel`.

        Raises:
            DivergedError: when a loss becomes NaN or infinite.
            ValueError: for a key no family reads, or a value outside its domain.
        """
        hp = self.resolve_hparams(task, hparams)
        return self.fit(hp, X_train, y_train, X_val, y_val, task=task, n_classes=n_classes, epochs=epochs, seed=seed,
                        on_epoch=on_epoch)  # fmt: skip

    def fit(self, hp, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed, on_epoch) -> TrainedModel:
        """What `train` runs once `hp` is resolved (every key the family reads, validated): the family's training."""
        raise NotImplementedError


@dataclass(kw_only=True, eq=False)
class TrainedModel:
    """A trained model with its hyperparameters and per-epoch history; a family's model adds its state as fields.

    Attributes:
        `family`: the family name (saved, used by `load`).
        `hparams`: the resolved hyperparameters it was trained with.
        `history`: per-epoch `loss`, task metric, and with validation `val_loss`,
            `val_<metric>`; losses include the regularization penalty.
        `best_epoch`: 1-based epoch with the best validation metric (last epoch without validation).
        `task`, `n_classes`: what it predicts.
    """

    family: ClassVar[str]
    hparams: dict
    history: dict
    best_epoch: int
    task: str
    n_classes: int | None

    def predict(self, X) -> np.ndarray:
        """Predict `X`.

        Returns:
            binary: P(class 1), shape (n,); multiclass: probabilities (n, n_classes);
            regression: values, shape (n,).
        """
        raise NotImplementedError

    def evaluate(self, X, y) -> dict[str, float]:
        """Score predictions of `X` against `y` (data loss only, no regularization penalty).

        Returns:
            `{"loss", "accuracy"}` for classification, `{"loss", "mae", "mse"}` for regression.
        """
        return evaluate_predictions(self.task, self.predict(X), y)

    def save(self, dir: Path) -> None:
        """Write `meta.json` and the family's own files into `dir` (created if needed)."""
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        self._save_state(dir)
        meta = {
            "family": self.family,
            "task": self.task,
            "n_classes": self.n_classes,
            "hparams": self.hparams,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "state": self._json_state(),
        }
        (dir / META_FILE).write_text(json.dumps(meta, indent=2))

    @staticmethod
    def load(dir: Path) -> TrainedModel:
        """Load a model saved by `save`, dispatching on the family named in `meta.json`.

        Raises:
            FileNotFoundError: when `dir` holds no `meta.json`.
            ValueError: when it names an unknown family.
        """
        dir = Path(dir)
        meta = json.loads((dir / META_FILE).read_text())
        if meta["family"] == "seed_ensemble":  # several seeds of one configuration (`pipeline.models.ensemble`)
            from pipeline.models.ensemble import SeedEnsemble  # noqa: PLC0415 - it imports this module

            return SeedEnsemble.load_folder(dir, meta)
        cls = type(get_family(meta["family"])).model_class
        model = cls(
            hparams=meta["hparams"],
            history=meta["history"],
            best_epoch=meta["best_epoch"],
            task=meta["task"],
            n_classes=meta["n_classes"],
        )
        model._load_state(dir, meta.get("state") or {})
        return model

    # --- hooks for subclasses -------------------------------------------------------------
    def _save_state(self, dir: Path) -> None:
        """Write the family's files (arrays, Keras model) into `dir`."""

    def _json_state(self) -> dict[str, Any]:
        """Return small JSON-serializable state stored inside `meta.json`."""
        return {}

    def _load_state(self, dir: Path, state: dict[str, Any]) -> None:
        """Restore what `_save_state` and `_json_state` wrote."""


def evaluate_predictions(task: str, pred: np.ndarray, y) -> dict[str, float]:
    """Score predictions in the shape `TrainedModel.predict` returns.

    Args:
        `task`: `binary`, `multiclass` or `regression`.
        `pred`: predictions of `predict`.
        `y`: true labels or targets.

    Returns:
        `loss` (log loss, or mse) and `accuracy` (binary threshold: p > 0.5), or `mae` and `mse`.
    """
    if task == "regression":
        err = np.asarray(pred, dtype=np.float64).ravel() - as_labels(task, y, targets=np.float64)
        mse = float(np.mean(err**2))
        return {"loss": mse, "mae": float(np.mean(np.abs(err))), "mse": mse}
    p = np.clip(np.asarray(pred, dtype=np.float64), EPSILON, 1 - EPSILON)
    labels = as_labels(task, y)
    if task == "binary":
        loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
        acc = np.mean((p > 0.5) == (labels == 1))
    else:
        task_metric(task)  # raises for an unknown task
        loss = -np.mean(np.log(p[np.arange(len(labels)), labels]))
        acc = np.mean(np.argmax(p, axis=1) == labels)
    return {"loss": float(loss), "accuracy": float(acc)}


def check_finite(epoch: int, logs: dict[str, float]) -> None:
    """Raise `DivergedError` when `loss` or `val_loss` in `logs` is NaN or infinite.

    Args:
        `epoch`: 0-based epoch (the message reports it 1-based).
        `logs`: the epoch's logs.
    """
    for key in ("loss", "val_loss"):
        if key in logs and not math.isfinite(logs[key]):
            raise DivergedError(
                f"training diverged: {key} = {logs[key]} at epoch {epoch + 1}", epoch=epoch + 1, value=logs[key]
            )
