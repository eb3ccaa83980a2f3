"""A trial's model as an MLflow artifact: the `TrainedModel` folder, and the Keras flavor for Keras models.

Completed trials log their model as one folder that is both a `TrainedModel.save` folder
(`TrainedModel.load` reads it) and, for the Keras families, an MLflow model of the Keras flavor
with a signature and an input example (`mlflow.keras.load_model` / `mlflow.pyfunc.load_model`
read `runs:/<run_id>/model`), written by MLflow's public `mlflow.keras.save_model`.

Nothing here knows a model family: a model is Keras when its `model` attribute is a
`keras.Model` (checked without importing Keras), its file is the `.keras` file its own `save`
wrote, and its `prepare` brings feature rows to the model's input layout.
"""

from __future__ import annotations

import functools
import sys
import threading
from pathlib import Path

import numpy as np

from pipeline import compat
from pipeline.models.arrays import dense
from pipeline.tracking.runs import param_values


def _keras_model(model):
    """The `keras.Model` inside a `TrainedModel` of a Keras family, else None (without importing Keras)."""
    keras = sys.modules.get("keras")
    inner = getattr(model, "model", None)
    return inner if keras is not None and isinstance(inner, keras.Model) else None


@functools.cache
def _keras_requirements() -> tuple[str, ...]:
    """Pinned requirements of a Keras-flavor model: keras (MLflow's default) and the TensorFlow backend."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    import mlflow.keras  # noqa: PLC0415

    reqs = list(mlflow.keras.get_default_pip_requirements())
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
            break
        except PackageNotFoundError:
            continue
    return tuple(reqs)


@functools.cache
def warm_up_model_logging() -> threading.Thread:
    """Start, once per process, the one-off work of the first Keras-flavor model saved (MLflow's map of installed
    packages, `compat.build_requirements_map`) in a thread, so that it runs while a trial trains; `save_trial_model`
    joins it. It imports nothing of Keras or TensorFlow (the trial's thread may be importing them).
    """
    thread = threading.Thread(target=compat.build_requirements_map, name="model-logging-warm-up", daemon=True)
    thread.start()
    return thread


def save_trial_model(model, dest: Path, input_example=None, *, keras_flavor: bool = True) -> str:
    """Save a trial's `TrainedModel` into `dest`, as an MLflow Keras-flavor model too when it is Keras.

    `dest` gets `TrainedModel.save`'s files (`meta.json`, the family's files: `TrainedModel.load`
    reads them) and, for a Keras model with `keras_flavor`, `mlflow.keras.save_model`'s files
    (`MLmodel` with the `keras` and `python_function` flavors, `data/model.keras` (a hard link to
    the family's `.keras` file: `compat.keras_model_saved_as`), a tensor signature,
    `input_example.json`, pinned requirements: no requirement inference).

    Args:
        `input_example`: a few feature rows (array or CSR) the model takes; the first row is kept.
            Without it, a zero row of the input shape stands in.

    Returns:
        `keras` when the MLflow flavor was written, else `tunebench` (the folder alone).
    """
    dest = Path(dest)
    model.save(dest)  # makes `dest`: `save_model` with an input example needs it to exist (mlflow#16183)
    km = _keras_model(model) if keras_flavor else None
    if km is None:
        return "tunebench"
    warm_up_model_logging().join()
    import mlflow.keras  # noqa: PLC0415
    from mlflow.models import ModelSignature  # noqa: PLC0415
    from mlflow.types import Schema, TensorSpec  # noqa: PLC0415

    in_shape, out_shape = tuple(km.inputs[0].shape[1:]), tuple(km.outputs[0].shape[1:])
    example = (
        np.asarray(type(model).prepare(dense(input_example[:1])), dtype=np.float32)
        if input_example is not None
        else np.zeros((1, *in_shape), dtype=np.float32)
    )
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *in_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *out_shape))]),
    )
    saved = sorted(dest.glob("*.keras"))  # the file the family's `save` just wrote
    mlflow.keras.save_model(
        compat.keras_model_saved_as(km, saved[0]) if len(saved) == 1 else km, str(dest), signature=signature,
        input_example=example, pip_requirements=list(_keras_requirements()),
        metadata={"tunebench_family": getattr(model, "family", "")},
    )  # fmt: skip
    return "keras"


# --- MLflow 3 logged models ---------------------------------------------------------------------------
# A model is logged as MLflow 3 logged models are (what `mlflow.<flavor>.log_model` does, without
# calling it: see `save_trial_model` and mlflow#16183): a logged model created for the run, linked
# as the run's output (the runs table's Models column), its files written into the model's own
# artifact location (in place for a local store), `model_id` stamped into its `MLmodel`, then READY.
# Metrics logged with `model_id` (`link_metrics`) show on the experiment's Models tab.


def create_logged_model(mlc, experiment_id: str, run_id: str, name: str, *, params: dict, model_type: str,
                        step: int = 0):  # fmt: skip
    """A PENDING logged model `name` of run `run_id` (its output at `step`); returns the `LoggedModel`."""
    from mlflow.entities import LoggedModelOutput  # noqa: PLC0415

    model = mlc.create_logged_model(experiment_id, name=name, source_run_id=run_id, model_type=model_type,
                                    params=param_values(params))  # fmt: skip
    mlc.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    return model


def stamp_mlmodel(folder: Path, model_id: str, run_id: str) -> None:
    """Make a saved model folder's `MLmodel` name its logged model and hold no path of this machine.

    Sets `model_id` / `run_id`, and keeps only the file name of a models-from-code `model_code_path`
    (MLflow records where the code was saved from; loading joins its file name to the model folder).
    No-op for a folder without `MLmodel` (a `tunebench` model).
    """
    from mlflow.models import Model  # noqa: PLC0415

    path = Path(folder) / "MLmodel"
    if not path.is_file():
        return
    mlmodel = Model.load(str(path))
    mlmodel.model_id, mlmodel.model_uuid, mlmodel.run_id = model_id, model_id, run_id
    mlmodel.artifact_path = None
    pyfunc = mlmodel.flavors.get("python_function", {})
    if pyfunc.get("model_code_path"):
        pyfunc["model_code_path"] = Path(pyfunc["model_code_path"]).name
    mlmodel.save(str(path))


def finish_logged_model(mlc, model_id: str, ok: bool) -> None:
    """Mark a logged model READY (its files are complete) or FAILED_... (they are not)."""
    from mlflow.entities import LoggedModelStatus  # noqa: PLC0415

    mlc.finalize_logged_model(model_id, LoggedModelStatus.READY if ok else LoggedModelStatus.FAILED)


def link_metrics(metrics: list, model_id: str, dataset: tuple[str, str] | None = None) -> list:
    """Copies of `metrics` (`Metric`s) linked to logged model `model_id` (and a `(name, digest)` dataset)."""
    from mlflow.entities import Metric  # noqa: PLC0415

    name, digest = dataset or (None, None)
    return [Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id, dataset_name=name, dataset_digest=digest)
            for m in metrics]  # fmt: skip
