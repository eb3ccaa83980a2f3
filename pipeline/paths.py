"""Every path the pipeline reads or writes, built in one place.

All paths are relative to the project root (the working directory of
`dvc repro` and of the CLI); `dvc.yaml` names the same folders.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from pipeline.errors import ConfigError

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

_NAME = re.compile(r"[A-Za-z0-9_-]+")


def inside_root(path: Path, *, key: str = "path") -> Path:
    """Return `path` when it stays under the project root (compared without following links).

    Raises:
        ConfigError: naming `key` (the params.yaml key it came from) when `path` leaves the root.
    """
    root = os.path.abspath(ROOT)
    if os.path.commonpath([os.path.abspath(path), root]) != root:
        raise ConfigError(
            f"params.yaml: {key}: bad value {str(path)!r}: leaves the project folder {root}; "
            "use a name of letters, digits, `_` and `-`"
        )
    return Path(path)


def _named(path: Path, name: str, section: str) -> Path:
    """`path` built from `name` (a dataset or benchmark key), after checking both (defence in depth)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"params.yaml: {section}.{name}: bad value {name!r}: a name: letters, digits, `_` and `-` "
            "only (it becomes a file or folder name under the project)"
        )
    return inside_root(path, key=f"{section}.{name}")


def raw_dir(dataset: str) -> Path:
    """Verified downloaded files of one dataset."""
    return _named(DATA / "raw" / dataset, dataset, "datasets")


def processed_dir(dataset: str) -> Path:
    """Model-ready features of one dataset."""
    return _named(DATA / "processed" / dataset, dataset, "datasets")


def study_dir(benchmark: str) -> Path:
    """The Optuna journal storage of one benchmark's studies."""
    return _named(STUDIES / benchmark, benchmark, "benchmarks")


def journal_file(benchmark: str) -> Path:
    """The default Optuna storage file of one benchmark."""
    return study_dir(benchmark) / "optuna.journal"


def search_result(benchmark: str) -> Path:
    """Summary of one benchmark's search rounds (best params, ranges)."""
    return _named(RESULTS / "search" / f"{benchmark}.json", benchmark, "benchmarks")


def model_dir(benchmark: str) -> Path:
    """The retrained best model (an MLflow pyfunc model folder) and its run id."""
    return _named(MODELS / benchmark, benchmark, "benchmarks")


def metrics_file(benchmark: str) -> Path:
    """Test metrics of one benchmark, read by `dvc metrics show`."""
    return _named(METRICS / f"{benchmark}.json", benchmark, "benchmarks")


def plots_dir(benchmark: str) -> Path:
    """Plot data and images of one benchmark's evaluation."""
    return _named(PLOTS / benchmark, benchmark, "benchmarks")


def promotion_file(benchmark: str) -> Path:
    """The promotion decision of one benchmark."""
    return _named(PROMOTIONS / f"{benchmark}.json", benchmark, "benchmarks")


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


# (folders under the project root, sub-command and option) of each stage's outputs, for `producer`
_PRODUCERS = (
    (("data", "raw"), "fetch --dataset"), (("data", "processed"), "preprocess --dataset"),
    (("results", "search"), "search --benchmark"), (("studies",), "search --benchmark"),
    (("models",), "train_best --benchmark"), (("metrics",), "evaluate --benchmark"),
    (("plots",), "evaluate --benchmark"), (("promotions",), "promote --benchmark"),
)  # fmt: skip


def producer(path: Path) -> str:
    """The command that (re)writes `path`: `tunebench preprocess --dataset digits`, ..., else `dvc repro`."""
    parts = Path(path).parts
    for prefix, command in _PRODUCERS:
        n = len(prefix)
        for i in range(len(parts) - n):
            if parts[i : i + n] == prefix:
                name = parts[i + n]
                name = name.removesuffix(".json") if i + n == len(parts) - 1 else name
                return f"tunebench {command} {name}"
    return "dvc repro"


def read_json(path: Path) -> dict:
    """Read a JSON file written by an earlier stage.

    Raises:
        MissingInputError: the file is missing or not valid JSON; the message names the command that rewrites it.
    """
    from pipeline.errors import MissingInputError  # noqa: PLC0415

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingInputError(f"{path} is missing: run `{producer(path)}` first (or `dvc repro`)") from None
    except ValueError as exc:  # not UTF-8, or not JSON
        raise MissingInputError(f"{path} is corrupt (not valid JSON: {exc}); rerun `{producer(path)}`") from None
    if not isinstance(data, dict):
        raise MissingInputError(f"{path} is corrupt (not a JSON object); rerun `{producer(path)}`")
    return data


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, or `missing` if it does not exist."""
    import hashlib  # noqa: PLC0415

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"
