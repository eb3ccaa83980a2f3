"""The MLflow pyfunc model that carries its preprocessing: raw input in, predictions out.

A served model receives what a user has, not the pipeline's matrices: review
texts (`text` column) or token-index sequences (`tokens` column) for text
datasets, feature rows under the dataset's own column names for tables (Boston's
`CRIM` ... `LSTAT`), flattened pixels for images. It answers with a `label` and
its `probability` for classification, the predicted value for regression. The
fitted `Transformer` (saved without pickle) and the trained model (saved without
pickle) travel as artifacts of the MLflow model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import paths


def raw_example(raw, n: int = 3) -> dict[str, Any]:
    """A JSON-ready description of the raw input and `n` example rows (the signature's input example).

    Besides `kind`, `shape` and `rows`: the `task`, the class names (`labels`, classification) and the
    column names of tabular data (`columns`, when the dataset names its features).
    """
    x = raw.x_test if raw.x_test is not None else raw.x_train
    rows = [x[i] for i in range(min(n, len(x)))]
    out: dict[str, Any] = {"kind": raw.kind, "task": raw.task}
    if raw.task != "regression" and raw.n_classes:
        names = raw.meta.get("label_names")
        out["labels"] = [str(v) for v in names] if names and len(names) == raw.n_classes else None
    if raw.kind == "text":
        return out | {"shape": None, "rows": [str(r) for r in rows]}
    if raw.kind == "sequences":
        return out | {"shape": None, "rows": [[int(v) for v in r] for r in rows]}
    arr = np.asarray(rows)
    names = raw.meta.get("feature_names")
    if raw.kind == "tabular" and names and len(names) == int(np.prod(arr.shape[1:])):
        out["columns"] = [str(v) for v in names]
    return out | {"shape": list(arr.shape[1:]), "rows": arr.reshape(len(rows), -1).tolist()}


def _columns(meta: dict, width: int) -> list[str]:
    """The feature columns a client sends: the dataset's names, else `x0` ... (models saved before names)."""
    return meta.get("columns") or [f"x{i}" for i in range(width)]


def example_frame(meta: dict) -> pd.DataFrame:
    """The input example as the DataFrame a client sends."""
    if meta["kind"] == "text":
        return pd.DataFrame({"text": meta["rows"]})
    if meta["kind"] == "sequences":
        return pd.DataFrame({"tokens": [" ".join(map(str, r)) for r in meta["rows"]]})
    arr = np.asarray(meta["rows"], dtype=np.float64)
    return pd.DataFrame(arr, columns=_columns(meta, arr.shape[1]))


def to_raw(frame: Any, meta: dict):
    """Turn a client's DataFrame (or array / list) back into the raw form the transformer expects.

    Tabular columns are taken by name (in any order) when the model knows its columns; their values are
    checked by the transformer (`check_finite`: NaN, null, inf and values beyond float32 are refused).

    Raises:
        ValueError: no rows, a named feature column missing (the message lists them), or a text or token
            value that is missing, empty or of the wrong type (the message names the column and row, from 0).
    """
    kind = meta["kind"]
    if len(frame) == 0:
        raise ValueError("no input rows: send at least one")
    if kind in ("text", "sequences"):
        name = "text" if kind == "text" else "tokens"
        col = list(frame[name] if isinstance(frame, pd.DataFrame) else frame)
        values = []
        for i, v in enumerate(col):
            try:
                values.append(_text(v) if kind == "text" else _tokens(v))
            except ValueError as exc:
                raise ValueError(f"column {name!r}, row {i}: {exc}") from None
        if kind == "text":
            return values
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    if isinstance(frame, pd.DataFrame) and meta.get("columns"):
        missing = [c for c in meta["columns"] if c not in frame.columns]
        if missing:
            raise ValueError(f"missing feature column(s) {missing}; send {meta['columns']}")
        frame = frame[meta["columns"]]
    arr = np.asarray(frame.to_numpy() if isinstance(frame, pd.DataFrame) else frame, dtype=np.float64)
    return arr.reshape(len(arr), *meta["shape"]) if meta["shape"] else arr


def _text(value) -> str:
    """A review text as sent: a non-empty string."""
    if not isinstance(value, str):
        raise ValueError(f"{_shown(value)} is not a text; send a non-empty string")
    if not value.strip():
        raise ValueError("empty text; send a non-empty string")
    return value


def _tokens(value) -> np.ndarray:
    """A token-index sequence as sent: integers separated by spaces, or a list of integers; not empty."""
    try:
        seq = np.array(value.split() if isinstance(value, str) else value, dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"{_shown(value)} is not a sequence of token indices") from None
    if seq.ndim != 1 or not len(seq):
        raise ValueError(f"{_shown(value)} is not a non-empty sequence of token indices (e.g. '1 14 22')")
    return seq


def _shown(value) -> str:
    """A sent value for a message: `null (missing)` for None and NaN, else its type and a short repr."""
    if value is None or (isinstance(value, float) and value != value):
        return "null (missing)"
    return f"{type(value).__name__} {repr(value)[:40]}"


def to_answer(pred: np.ndarray, meta: dict):
    """The model's output as a client reads it: for classification a DataFrame of `label` (the class
    name, or its index when the dataset names none) and `probability` (of that label); for regression
    (and models saved before the task was recorded) the predicted values."""
    pred = np.asarray(pred)
    if meta.get("task") not in ("binary", "multiclass"):
        return pred
    if pred.ndim == 2 and pred.shape[1] == 1:  # binary as a column: P(class 1)
        pred = pred[:, 0]
    probs = np.stack([1.0 - pred, pred], axis=1) if pred.ndim == 1 else pred
    index = probs.argmax(axis=1)
    names = meta.get("labels")
    labels = [names[i] for i in index] if names else index.astype(np.int64)
    return pd.DataFrame({"label": labels, "probability": probs[np.arange(len(index)), index].astype(np.float64)})


def save_pyfunc(dest: Path, *, model, transformer, meta: dict) -> None:
    """Write a self-contained MLflow pyfunc model folder at `dest`.

    Args:
        `model`: the `TrainedModel`; `transformer`: the fitted `Transformer` of its features;
        `meta`: the raw input description (`raw_example`), the signature's input example.
    """
    import mlflow.pyfunc  # noqa: PLC0415
    from mlflow.models import ModelSignature  # noqa: PLC0415
    from mlflow.types.schema import AnyType, ColSpec, Schema  # noqa: PLC0415

    # A text column typed `string` would have MLflow turn null into 'None' and 42 into '42' before `to_raw` sees them.
    signature = ModelSignature(Schema([ColSpec(AnyType(), "text")])) if meta["kind"] == "text" else None
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.artifacts-") as work:
        model_dir, transformer_dir = Path(work) / paths.MODEL_ARTIFACT, Path(work) / paths.TRANSFORMER_ARTIFACT
        model.save(model_dir)
        transformer.save(transformer_dir)
        meta_file = Path(work) / paths.RAW_EXAMPLE
        meta_file.write_text(json.dumps(meta))
        mlflow.pyfunc.save_model(
            str(dest),
            python_model=str(Path(__file__).with_name("serving_entry.py")),  # models from code: no pickle
            artifacts={"model": str(model_dir), "transformer": str(transformer_dir), "raw_meta": str(meta_file)},
            input_example=example_frame(meta),
            signature=signature,
            pip_requirements=_requirements(),
            code_paths=[str(Path(__file__).parent)],
        )


def _requirements() -> list[str]:
    from importlib.metadata import version  # noqa: PLC0415

    pkgs = ("mlflow", "numpy", "pandas", "scipy", "scikit-learn", "tensorflow-cpu", "keras")
    out = []
    for p in pkgs:
        try:
            out.append(f"{p}=={version(p)}")
        except Exception:  # noqa: BLE001 - optional package not installed
            continue
    return out
