"""The MLflow pyfunc model that carries its preprocessing: raw input in, predictions out.

A served model receives what a user has, not the pipeline's matrices: review
texts (`text` column) or token-index sequences (`tokens` column) for text
datasets, feature rows for tables, flattened pixels for images. The fitted
`Transformer` (saved without pickle) and the trained model (saved without
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
    """A JSON-ready description of the raw input and `n` example rows (the signature's input example)."""
    x = raw.x_test if raw.x_test is not None else raw.x_train
    rows = [x[i] for i in range(min(n, len(x)))]
    if raw.kind == "text":
        return {"kind": "text", "shape": None, "rows": [str(r) for r in rows]}
    if raw.kind == "sequences":
        return {"kind": "sequences", "shape": None, "rows": [[int(v) for v in r] for r in rows]}
    arr = np.asarray(rows)
    return {"kind": raw.kind, "shape": list(arr.shape[1:]), "rows": arr.reshape(len(rows), -1).tolist()}


def example_frame(meta: dict) -> pd.DataFrame:
    """The input example as the DataFrame a client sends."""
    if meta["kind"] == "text":
        return pd.DataFrame({"text": meta["rows"]})
    if meta["kind"] == "sequences":
        return pd.DataFrame({"tokens": [" ".join(map(str, r)) for r in meta["rows"]]})
    arr = np.asarray(meta["rows"], dtype=np.float64)
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def to_raw(frame: Any, meta: dict):
    """Turn a client's DataFrame (or array / list) back into the raw form the transformer expects."""
    kind = meta["kind"]
    if kind == "text":
        col = frame["text"] if isinstance(frame, pd.DataFrame) else frame
        return [str(v) for v in list(col)]
    if kind == "sequences":
        col = frame["tokens"] if isinstance(frame, pd.DataFrame) else frame
        seqs = [np.array(str(v).split() if isinstance(v, str) else v, dtype=np.int64) for v in list(col)]
        out = np.empty(len(seqs), dtype=object)
        out[:] = seqs
        return out
    arr = np.asarray(frame.to_numpy() if isinstance(frame, pd.DataFrame) else frame, dtype=np.float64)
    return arr.reshape(len(arr), *meta["shape"]) if meta["shape"] else arr


def save_pyfunc(dest: Path, *, model, transformer, meta: dict) -> None:
    """Write a self-contained MLflow pyfunc model folder at `dest`.

    Args:
        `model`: the `TrainedModel`; `transformer`: the fitted `Transformer` of its features;
        `meta`: the raw input description (`raw_example`), the signature's input example.
    """
    import mlflow.pyfunc  # noqa: PLC0415

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
