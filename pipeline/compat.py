"""Every use of a private Optuna or MLflow API, in one place.

The rest of the package calls only the functions here when it needs something the public
APIs do not offer. Each function names the versions it was checked against;
`tests/test_compat.py` fails when those internals change, so an upgrade shows at once
what to revisit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# --- Optuna (checked against optuna 5.x) -------------------------------------------------------

# --- MLflow (checked against mlflow 3.17.2) ----------------------------------------------------


def sqlalchemy_engine(mlc):
    """The SQLAlchemy engine of an `MlflowClient`'s tracking store, or None for a store without one (REST, files).

    Private: `MlflowClient._tracking_client.store.engine` (mlflow 3.17.2); no public API hands it out.
    """
    store = getattr(getattr(mlc, "_tracking_client", None), "store", None)
    return getattr(store, "engine", None)


class _LinkedKerasFile:
    """Stands in for a `keras.Model` given to `mlflow.keras.save_model`; `save(path)` links a file saved before."""

    def __init__(self, model, saved: Path):
        self._model, self._saved = model, Path(saved)

    def save(self, filepath, **kwargs) -> None:
        """Hard-link (or copy, across file systems) the `.keras` file saved before to `filepath`."""
        try:
            os.link(self._saved, filepath)
        except OSError:
            shutil.copyfile(self._saved, filepath)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def keras_model_saved_as(model, saved: Path):
    """What to give `mlflow.keras.save_model` for Keras `model` whose `.keras` file `saved` was just written.

    `save_model` of mlflow 3.17.2 (given a signature, `save_exported_model=False`) uses the model
    only as `model.save(<dest>/data/model.keras)`, an implementation detail: the object returned
    hard-links `saved` there instead of serializing the model a second time; any other attribute
    comes from `model`. Passing the model itself (the public way) cost about 60 ms more a trial for
    the default benchmarks' models (about 4 % of a coarse-round trial, against a 5 % budget for all
    of tracking: `benchmarks/tracking_overhead.py`). MLflow has no public way to log a `.keras` file
    already written (`tests/test_compat.py` fails if `save_model`'s parameters change).
    """
    return _LinkedKerasFile(model, saved)
