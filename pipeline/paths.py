"""Every path the pipeline reads or writes, built in one place.

All paths are relative to the project root (the working directory of
`dvc repro` and of the CLI); `dvc.yaml` names the same folders. A file that one
stage writes and another reads is named here (`model_info`, `raw_example`, ...);
the files inside a format's own folder (`features.npz`, a model's `meta.json`)
belong to the module of that format. Reading and writing them: `pipeline.fileio`.
"""

from __future__ import annotations

import os
import re
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

LEADERBOARD_CSV = REPORTS / "leaderboard.csv"
LEADERBOARD_MD = REPORTS / "leaderboard.md"
REPORT_HTML = REPORTS / "index.html"
TEST_METRICS = ROOT / "test_metrics.json"  # each benchmark's test metric, a DVC metric committed to git (the report)

# Names of files and folders inside the stage outputs (written in a staging folder first, see `pipeline.fileio`).
MANIFEST = "manifest.json"  # data/raw/<d>/ and data/processed/<d>/: what the folder holds, with hashes
RAW_EXAMPLE = "raw_meta.json"  # data/processed/<d>/: the raw input's kind, shape and example rows (serving)
MODEL_INFO = "info.json"  # models/<b>/: the run, the logged model, the hyperparameters
SERVED_MODEL = "mlflow_model"  # models/<b>/: the MLflow pyfunc model folder
SEED_MODELS = "seeds"  # models/<b>/: every final seed's model (a `SeedEnsemble`), what evaluate scores per seed
MODEL_ARTIFACT, TRANSFORMER_ARTIFACT = "model", "transformer"  # the served model's artifacts (its `artifacts/`)

# Benchmark, dataset and round names: they become file, folder and study names (and CLI arguments, so no leading `-`).
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
ALLOW_OUTSIDE = "TUNEBENCH_ALLOW_OUTSIDE"  # set to 1: files may be written outside the project folder


def outside_project(path: Path | str, root: Path | str = ROOT) -> str | None:
    """Why `path` (a relative one taken from `root`) lies outside the project folder `root` once symbolic links
    are resolved, ending in what to do; None when it is inside, or when `TUNEBENCH_ALLOW_OUTSIDE=1`."""
    if os.environ.get(ALLOW_OUTSIDE, "") not in ("", "0"):
        return None
    top = os.path.abspath(root)
    full = os.path.abspath(os.path.join(top, path))
    real_top, real = os.path.realpath(top), os.path.realpath(full)
    if os.path.commonpath([real, real_top]) == real_top:
        return None
    how = (
        "is outside" if os.path.commonpath([full, top]) != top else f"leads through a symbolic link to {real}, outside"
    )
    return f"{how} the project folder {top}; keep it inside, or set {ALLOW_OUTSIDE}=1 to allow it"


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
            "only, at most 100, not starting with `-` (it becomes a file or folder name under the project)"
        )
    return inside_root(path, key=f"{section}.{name}")


def raw_dir(dataset: str) -> Path:
    """Verified downloaded files of one dataset."""
    return _named(DATA / "raw" / dataset, dataset, "datasets")


def fetch_log(raw: Path) -> Path:
    """The log of every fetch into the raw folder `raw` (time, source of each file), beside it.

    Outside the DVC output on purpose: the time and the machine's paths never change what DVC hashes.
    """
    return Path(raw).with_name(f"{Path(raw).name}.fetch-log.jsonl")


def processed_dir(dataset: str) -> Path:
    """Model-ready features of one dataset."""
    return _named(DATA / "processed" / dataset, dataset, "datasets")


def raw_manifest(dataset: str) -> Path:
    """The record of one dataset's verified raw files."""
    return raw_dir(dataset) / MANIFEST


def processed_manifest(dataset: str) -> Path:
    """The record of one dataset's features (shapes, parameters, file hashes)."""
    return processed_dir(dataset) / MANIFEST


def raw_example(dataset: str) -> Path:
    """The raw input description of one dataset (the served model's input example)."""
    return processed_dir(dataset) / RAW_EXAMPLE


def study_dir(benchmark: str) -> Path:
    """The Optuna journal storage of one benchmark's studies."""
    return _named(STUDIES / benchmark, benchmark, "benchmarks")


def storage_note(benchmark: str) -> Path:
    """Where one benchmark's studies live (storage kind, redacted URL, study names): the search stage's output."""
    return study_dir(benchmark) / "storage.json"


def journal_file(benchmark: str) -> Path:
    """The default Optuna storage file of one benchmark."""
    return study_dir(benchmark) / "optuna.journal"


def search_result(benchmark: str) -> Path:
    """Summary of one benchmark's search rounds (best params, ranges)."""
    return _named(RESULTS / "search" / f"{benchmark}.json", benchmark, "benchmarks")


def search_trials(benchmark: str) -> Path:
    """Every trial of one benchmark's search, a row each: the search stage's output that later stages read."""
    return _named(RESULTS / "search" / f"{benchmark}.trials.json", benchmark, "benchmarks")


def model_dir(benchmark: str) -> Path:
    """The retrained best model (an MLflow pyfunc model folder) and its run id."""
    return _named(MODELS / benchmark, benchmark, "benchmarks")


def model_info(benchmark: str) -> Path:
    """Run id, logged-model URI, hyperparameters and source trial of the retrained model."""
    return model_dir(benchmark) / MODEL_INFO


def served_model(benchmark: str) -> Path:
    """The retrained model as an MLflow pyfunc model folder (raw input in, predictions out)."""
    return model_dir(benchmark) / SERVED_MODEL


def seed_models(benchmark: str) -> Path:
    """Every final seed's model of a benchmark (`SeedEnsemble` folder)."""
    return model_dir(benchmark) / SEED_MODELS


def trained_model(benchmark: str) -> Path:
    """The trained model inside the served model (`TrainedModel.load` reads it)."""
    return served_model(benchmark) / "artifacts" / MODEL_ARTIFACT


def metrics_file(benchmark: str) -> Path:
    """The numbers people compare across experiments (`dvc metrics`, `dvc exp show`): committed to git."""
    return _named(METRICS / f"{benchmark}.json", benchmark, "benchmarks")


def accounting_file(benchmark: str) -> Path:
    """What the search cost, in total and per round (`search_summary.accounting`): not DVC metrics."""
    return _named(RESULTS / "accounting" / f"{benchmark}.json", benchmark, "benchmarks")


def test_predictions(benchmark: str) -> Path:
    """The evaluated model's test predictions with the labels (npz), what promotion's paired test compares."""
    return _named(RESULTS / "evaluation" / f"{benchmark}.test_predictions.npz", benchmark, "benchmarks")


def evaluation_file(benchmark: str) -> Path:
    """What the metrics mean and which model they score: metric, direction, run id (promote and report read it)."""
    return _named(RESULTS / "evaluation" / f"{benchmark}.json", benchmark, "benchmarks")


def plots_dir(benchmark: str) -> Path:
    """Plot data and images of one benchmark's evaluation."""
    return _named(PLOTS / benchmark, benchmark, "benchmarks")


def promotion_file(benchmark: str) -> Path:
    """The promotion decision of one benchmark."""
    return _named(PROMOTIONS / f"{benchmark}.json", benchmark, "benchmarks")


# (folders under the project root, sub-command and option) of each stage's outputs, for `producer`
_PRODUCERS = (
    (("data", "raw"), "fetch --dataset"), (("data", "processed"), "preprocess --dataset"),
    (("results", "search"), "search --benchmark"), (("results", "evaluation"), "evaluate --benchmark"),
    (("results", "accounting"), "evaluate --benchmark"),
    (("studies",), "search --benchmark"),
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
