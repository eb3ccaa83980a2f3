"""Training, prediction and saving shared by the Keras families (`keras_mlp`, `keras_cnn`).

TensorFlow is imported only inside functions, through `keras_module()`, which first
applies `pipeline.models.runtime.configure_tensorflow()`; `pipeline.models.batches`
feeds the arrays to `fit`.

Losses (`loss`): binary `binary_crossentropy` (sigmoid output) or `hinge` (a linear output, the
margin m; `keras.losses.hinge` maps the 0/1 labels to -1/+1 and trains on max(0, 1 - y*m);
accuracy counts m > 0; `predict` answers sigmoid(m) as P(class 1), so serving, the 0.5 threshold
and the log loss of `evaluate` read it like any binary model, though it is a squashed margin,
not a calibrated probability); regression `mse`, `mae` or `huber` (delta 1) with the mae metric;
multiclass categorical cross-entropy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from pipeline.models.arrays import as_labels, dense_chunks
from pipeline.models.base import ModelFamily, TrainedModel
from pipeline.models.batches import make_dataset
from pipeline.models.epoch_loop import EpochLoop
from pipeline.models.hparams import hidden_units, loss_problem
from pipeline.models.runtime import configure_tensorflow

MODEL_FILE = "model.keras"


def keras_module():
    """Configure TensorFlow once, then return the `keras` module."""
    configure_tensorflow()
    import keras  # noqa: PLC0415 - deliberately lazy

    return keras


def output_head(task: str, n_classes: int | None, loss: str | None = None) -> tuple[int, str, str, object]:
    """Return `(units, activation, loss, metric)` of the output layer for `task` trained with `loss`.

    `loss` None is the task's default (binary_crossentropy, categorical cross-entropy, mse).

    Raises:
        ValueError: for an unknown task, multiclass without `n_classes`, or a loss the task cannot use.
    """
    keras = keras_module()
    if why := loss_problem(task, loss):
        raise ValueError(why)
    if task == "binary" and loss == "hinge":
        return 1, "linear", "hinge", keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    if task == "binary":
        return 1, "sigmoid", "binary_crossentropy", keras.metrics.BinaryAccuracy(name="accuracy")
    if task == "multiclass":
        if not n_classes:
            raise ValueError("multiclass training needs n_classes")
        acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        return int(n_classes), "softmax", "sparse_categorical_crossentropy", acc
    if task == "regression":
        return 1, "linear", loss or "mse", keras.metrics.MeanAbsoluteError(name="mae")
    raise ValueError(f"unknown task {task!r}")


def make_optimizer(hp: dict):
    """Build the Keras optimizer named by `hp["optimizer"]` with `hp["lr"]`.

    `sgd` uses `momentum` (default 0.9) and `nesterov` (default True).
    """
    keras = keras_module()
    lr = float(hp["lr"])
    if hp["optimizer"] == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if hp["optimizer"] == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(hp["momentum"]), nesterov=bool(hp["nesterov"]))
    return keras.optimizers.RMSprop(learning_rate=lr)


def kernel_regularizer(hp: dict):
    """Return the kernel penalty of `hp["regularizer"]`, or None without one.

    `l2` (default): `L2(l2)`, penalty `l2 * sum(W^2)`, None without `l2`; `l1`: `L1(l1)`,
    `l1 * sum|W|`; `l1_l2`: `L1L2(l1, l2)`, the sum of both (`hp` resolved: the strengths it uses are set).
    """
    regularizers = keras_module().regularizers
    regularizer = hp.get("regularizer") or "l2"
    if regularizer == "l1":
        return regularizers.L1(float(hp["l1"])) if hp["l1"] else None
    if regularizer == "l1_l2":
        return regularizers.L1L2(l1=float(hp["l1"]), l2=float(hp["l2"]))
    return regularizers.L2(float(hp["l2"])) if hp.get("l2") else None


def dense_head(x, hp: dict, task: str, n_classes: int | None):
    """Add the dense layers of `hp` (`units`, `depth`, `activation`, `l2`, each followed by `dropout`) and the
    task's output layer on top of the Keras tensor `x`; return the output tensor."""
    layers = keras_module().layers
    for width in hidden_units(hp):
        x = layers.Dense(width, activation=hp["activation"], kernel_regularizer=kernel_regularizer(hp))(x)
        if hp.get("dropout"):
            x = layers.Dropout(float(hp["dropout"]))(x)
    units, activation, _, _ = output_head(task, n_classes, hp.get("loss"))
    return layers.Dense(units, activation=activation)(x)


@dataclass(kw_only=True, eq=False)
class KerasModel(TrainedModel):
    """A trained Keras model; saved as `model.keras` next to `meta.json`."""

    model: Any = None  # the `keras.Model`

    @staticmethod
    def prepare(X):
        """Bring inputs to the model's layout (identity; images add a channel axis)."""
        return X

    def predict(self, X) -> np.ndarray:
        """See `TrainedModel.predict`; CSR inputs are densified block by block."""
        X = self.prepare(X)
        out = np.concatenate([np.asarray(self.model.predict_on_batch(b)) for b in dense_chunks(X)])
        if self.task == "binary" and self.hparams.get("loss") == "hinge":
            return expit(out[:, 0].astype(np.float64))  # the margin as P(class 1)
        return out if self.task == "multiclass" else out[:, 0]

    def kernel_weights(self) -> list[np.ndarray]:
        """The kernel (weight matrix) of every Dense and Conv2D layer, output layer included."""
        return [np.asarray(layer.kernel) for layer in self.model.layers if getattr(layer, "kernel", None) is not None]

    def _save_state(self, dir: Path) -> None:
        self.model.save(dir / MODEL_FILE)

    def _load_state(self, dir: Path, state: dict) -> None:
        self.model = keras_module().saving.load_model(dir / MODEL_FILE, compile=False)


class KerasFamily(ModelFamily):
    """The Keras families' network (their `features`, then `dense_head`) and its training with `model.fit`."""

    model_class = KerasModel

    def features(self, x, hp: dict, input_shape: tuple):
        """The layers between the input tensor `x` and the dense head (none: an MLP); returns their output."""
        return x

    def build_model(self, hp: dict, input_shape: tuple, task: str, n_classes: int | None):
        """Return the uncompiled `keras.Model` for resolved hyperparameters `hp`: `features`, then `dense_head`.

        Args:
            `hp`: resolved hyperparameters.
            `input_shape`: shape of one example, e.g. `(10000,)`.
            `task`, `n_classes`: decide the output head.
        """
        keras = keras_module()
        inputs = keras.Input(shape=input_shape)
        outputs = dense_head(self.features(inputs, hp, input_shape), hp, task, n_classes)
        return keras.Model(inputs, outputs, name=self.name)

    def fit(self, hp, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed, on_epoch):
        """Train with `model.fit`; see `ModelFamily.train`. Clears the Keras session first."""
        keras = keras_module()
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        prepare = self.model_class.prepare
        X_train = prepare(X_train)
        model = self.build_model(hp, tuple(X_train.shape[1:]), task, n_classes)
        _, _, loss, metric = output_head(task, n_classes, hp.get("loss"))
        model.compile(optimizer=make_optimizer(hp), loss=loss, metrics=[metric])

        has_val = X_val is not None
        loop = EpochLoop(task, hp, has_val=has_val, on_epoch=on_epoch)
        keep_best = has_val and hp.get("early_stopping") is not None
        best_weights: list = []

        def end_epoch(epoch: int, logs: dict) -> None:
            loop.end_epoch(epoch, logs)
            if keep_best and loop.improved:
                best_weights[:] = [model.get_weights()]
            if loop.lr is not None and loop.lr != loop.base_lr:
                model.optimizer.learning_rate = loop.lr
            model.stop_training = loop.stop

        bs = int(hp["batch_size"])
        label_dtype = np.int32 if task == "multiclass" else np.float32  # what the task's Keras loss expects
        train_ds = make_dataset(X_train, as_labels(task, y_train, classes=label_dtype), bs, shuffle=True, seed=seed)
        val_ds = None
        if has_val:
            y_val = as_labels(task, y_val, classes=label_dtype)
            val_ds = make_dataset(prepare(X_val), y_val, bs, shuffle=False, seed=seed)
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=int(epochs),
            shuffle=False,  # the dataset shuffles itself
            verbose=0,
            callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=end_epoch)],
        )
        if best_weights:
            model.set_weights(best_weights[0])
        return self.model_class(
            model=model, hparams=hp, history=loop.history, best_epoch=loop.best_epoch, task=task, n_classes=n_classes
        )
