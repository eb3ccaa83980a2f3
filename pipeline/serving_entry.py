"""MLflow "models from code" entry point: the served model, defined without pickling anything.

Raw input -> the fitted `Transformer` -> the trained model -> predictions; see `pipeline.serving`.
"""

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipeline.serving import to_answer, to_raw


class BadInput(MlflowException):
    """Input the model cannot use: the scoring server answers 400 with this one line as the JSON `message`.

    The server puts the whole input batch before the message of a model's `MlflowException`
    (`Failed to predict data '<DataFrame>'`); this message stays the one line that names the column and
    what is wrong (and, being an `MlflowException`, it carries no stack trace).
    """

    def __init__(self, line: str):
        self._line = line
        super().__init__(line, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._line

    @message.setter
    def message(self, _rewritten: str) -> None:
        pass


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
        """Predict from raw input: `label` and `probability` for classification, values for regression.

        Raises:
            BadInput: no rows, a missing column, or a value that is missing, empty, of the wrong type,
                NaN, infinite or beyond float32 (a 400 answer naming the column).
        """
        try:
            features = self.transformer.transform_raw(to_raw(model_input, self.meta))
        except (TypeError, ValueError) as exc:
            raise BadInput(str(exc)) from None
        return to_answer(self.model.predict(features), self.meta)


mlflow.models.set_model(TunebenchModel())
