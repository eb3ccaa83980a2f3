"""Every path the pipeline reads or writes, built in one place.

All paths are relative to the project root (the working directory of
`dvc repro` and of the CLI); `dvc.yaml` names the same folders.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

ROOT = Path(".")
DATA = ROOT / "data"
STUDIES = ROOT / "studies"
RESULTS = ROOT / "results"
MODELS = ROOT / "models"
METRICS = ROOT / "metrics"
PLOTS = ROOT / "plots"
PROMOTIONS = ROOT / "promotions"
REPORTS = ROOT / "reports"
MLARTIFACTS = ROOT / "mlartifacts"


def raw_dir(dataset: str) -> Path:
    """Verified downloaded files of one dataset."""
    return DATA / "raw" / dataset


def processed_dir(dataset: str) -> Path:
    """Model-ready features of one dataset."""
    return DATA / "processed" / dataset


def study_dir(benchmark: str) -> Path:
    """The Optuna journal storage of one benchmark's studies."""
    return STUDIES / benchmark


def journal_file(benchmark: str) -> Path:
    """The default Optuna storage file of one benchmark."""
    return study_dir(benchmark) / "optuna.journal"


def search_result(benchmark: str) -> Path:
    """Summary of one benchmark's search rounds (best params, ranges)."""
    return RESULTS / "search" / f"{benchmark}.json"


def model_dir(benchmark: str) -> Path:
    """The retrained best model (an MLflow pyfunc model folder) and its run id."""
    return MODELS / benchmark


def metrics_file(benchmark: str) -> Path:
    """Test metrics of one benchmark, read by `dvc metrics show`."""
    return METRICS / f"{benchmark}.json"


def plots_dir(benchmark: str) -> Path:
    """Plot data and images of one benchmark's evaluation."""
    return PLOTS / benchmark


def promotion_file(benchmark: str) -> Path:
    """The promotion decision of one benchmark."""
    return PROMOTIONS / f"{benchmark}.json"


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to `path` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """Read a JSON file written by an earlier stage, with a clear error if it is missing."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing; run the stage that writes it first (dvc repro)") from None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, or `missing` if it does not exist."""
    import hashlib  # noqa: PLC0415

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"
