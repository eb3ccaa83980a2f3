"""The whole `params.yaml` (`Params`) and its small sections: tracking, search, promote."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline.config.base import Name, Problems, Seed, Strict
from pipeline.config.benchmarks import SAMPLERS, BenchmarkConfig, model_name, task_problems
from pipeline.config.datasets import DatasetConfig
from pipeline.config.urls import local_path, secret_in, storage_url_problem, tracking_uri_problem
from pipeline.errors import ConfigError
from pipeline.paths import outside_project
from pipeline.redaction import redact


def _url(value: str, problem: Callable[[str], str | None], info: ValidationInfo, instead: str) -> str:
    """`value` when `problem` finds nothing wrong, it holds no secret (else `instead` says where to put it) and
    the file or folder it names is in the project folder (`root` of the validation context, when given)."""
    if why := problem(value):
        raise ValueError(why)
    if where := secret_in(value):
        raise ValueError(f"it holds a secret ({where}), which must not be written in params.yaml (it would reach "
                         f"dvc.lock and git); {instead}")  # fmt: skip
    root, path = (info.context or {}).get("root"), local_path(value)
    if root is not None and path is not None and (why := outside_project(path, root)):
        raise ValueError(f"{path!r} {why}")
    return value


class SearchConfig(Strict):
    """Settings shared by every study."""

    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    seed: Seed = 0
    workers: Literal["auto"] | int = "auto"  # auto: `search.execution.concurrency` chooses from the machine and model
    storage: str | None = None
    retry_s: float = Field(120.0, ge=0, le=86400)  # seconds an outage of the database or MLflow server is ridden out

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, v):
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("expected auto or a whole number of worker processes (e.g. 2)")
        if v < 1:
            raise ValueError("must be auto or greater than or equal to 1")
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        return _url(v, storage_url_problem, info, "give the password through PGPASSWORD or ~/.pgpass (PostgreSQL), "
                    "or set search.storage: null and export TUNEBENCH_STORAGE=<the URL> instead")  # fmt: skip


class TrackingConfig(Strict):
    """Where MLflow writes; `MLFLOW_TRACKING_URI` overrides `uri`. `log_models`: the trial models logged: true,
    those of the trials that beat their round's best so far (`search.objective`); `all`, every completed trial's."""

    uri: str = "sqlite:///mlflow.db"
    log_models: bool | Literal["all"] = True

    @field_validator("log_models", mode="before")
    @classmethod
    def _log_models(cls, v):
        if isinstance(v, bool) or v == "all":
            return v
        raise ValueError("expected true (the models of each round's best trials), false or all (every trial's)")

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str, info: ValidationInfo) -> str:
        return _url(v, tracking_uri_problem, info, "give it through MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN (an MLflow server), PGPASSWORD or ~/.pgpass "
                    "(PostgreSQL), or export MLFLOW_TRACKING_URI=<the URI> instead")  # fmt: skip


class PromoteConfig(Strict):
    """The promotion rule of the model registry."""

    min_improvement: float = Field(0.0, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)  # the paired test's significance level a gain must reach


def _task(name: str, ds: DatasetConfig, builtin: set[str]) -> str | None:
    """The task of dataset `name` (its custom source's, or the catalog's), None when unknown."""
    if ds.source != "builtin":
        return ds.source.task
    if name in builtin:
        from pipeline.datasets import CATALOG  # noqa: PLC0415 - light module

        return CATALOG[name].task
    return None


def _option_problems(name: str, ds: DatasetConfig, builtin: set[str]) -> list:
    """The `options` of dataset `name` that its reader does not take (whichever of its file sets is fetched)."""
    from pipeline.datasets.catalog import CATALOG, FORMAT_OPTIONS  # noqa: PLC0415 - light module

    if ds.source != "builtin":
        accepted, what = FORMAT_OPTIONS[ds.source.format], f"a custom {ds.source.format} dataset"
    elif (ds.catalog or name) in builtin:
        accepted, what = CATALOG[ds.catalog or name].options(), f"dataset {ds.catalog or name}"
    else:
        return []
    if ds.options and not accepted:
        return [(("datasets", name, "options"), ds.options, f"{what} takes no options; remove `options`")]
    return [(("datasets", name, "options", key), value, f"{what} takes no option `{key}`; it takes "
             f"{', '.join(accepted)}") for key, value in ds.options.items() if key not in accepted]  # fmt: skip


def _entry(section: dict, name: str, key: str):
    """`section[key]` (section `name` of params.yaml), or a `ConfigError` listing the known keys."""
    if key not in section:
        raise ConfigError(f"params.yaml: {name}: bad value {key!r}: unknown {name[:-1]}; known: {', '.join(section)}")
    return section[key]


def _from_env(var: str, problem: Callable[[str], str | None], default: str | None) -> str | None:
    """`$var` if set (a `ConfigError` if `problem` finds one in it), else `default`."""
    env = os.environ.get(var)
    if env and (why := problem(env)):
        raise ConfigError(f"{var} (environment): bad value {redact(env)!r}: {why}")
    return env or default


class Params(Strict):
    """The whole `params.yaml`."""

    mirrors: list[str] = []
    tracking: TrackingConfig = TrackingConfig()
    search: SearchConfig = SearchConfig()
    promote: PromoteConfig = PromoteConfig()
    datasets: dict[Name, DatasetConfig] = Field(min_length=1)
    benchmarks: dict[Name, BenchmarkConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_check(self) -> Params:
        from pipeline.datasets import names as builtin_names  # noqa: PLC0415 - light module

        known = set(builtin_names())
        problems = []
        for name, ds in self.datasets.items():
            if ds.source == "builtin" and (ds.catalog or name) not in known:
                problems.append((
                    ("datasets", name), name,
                    f"unknown dataset; built-in datasets are {', '.join(sorted(known))}, "
                    "or declare `source: {url|path, sha256, format, task}`",
                ))  # fmt: skip
            problems += _option_problems(name, ds, known)
        named: dict[str, str] = {}
        for key, bench in self.benchmarks.items():
            name = model_name(key, bench.dataset, bench.model)
            if name in named:
                problems.append((
                    ("benchmarks", key), key, f"its MLflow experiment and registered model would be {name!r}, "
                    f"as benchmark {named[name]}'s (one champion for two benchmarks); rename one of them",
                ))  # fmt: skip
            named.setdefault(name, key)
            if bench.dataset not in self.datasets:
                problems.append((
                    ("benchmarks", key, "dataset"), bench.dataset,
                    f"not a dataset of this file; add it under `datasets` (have: {', '.join(self.datasets)})",
                ))  # fmt: skip
            elif task := _task(bench.dataset, self.datasets[bench.dataset], known):
                problems += [(("benchmarks", key, *loc), v, why) for loc, v, why in task_problems(bench, task)]
        if problems:
            raise Problems(problems)
        return self

    def catalog_name(self, key: str) -> str:
        """The built-in dataset that dataset `key` reads: its `catalog`, else the key itself."""
        return self.dataset(key).catalog or key

    def benchmark(self, key: str) -> BenchmarkConfig:
        """Return one benchmark or raise `ConfigError` listing the known ones."""
        return _entry(self.benchmarks, "benchmarks", key)

    def dataset(self, key: str) -> DatasetConfig:
        """Return one dataset or raise `ConfigError` listing the known ones."""
        return _entry(self.datasets, "datasets", key)

    def tracking_uri(self) -> str:
        """The MLflow tracking URI: `MLFLOW_TRACKING_URI` if set, else `tracking.uri`.

        Raises:
            ConfigError: `MLFLOW_TRACKING_URI` has a form MLflow does not accept.
        """
        return _from_env("MLFLOW_TRACKING_URI", tracking_uri_problem, self.tracking.uri)

    def storage_url(self) -> str | None:
        """The Optuna storage URL: `TUNEBENCH_STORAGE` if set, else `search.storage` (None: journal file).

        Raises:
            ConfigError: `TUNEBENCH_STORAGE` is not a storage URL (see `storage_url_problem`).
        """
        return _from_env("TUNEBENCH_STORAGE", storage_url_problem, self.search.storage)
