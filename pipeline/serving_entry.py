"""MLflow "models from code" entry point: the served model, defined without pickling anything.

Raw input -> the fitted `Transformer` -> the trained model -> predictions; see `pipeline.serving`.
"""

import json
import warnings
from pathlib import Path

import mlflow
import numpy as np

from pipeline.serving import to_raw

# MLflow nags about type hints on `predict`; inputs are checked by `to_raw` instead.
warnings.filterwarnings("ignore", message="Add type hints to the `predict` method")


class TunebenchModel(mlflow.pyfunc.PythonModel):
    """Raw input -> fitted transformer -> trained model -> predictions."""

    def load_context(self, context) -> None:
        from pipeline.features import Transformer  # noqa: PLC0415
        from pipeline.models import TrainedModel  # noqa: PLC0415

        self.meta = json.loads(Path(context.artifacts["raw_meta"]).read_text())
        self.transformer = Transformer.load(Path(context.artifacts["transformer"]))
        self.model = TrainedModel.load(Path(context.artifacts["model"]))

    def predict(self, context, model_input, params=None):
        """Predict from raw input: probabilities for classification, values for regression."""
        features = self.transformer.transform_raw(to_raw(model_input, self.meta))
        return np.asarray(self.model.predict(features))


mlflow.models.set_model(TunebenchModel())
