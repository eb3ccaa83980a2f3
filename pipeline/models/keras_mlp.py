"""`keras_mlp`: a Dense network whose defaults are the networks of Chollet, ch. 3.

Defaults by task: binary (IMDB) Dense 16-16 relu + 1 sigmoid, binary_crossentropy;
multiclass (Reuters) Dense 64-64 relu + n softmax, sparse_categorical_crossentropy on
integer labels; regression (Boston) Dense 64-64 relu + 1 linear, mse loss, mae metric.
All use rmsprop with lr 1e-3; batch 512 for classification, 16 for regression.
"""

from __future__ import annotations

from pipeline.models.keras_common import KerasFamily, KerasModel, dense_head, keras_module


class KerasMLPModel(KerasModel):
    """A trained `keras_mlp`."""

    family = "keras_mlp"


class KerasMLP(KerasFamily):
    """Dense MLP: `depth` hidden layers of `units` (each followed by dropout), task head."""

    name = "keras_mlp"
    model_class = KerasMLPModel

    def build_model(self, hp: dict, input_shape: tuple, task: str, n_classes: int | None):
        """Build the uncompiled MLP.

        Args:
            `hp`: resolved hyperparameters (`units`, `depth`, `activation`, `dropout`, `l2`).
            `input_shape`: shape of one example, e.g. `(10000,)`.
            `task`, `n_classes`: decide the output head.

        Returns:
            A `keras.Model`.
        """
        keras = keras_module()
        inputs = keras.Input(shape=input_shape)
        return keras.Model(inputs, dense_head(inputs, hp, task, n_classes), name="keras_mlp")
