"""Model families: Keras MLP and CNN, the from-scratch NumPy network, linear and majority baselines.

`get_family(name).train(...)` returns a `TrainedModel`; `TrainedModel.load(dir)` restores any
saved model. Importing this package (and the non-Keras families) does not import TensorFlow.
"""

from pipeline.models.base import FAMILIES, DivergedError, ModelFamily, TrainedModel, get_family

__all__ = ["FAMILIES", "DivergedError", "ModelFamily", "TrainedModel", "get_family"]
