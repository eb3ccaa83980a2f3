"""`keras_cnn`: a small convolutional network for images shaped (N, H, W, C).

Architecture: optional augmentation (`augment`: RandomRotation up to 20 degrees and
RandomTranslation of 20%, active only in training), then conv blocks (`filters`: a list of
blocks, each an int or a list of ints, one conv per int, padding "same"), each block
followed by a 2x2 max-pool while the feature map is at least 2x2, then Flatten, a dense
head (`units`, `depth`) with `dropout` after each dense layer, and the task's output layer.
`kernel_size` is an int or one size per conv layer.

Defaults: filters [32, 64], kernel 3, dense 128 relu, dropout 0.5, rmsprop lr 1e-3, batch 128.
Preset `"notes"` (`hparams.PRESETS`; the MNIST CNN of the lecture notes): conv 4 5x5 tanh, conv 8 3x3 tanh,
max-pool, conv 16 3x3 tanh, max-pool, dense 128 tanh, dense 10 softmax; SGD lr 0.05,
momentum 0.9, Nesterov, batch 100, no dropout (the notes train 10 epochs; their lr decay
1e-6 per step is omitted, it changes the lr by under 1% over those epochs). Inputs of shape
(N, H, W) get a channel axis.
"""

from __future__ import annotations

from pipeline.models.keras_common import KerasFamily, KerasModel, keras_module, kernel_regularizer


class KerasCNNModel(KerasModel):
    """A trained `keras_cnn`."""

    family = "keras_cnn"

    @staticmethod
    def prepare(X):
        """Add a channel axis to (N, H, W) images."""
        return X[..., None] if X is not None and X.ndim == 3 else X


class KerasCNN(KerasFamily):
    """Conv-pool blocks, a dense head and the task's output layer (see the module docstring)."""

    model_class = KerasCNNModel

    def features(self, x, hp: dict, input_shape: tuple):
        """The augmentation and conv-pool blocks on images `x` of `input_shape` (H, W, C), flattened.

        Raises:
            ValueError: when `kernel_size` lists a different number of sizes than there are convs.
        """
        layers = keras_module().layers
        blocks = [b if isinstance(b, list | tuple) else [b] for b in hp["filters"]]
        n_convs = sum(len(b) for b in blocks)
        kernels = hp["kernel_size"] if isinstance(hp["kernel_size"], list | tuple) else [hp["kernel_size"]] * n_convs
        if len(kernels) != n_convs:
            raise ValueError(f"kernel_size {hp['kernel_size']!r} must give one size per conv layer ({n_convs})")
        act, reg = hp["activation"], kernel_regularizer(hp)

        if hp.get("augment"):
            x = layers.RandomRotation(20 / 360)(x)
            x = layers.RandomTranslation(0.2, 0.2)(x)
        height, width = input_shape[0], input_shape[1]
        kernel_iter = iter(kernels)
        for block in blocks:
            for n_filters in block:
                size = int(next(kernel_iter))
                x = layers.Conv2D(int(n_filters), size, padding="same", activation=act, kernel_regularizer=reg)(x)
            if height >= 2 and width >= 2:
                x = layers.MaxPooling2D(2)(x)
                height, width = height // 2, width // 2
        return layers.Flatten()(x)
