"""MLflow "models from code" entry point: defines the served model without pickling anything."""

import mlflow

from pipeline.serving import TunebenchModel

mlflow.models.set_model(TunebenchModel())
