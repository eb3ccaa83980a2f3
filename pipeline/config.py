"""The `params.yaml` schema: the single, validated source of configuration.

Every stage reads its settings through `load_params`; a duplicate or unknown key, a wrong
type (ints must be ints, booleans are not numbers, numbers are finite), an impossible
value or a hyperparameter the benchmark's model family does not read stops the run with
exit code 2 and one line per problem, `<file>: <key.path>: bad value <v>: <what is
allowed>`, before anything is written. The typed objects are what the stages receive.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError
from pipeline.redaction import redact
from pipeline.models import hparams as hp
from pipeline.tasks import TASKS

PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp")

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
NAME_RULE = "a name: letters, digits, `_` and `-` only (it becomes part of file, folder and study names)"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

_DB_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")
_STORAGE_FORMS = (
    "null (a journal file in studies/<benchmark>), journal:<path>, sqlite:///<path>, "
    "postgresql://user@host/db, mysql://user@host/db (a driver may follow, e.g. postgresql+psycopg2://)"
)
_TRACKING_FORMS = (
    "a folder path (e.g. mlruns), file:<path>, sqlite:///<path>, http(s)://host[:port], "
    "postgresql://user@host/db, mysql://user@host/db, mssql://..., or databricks"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Problems(ValueError):
    """Problems found by a validator, each `(key path relative to the validated object, value, message)`."""

    def __init__(self, problems: list[tuple[tuple, Any, str]]):
        super().__init__("; ".join(m for _, _, m in problems))
        self.problems = problems


def _scheme(url: str) -> tuple[str, str]:
    """`(scheme without +driver, rest after ://)`; scheme is "" for a plain path."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9.-]*)(\+[A-Za-z0-9_]+)?://(.*)$", url)
    return (m.group(1).lower(), m.group(3)) if m else ("", url)


def _has_password(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


def storage_url_problem(url: str) -> str | None:
    """None when `url` has a recognised Optuna storage form, else what is allowed.

    Used for `search.storage`, `--storage` and `TUNEBENCH_STORAGE` alike.
    """
    if not url.strip():
        return f"empty; use one of {_STORAGE_FORMS}"
    if url.startswith("journal:"):
        return None if url.removeprefix("journal:").strip() else "journal: needs a file path, e.g. journal:studies.log"
    scheme, rest = _scheme(url)
    if scheme == "sqlite":
        return None if rest.startswith("/") and rest.strip("/") else "sqlite needs a file: sqlite:///path/to/optuna.db"
    if scheme in _DB_SCHEMES:
        return None if rest.strip("/") else f"{scheme}:// needs a host and database, e.g. {scheme}://user@host/db"
    return f"not a storage URL; use one of {_STORAGE_FORMS}"


def tracking_uri_problem(uri: str) -> str | None:
    """None when `uri` has a form MLflow accepts as a tracking URI, else what is allowed."""
    if not uri.strip():
        return f"empty; use {_TRACKING_FORMS}"
    scheme, rest = _scheme(uri)
    if not scheme:
        m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", uri)
        if not m:
            return None  # a plain folder path: MLflow's file store
        scheme, rest = m.group(1).lower(), m.group(2)
    if scheme in ("http", "https"):
        return None if urlsplit(uri).hostname else f"{scheme}:// needs a host, e.g. {scheme}://127.0.0.1:5000"
    if scheme == "sqlite":
        return None if rest.startswith("/") and rest.strip("/") else "sqlite needs a file: sqlite:///mlflow.db"
    if scheme in ("file", "postgresql", "mysql", "mssql"):
        return None if rest.strip("/") else f"{scheme}: needs a location, e.g. {scheme}:///path or {scheme}://host/db"
    if scheme in ("databricks", "databricks-uc", "uc"):
        return None
    return f"not a tracking URI MLflow knows; use {_TRACKING_FORMS}"


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
            if self.log or self.int:
                raise ValueError("`log` and `int` apply to `low`/`high` ranges, not to `choices`")
            if not self.choices:
                raise ValueError("`choices` must not be empty")
            if any(isinstance(c, float) and not math.isfinite(c) for c in self.choices):
                raise ValueError("choices must be finite numbers (no .nan or .inf)")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both `low` and `high` (or a `choices` list)")
        if self.int and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"an `int: true` range needs whole-number bounds, got [{self.low:g}, {self.high:g}]")
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
    task: Literal[TASKS]  # type: ignore[valid-type]
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
    n_components: int | float | None = None  # a count >= 1 or a variance fraction in (0, 1)
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

    @field_validator("n_components", mode="before")
    @classmethod
    def _count_or_fraction(cls, v: Any) -> Any:
        if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        if isinstance(v, float) and math.isfinite(v) and 0 < v < 1:
            return v
        raise ValueError("expected a whole count >= 1 (e.g. 20) or a variance fraction in (0, 1) (e.g. 0.95)")

    @model_validator(mode="after")
    def _check(self) -> PreprocessConfig:
        problems = []
        if self.kfold == 1:
            problems.append((("kfold",), 1, "kfold must be 0 (a validation split) or at least 2"))
        if self.kind == "pca" and self.n_components is None:
            problems.append(
                (
                    ("n_components",),
                    None,
                    "pca needs `n_components`: a count (e.g. 20) or a variance fraction (e.g. 0.95)",
                )
            )
        if self.val_fraction + self.test_fraction >= 1:
            problems.append(
                (
                    ("val_fraction",),
                    self.val_fraction,
                    f"val_fraction + test_fraction ({self.test_fraction:g}) must be below 1, leaving rows to train on",
                )
            )
        if problems:
            raise _Problems(problems)
        return self


def _source_kind(v: Any) -> str:
    return "builtin" if isinstance(v, str) else "custom"


Source = Annotated[
    Annotated[Literal["builtin"], Tag("builtin")] | Annotated[CustomSource, Tag("custom")],
    Discriminator(_source_kind),
]


class DatasetConfig(_Strict):
    """One dataset: its source (`builtin` from the catalog, or a custom file) and preprocessing."""

    source: Source = "builtin"
    options: dict[str, Any] = {}
    preprocess: PreprocessConfig


class RoundConfig(_Strict):
    """One coarse-to-fine round: its own Optuna study, budget, epochs and pruner."""

    name: Name
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
    """A dataset searched with one model family; `hparams` and `space` name only what the family reads."""

    dataset: str
    model: Literal[hp.FAMILIES]  # type: ignore[valid-type]
    hparams: dict[str, Any] = {}
    space: dict[str, ParamRange] = {}
    rounds: list[RoundConfig] = Field(min_length=1)
    final_epochs: int | None = Field(None, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> BenchmarkConfig:
        problems = []
        seen: dict[str, int] = {}
        for i, r in enumerate(self.rounds):
            if r.name in seen:
                problems.append(
                    (("rounds", i, "name"), r.name, f"round names must be unique (rounds.{seen[r.name]} has it too)")
                )
            seen.setdefault(r.name, i)
        for name in sorted(set(self.space) & set(self.hparams)):
            problems.append(
                (
                    ("space", name),
                    _shown_range(self.space[name]),
                    f"`{name}` is both fixed in `hparams` and searched in `space`; keep one",
                )
            )
        problems += _family_problems(self.model, self.hparams, self.space)
        if problems:
            raise _Problems(problems)
        return self


def _shown_range(r: ParamRange) -> dict:
    return r.model_dump(exclude_defaults=True)


def _family_problems(family: str, fixed: dict[str, Any], space: dict[str, ParamRange]) -> list:
    """Check fixed `hparams` and `space` against what `family` reads and each hyperparameter's domain."""
    reads = hp.reads(family)
    listing = f"{family} reads {', '.join(reads)}" if reads else f"{family} has no hyperparameters"
    problems = []
    for name, value in fixed.items():
        if name not in reads:
            problems.append((("hparams", name), value, f"{family} does not read `{name}`; {listing}"))
        elif why := hp.problem(name, value):
            hint = "; a range belongs under `space`" if isinstance(value, dict) else ""
            problems.append((("hparams", name), value, why + hint))
    for name, r in space.items():
        loc = ("space", name)
        if name not in reads:
            problems.append(
                (
                    loc,
                    _shown_range(r),
                    f"{family} does not read `{name}`, so searching it would change nothing; {listing}",
                )
            )
            continue
        spec = hp.HPARAMS[name]
        if not r.is_numeric:
            for i, choice in enumerate(r.choices):
                if why := hp.problem(name, choice):
                    problems.append(((*loc, "choices", i), choice, why))
        elif not spec.numeric:
            problems.append(
                (loc, _shown_range(r), f"{name} is not a number: search it with `choices` ({spec.allowed()})")
            )
        elif spec.integer and not r.int:
            problems.append((loc, _shown_range(r), f"{name} takes whole numbers: add `int: true` to the range"))
        else:
            for bound in ("low", "high"):
                value = getattr(r, bound)
                value = int(value) if spec.integer else value
                if why := hp.problem(name, value):
                    problems.append(((*loc, bound), value, why))
    return problems


class SearchConfig(_Strict):
    """Settings shared by every study."""

    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    seed: int = 0
    workers: int = Field(1, ge=1)
    storage: str | None = None

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if why := storage_url_problem(v):
            raise ValueError(why)
        if _has_password(v):
            raise ValueError(
                "a password must not be written in params.yaml (it would reach dvc.lock and git): "
                "set search.storage: null and export TUNEBENCH_STORAGE=<the URL> instead"
            )
        return v


class TrackingConfig(_Strict):
    """Where MLflow writes; `MLFLOW_TRACKING_URI` overrides `uri`."""

    uri: str = "sqlite:///mlflow.db"
    log_models: bool = True

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if why := tracking_uri_problem(v):
            raise ValueError(why)
        if _has_password(v):
            raise ValueError(
                "a password must not be written in params.yaml: export MLFLOW_TRACKING_URI=<the URI> "
                "(or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for a server) instead"
            )
        return v


class PromoteConfig(_Strict):
    """The promotion rule of the model registry."""

    min_improvement: float = Field(0.0, ge=0)


class Params(_Strict):
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
            if ds.source == "builtin" and name not in known:
                problems.append((
                    ("datasets", name), name,
                    f"unknown dataset; built-in datasets are {', '.join(sorted(known))}, "
                    "or declare `source: {url|path, sha256, format, task}`",
                ))  # fmt: skip
        for key, bench in self.benchmarks.items():
            if bench.dataset not in self.datasets:
                problems.append((
                    ("benchmarks", key, "dataset"), bench.dataset,
                    f"not a dataset of this file; add it under `datasets` (have: {', '.join(self.datasets)})",
                ))  # fmt: skip
        if problems:
            raise _Problems(problems)
        return self

    def benchmark(self, key: str) -> BenchmarkConfig:
        """Return one benchmark or raise `ConfigError` listing the known ones."""
        if key not in self.benchmarks:
            raise ConfigError(
                f"params.yaml: benchmarks: bad value {key!r}: unknown benchmark; known: {', '.join(self.benchmarks)}"
            )
        return self.benchmarks[key]

    def dataset(self, key: str) -> DatasetConfig:
        """Return one dataset or raise `ConfigError` listing the known ones."""
        if key not in self.datasets:
            raise ConfigError(
                f"params.yaml: datasets: bad value {key!r}: unknown dataset; known: {', '.join(self.datasets)}"
            )
        return self.datasets[key]

    def tracking_uri(self) -> str:
        """The MLflow tracking URI: `MLFLOW_TRACKING_URI` if set, else `tracking.uri`.

        Raises:
            ConfigError: `MLFLOW_TRACKING_URI` has a form MLflow does not accept.
        """
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env and (why := tracking_uri_problem(env)):
            raise ConfigError(f"MLFLOW_TRACKING_URI (environment): bad value {redact(env)!r}: {why}")
        return env or self.tracking.uri

    def storage_url(self) -> str | None:
        """The Optuna storage URL: `TUNEBENCH_STORAGE` if set, else `search.storage` (None: journal file).

        Raises:
            ConfigError: `TUNEBENCH_STORAGE` is not a storage URL (see `storage_url_problem`).
        """
        env = os.environ.get("TUNEBENCH_STORAGE")
        if env and (why := storage_url_problem(env)):
            raise ConfigError(f"TUNEBENCH_STORAGE (environment): bad value {redact(env)!r}: {why}")
        return env or self.search.storage


_MESSAGES = {  # pydantic error type -> what to write instead of its message
    "int_type": "expected an integer (e.g. 5)",
    "float_type": "expected a number (e.g. 0.5)",
    "bool_type": "expected true or false",
    "string_type": "expected a string (text)",
    "finite_number": "expected a finite number (.nan, .inf and numbers beyond 1.8e308 are not allowed)",
    "string_pattern_mismatch": NAME_RULE,
    "dict_type": "expected a mapping (`key: value` entries)",
    "model_type": "expected a mapping (`key: value` entries)",
    "model_attributes_type": "expected a mapping (`key: value` entries)",
    "list_type": "expected a list (`[a, b]` or `- a` lines)",
}


def _message(e: dict) -> str:
    """One pydantic error as what is allowed / what to do."""
    kind, value, loc = e["type"], e.get("input"), e["loc"]
    if kind == "string_pattern_mismatch" and "sha256" in loc:
        return "expected the file's SHA-256: 64 lowercase hex digits (`sha256sum FILE`)"
    wrong_kind = kind in ("literal_error", "model_type", "model_attributes_type", "dict_type")
    if wrong_kind and len(loc) > 1 and loc[-2] == "source" and loc[-1] in ("builtin", "custom"):
        return "expected `builtin` or a mapping {url or path, sha256, format, task[, target]}"
    if kind == "extra_forbidden":
        known = _keys_at(loc)
        return f"unknown key (a typo?); allowed here: {', '.join(known)}" if known else "unknown key (a typo?)"
    if kind in ("too_short", "too_long"):
        n = (e.get("ctx") or {}).get("min_length" if kind == "too_short" else "max_length")
        return f"expected at {'least' if kind == 'too_short' else 'most'} {n} entr{'y' if n == 1 else 'ies'}"
    msg = _MESSAGES.get(kind, e["msg"])
    if kind in ("int_type", "float_type") and isinstance(value, bool):
        msg += "; true/false is not a number"
    elif kind == "int_type" and isinstance(value, float):
        msg += "; fractions are not allowed here"
    elif kind in ("int_type", "float_type") and isinstance(value, str):
        msg += "; YAML read it as text (quotes, or a typo?)"
    msg = msg.removeprefix("Value error, ").replace("Input should be greater", "expected a value greater")
    return msg.replace("Input should be less", "expected a value less").replace("Input should be", "expected")


def _keys_at(loc: tuple) -> list[str]:
    """The keys the schema allows in the mapping holding `loc[-1]` (empty when it cannot tell)."""
    t: Any = Params
    for i, part in enumerate(loc[:-1]):
        if part in ("builtin", "custom") and i > 0 and loc[i - 1] == "source":
            continue
        t = _model_of(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            if str(part) not in t.model_fields:
                return []
            t = t.model_fields[str(part)].annotation
        elif get_origin(t) in (dict, list):
            t = get_args(t)[-1] if get_origin(t) is dict else get_args(t)[0]
        else:
            return []
    t = _model_of(t)
    return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else []


def _model_of(t: Any) -> Any:
    """`t` without Annotated / Optional wrappers; of a union, its schema class member."""
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    if get_origin(t) in (Union, UnionType):
        members = [_model_of(a) for a in get_args(t) if a is not type(None)]
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return models[0] if models else members[0]
    return t


def _key(loc: tuple) -> str:
    parts = []
    for i, p in enumerate(loc):
        p = str(p)
        if p.startswith(("literal[", "function-")) or p == "[key]":
            continue
        if p in ("builtin", "custom") and i > 0 and loc[i - 1] == "source":
            continue  # the tag of the `source` union
        parts.append(p)
    return ".".join(parts) or "<top>"


def _shown(value: Any) -> str:
    """`value` as the user wrote it in YAML (true, null, .nan), long mappings shortened, passwords masked."""
    yaml_words = {True: "true", False: "false", None: "null"}
    if value is None or isinstance(value, bool):
        return yaml_words[value]
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    text = repr(value)
    if isinstance(value, dict | list) and len(text) > 80:
        text = "{...}" if isinstance(value, dict) else "[...]"
    return redact(text)


def _format_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        ctx_err = (e.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _Problems):
            for rel, value, msg in ctx_err.problems:
                lines.append(f"{path}: {_key((*e['loc'], *rel))}: bad value {_shown(value)}: {msg}")
            continue
        if e["type"] == "missing":
            lines.append(f"{path}: {_key(e['loc'])}: missing: a required key; add it (see README's params reference)")
            continue
        lines.append(f"{path}: {_key(e['loc'])}: bad value {_shown(e.get('input'))}: {_message(e)}")
    return "\n".join(lines)


def parse_params(data: Any, path: Path | str = "params.yaml") -> Params:
    """Validate already-parsed YAML data.

    Raises:
        ConfigError: one line per problem, naming the key path, the bad value and what is allowed.
    """
    if data is None:
        raise ConfigError(f"{path}: <top>: the file is empty; start from the shipped params.yaml")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: <top>: bad value {_shown(data)}: expected a mapping of sections "
            "(tracking, search, promote, datasets, benchmarks)"
        )
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(Path(path), err)) from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading `1e-3` as a number (YAML 1.2 and DVC do; YAML 1.1 reads text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _duplicates(node: yaml.Node, path: tuple, file: Path, seen_nodes: set) -> list[str]:
    """One line per key given twice in the same mapping, at any depth."""
    if id(node) in seen_nodes:
        return []
    seen_nodes.add(id(node))
    lines = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else "?"
            if key != "<<":
                line = k.start_mark.line + 1
                if key in first:
                    lines.append(
                        f"{file}: {'.'.join(map(str, (*path, key)))}: duplicate key at line {line} "
                        f"(first at line {first[key]}): YAML would keep only the last; remove or rename one"
                    )
                first.setdefault(key, line)
            lines += _duplicates(v, (*path, key), file, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines += _duplicates(item, (*path, i), file, seen_nodes)
    return lines


def read_yaml(text: str, path: Path | str = "params.yaml") -> Any:
    """Parse YAML text, refusing a key given twice in a mapping (PyYAML would keep the last silently).

    Raises:
        ConfigError: not valid YAML (with line and column), or duplicate keys (with line and key path).
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if lines := _duplicates(node, (), Path(path), set()):
            raise ConfigError("\n".join(lines))
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "<top>"
        what = " ".join(x for x in (err.context, err.problem) if x)
        hint = (
            "plain values only, no `!!` tags"
            if isinstance(err, yaml.constructor.ConstructorError)
            else ("check the indentation (spaces, no tabs) and quoting there")
        )
        raise ConfigError(f"{path}: {where}: not valid YAML: {what}; {hint}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: <top>: not valid YAML: {' '.join(str(err).split())}") from None
    finally:
        loader.dispose()


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate `params.yaml`.

    Raises:
        ConfigError: the file is missing, not YAML, has duplicate keys, or fails the schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the project root or pass --params") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a file; pass the params file with --params") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    return parse_params(read_yaml(text, path), path)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (used to name studies)."""
    from pydantic_core import to_jsonable_python  # noqa: PLC0415

    blob = json.dumps(to_jsonable_python(list(parts)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]
