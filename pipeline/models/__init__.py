"""Model families: Keras MLP and CNN, the from-scratch NumPy network, linear and majority baselines.

`get_family(name).train(...)` returns a `TrainedModel`; `TrainedModel.load(dir)` restores any
saved model. Importing this package (and the non-Keras families) does not import TensorFlow;
importing it alone imports only `pipeline.models.hparams` (the rest loads on first use).
"""

from pipeline.models.hparams import FAMILIES

_FROM_BASE = ("DivergedError", "ModelFamily", "TrainedModel", "get_family")


def __getattr__(name: str):
    if name in _FROM_BASE:
        from pipeline.models import base  # noqa: PLC0415 - NumPy and SciPy only when needed

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FAMILIES", "DivergedError", "ModelFamily", "TrainedModel", "get_family"]
