"""MLflow "models from code" entry point: the served model, defined without pickling anything.

Raw input -> the fitted `Transformer` -> the trained model -> predictions; see `pipeline.serving`.
"""

import json
from pathlib import Path

import mlflow
import pandas as pd

from pipeline.serving import to_answer, to_raw


class TunebenchModel(mlflow.pyfunc.PythonModel):
    """Raw input -> fitted transformer -> trained model -> predictions."""

    def load_context(self, context) -> None:
        from pipeline.features import Transformer  # noqa: PLC0415
        from pipeline.models import TrainedModel  # noqa: PLC0415

        self.meta = json.loads(Path(context.artifacts["raw_meta"]).read_text())
        self.transformer = Transformer.load(Path(context.artifacts["transformer"]))
        self.model = TrainedModel.load(Path(context.artifacts["model"]))

    # The DataFrame type hint: MLflow checks the input against the signature inferred from the input
    # example (a DataFrame hint asks for no type-hint schema), and warns about no missing hint.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        """Predict from raw input: `label` and `probability` for classification, values for regression."""
        features = self.transformer.transform_raw(to_raw(model_input, self.meta))
        return to_answer(self.model.predict(features), self.meta)


mlflow.models.set_model(TunebenchModel())
