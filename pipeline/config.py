"""The `params.yaml` schema: the single, validated source of configuration.

Every stage reads its settings through `load_params`; an unknown key, a wrong
type or an impossible value stops the run with exit code 2 and one message
naming the key path, the bad value and what is allowed, before anything is
written.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError

MODEL_FAMILIES = ("keras_mlp", "keras_cnn", "numpy_mlp", "linear", "majority")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamRange(_Strict):
    """One search dimension: a numeric range (optionally log-uniform or integer) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either `choices` or `low`/`high`, not both")
            if not self.choices:
                raise ValueError("`choices` must not be empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both `low` and `high` (or a `choices` list)")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low:g}; use e.g. 1e-7")
        return self

    @property
    def is_numeric(self) -> bool:
        """True for a `low`/`high` range, False for `choices`."""
        return self.choices is None


class CustomSource(_Strict):
    """A dataset declared by the user: where it is, its hash and its format."""

    url: str | None = None
    path: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["keras-npz", "idx", "csv"]
    task: Literal["binary", "multiclass", "regression"]
    target: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> CustomSource:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of `url` or `path`")
        if self.format == "csv" and not self.target:
            raise ValueError("a csv source needs `target`, the label column")
        return self


class PreprocessConfig(_Strict):
    """How raw data becomes features (see `pipeline.features`)."""

    kind: Literal["multi_hot", "standardize", "pca", "images"]
    num_words: int = Field(10000, gt=3)
    n_components: float | None = Field(None, gt=0)
    whiten: bool = False
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    kfold: int = Field(0, ge=0)
    seed: int = 42
    stratify: bool | None = None  # None: stratified for classification
    max_rows: int | None = Field(None, gt=10)
    scale: bool = True
    mean_subtraction: bool = False
    channels_last: bool = True

    @model_validator(mode="after")
    def _check(self) -> PreprocessConfig:
        if self.kfold == 1:
            raise ValueError("kfold must be 0 (a validation split) or at least 2")
        if self.kind == "pca" and self.n_components is None:
            raise ValueError("pca needs `n_components`: a count (e.g. 20) or a variance fraction (e.g. 0.95)")
        return self


class DatasetConfig(_Strict):
    """One dataset: its source (`builtin` from the catalog, or a custom file) and preprocessing."""

    source: Literal["builtin"] | CustomSource = "builtin"
    options: dict[str, Any] = {}
    preprocess: PreprocessConfig


class RoundConfig(_Strict):
    """One coarse-to-fine round: its own Optuna study, budget, epochs and pruner."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    n_trials: int = Field(gt=0)
    timeout: float | None = Field(None, gt=0)
    epochs: int = Field(gt=0)
    pruner: Literal[PRUNERS] = "median"  # type: ignore[valid-type]
    sampler: Literal[SAMPLERS] | None = None  # type: ignore[valid-type]
    top_quantile: float = Field(0.25, gt=0, le=1)
    pad: float = Field(0.1, ge=0)
    widen_at_edge: bool = True
    enqueue_best: int = Field(1, ge=0)


class BenchmarkConfig(_Strict):
    """A dataset searched with one model family."""

    dataset: str
    model: Literal[MODEL_FAMILIES]  # type: ignore[valid-type]
    hparams: dict[str, Any] = {}
    space: dict[str, ParamRange] = {}
    rounds: list[RoundConfig] = Field(min_length=1)
    final_epochs: int | None = Field(None, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> BenchmarkConfig:
        names = [r.name for r in self.rounds]
        if len(set(names)) != len(names):
            raise ValueError(f"round names must be unique, got {names}")
        clash = sorted(set(self.space) & set(self.hparams))
        if clash:
            raise ValueError(f"{clash} are both fixed in `hparams` and searched in `space`; keep one")
        return self


class SearchConfig(_Strict):
    """Settings shared by every study."""

    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    seed: int = 0
    workers: int = Field(1, ge=1)
    storage: str | None = None


class TrackingConfig(_Strict):
    """Where MLflow writes; `MLFLOW_TRACKING_URI` overrides `uri`."""

    uri: str = "sqlite:///mlflow.db"
    log_models: bool = True


class PromoteConfig(_Strict):
    """The promotion rule of the model registry."""

    min_improvement: float = Field(0.0, ge=0)


class Params(_Strict):
    """The whole `params.yaml`."""

    profile: str = "default"
    mirrors: list[str] = []
    tracking: TrackingConfig = TrackingConfig()
    search: SearchConfig = SearchConfig()
    promote: PromoteConfig = PromoteConfig()
    datasets: dict[str, DatasetConfig] = Field(min_length=1)
    benchmarks: dict[str, BenchmarkConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_check(self) -> Params:
        from pipeline.datasets import names as builtin_names  # noqa: PLC0415 - light module

        known = set(builtin_names())
        for name, ds in self.datasets.items():
            if ds.source == "builtin" and name not in known:
                raise _KeyError(
                    ("datasets", name),
                    name,
                    f"unknown dataset; built-in datasets are {', '.join(sorted(known))}, "
                    "or declare `source: {url|path, sha256, format, task}`",
                )
        for key, bench in self.benchmarks.items():
            if bench.dataset not in self.datasets:
                raise _KeyError(
                    ("benchmarks", key, "dataset"),
                    bench.dataset,
                    f"not a dataset of this file; add it under `datasets` (have: {', '.join(self.datasets)})",
                )
        return self

    def benchmark(self, key: str) -> BenchmarkConfig:
        """Return one benchmark or raise `ConfigError` listing the known ones."""
        if key not in self.benchmarks:
            raise ConfigError(f"params.yaml: unknown benchmark {key!r}; known: {', '.join(self.benchmarks)}")
        return self.benchmarks[key]

    def dataset(self, key: str) -> DatasetConfig:
        """Return one dataset or raise `ConfigError` listing the known ones."""
        if key not in self.datasets:
            raise ConfigError(f"params.yaml: unknown dataset {key!r}; known: {', '.join(self.datasets)}")
        return self.datasets[key]

    def tracking_uri(self) -> str:
        """The MLflow tracking URI: `MLFLOW_TRACKING_URI` if set, else `tracking.uri`."""
        return os.environ.get("MLFLOW_TRACKING_URI") or self.tracking.uri

    def storage_url(self) -> str | None:
        """The Optuna storage URL: `TUNEBENCH_STORAGE` if set, else `search.storage` (None: journal file)."""
        return os.environ.get("TUNEBENCH_STORAGE") or self.search.storage


class _KeyError(ValueError):
    """A cross-field error that knows its key path."""

    def __init__(self, loc: tuple, value: Any, msg: str):
        super().__init__(msg)
        self.loc, self.value, self.msg = loc, value, msg


def _format_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _KeyError):
            loc, value, msg = ctx_err.loc, ctx_err.value, ctx_err.msg
        else:
            loc, value, msg = e["loc"], e.get("input"), e["msg"]
            if e["type"] == "extra_forbidden":
                msg = "unknown key (a typo?); remove it or check the spelling in README's params reference"
            msg = msg.removeprefix("Value error, ")
        key = ".".join(str(p) for p in loc if not str(p).startswith(("literal[", "function-"))) or "<top>"
        shown = value if not isinstance(value, dict) else "{...}"
        lines.append(f"{path}: {key}: bad value {shown!r}: {msg}")
    return "\n".join(lines)


def parse_params(data: Any, path: Path | str = "params.yaml") -> Params:
    """Validate already-parsed YAML data.

    Raises:
        ConfigError: naming the key path, the bad value and what is allowed.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(Path(path), err)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate `params.yaml`.

    Raises:
        ConfigError: the file is missing, not YAML, or fails the schema.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the project root or pass --params") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_params(data, path)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (used to name studies)."""
    from pydantic_core import to_jsonable_python  # noqa: PLC0415

    blob = json.dumps(to_jsonable_python(list(parts)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]
