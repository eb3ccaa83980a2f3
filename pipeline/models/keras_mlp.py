"""`keras_mlp`: a Dense network whose defaults are the networks of Chollet, ch. 3.

Defaults by task: binary (IMDB) Dense 16-16 relu + 1 sigmoid, binary_crossentropy;
multiclass (Reuters) Dense 64-64 relu + n softmax, sparse_categorical_crossentropy on
integer labels; regression (Boston) Dense 64-64 relu + 1 linear, mse loss, mae metric.
All use rmsprop with lr 1e-3; batch 512 for classification, 16 for regression.
"""

from __future__ import annotations

from pipeline.models.keras_common import KerasFamily, KerasModel


class KerasMLPModel(KerasModel):
    """A trained `keras_mlp`."""

    family = "keras_mlp"


class KerasMLP(KerasFamily):
    """Dense MLP: the dense head alone, `depth` hidden layers of `units` (each followed by dropout), task output."""

    model_class = KerasMLPModel
