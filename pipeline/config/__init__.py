"""The `params.yaml` schema: the single, validated source of configuration.

Every stage reads its settings through `load_params`; a duplicate or unknown key, a wrong
type (ints must be ints, booleans are not numbers, numbers are finite), an impossible
value or a hyperparameter the benchmark's model family does not read stops the run with
exit code 2 and one line per problem, `<file>: <key.path>: bad value <v>: <what is
allowed>`, before anything is written. The typed objects are what the stages receive.

Modules: `yaml_reader` (the YAML text, duplicate keys), `params` (the whole file and its small
sections), `datasets` and `benchmarks` (those sections), `urls` (storage and tracking URL forms),
`messages` (validation errors as lines), `base` (what the sections share). Importing this
package imports no TensorFlow, MLflow or Optuna.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.config.base import NAME_PATTERN, NAME_RULE, Name
from pipeline.config.benchmarks import PRUNERS, SAMPLERS, BenchmarkConfig, ParamRange, RoundConfig
from pipeline.config.datasets import CustomSource, DatasetConfig, PreprocessConfig
from pipeline.config.messages import format_error, shown
from pipeline.config.params import Params, PromoteConfig, SearchConfig, TrackingConfig
from pipeline.config.urls import storage_url_problem, tracking_uri_problem
from pipeline.config.yaml_reader import read_yaml
from pipeline.errors import ConfigError

MAX_BYTES = 2**20  # the largest params file read


def parse_params(data: Any, path: Path | str = "params.yaml", *, root: Path | None = None) -> Params:
    """Validate already-parsed YAML data; with `root` (the project folder), also refuse a storage or tracking
    file outside it (`paths.outside_project`).

    Raises:
        ConfigError: one line per problem, naming the key path, the bad value and what is allowed.
    """
    if data is None:
        raise ConfigError(f"{path}: <top>: the file is empty; start from the shipped params.yaml")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: <top>: bad value {shown(data)}: expected a mapping of sections "
            "(tracking, search, promote, datasets, benchmarks)"
        )
    try:
        return Params.model_validate(data, context={"root": root})
    except ValidationError as err:
        raise ConfigError(format_error(Path(path), err)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate `params.yaml`.

    Raises:
        ConfigError: the file is missing, not a regular file, larger than 1 MiB, not UTF-8 YAML text, has
            duplicate keys, or fails the schema.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the project root or pass --params") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{path}: a folder, not a file; pass the params file with --params")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{path}: not a regular file (a device, pipe or socket); pass the params file with --params")
    with path.open("rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: <top>: larger than {MAX_BYTES // 2**20} MiB, too large for a params file; "
                          "pass the params file with --params")  # fmt: skip
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: <top>: not a UTF-8 YAML text file (byte {err.start} is not UTF-8); "
                          "save it as UTF-8 text") from None  # fmt: skip
    return parse_params(read_yaml(text, path), path, root=path.parent)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (used to name studies)."""
    from pydantic_core import to_jsonable_python  # noqa: PLC0415

    blob = json.dumps(to_jsonable_python(list(parts)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


__all__ = [
    "NAME_PATTERN", "NAME_RULE", "PRUNERS", "SAMPLERS", "BenchmarkConfig", "ConfigError", "CustomSource",
    "DatasetConfig", "Name", "ParamRange", "Params", "PreprocessConfig", "PromoteConfig", "RoundConfig",
    "SearchConfig", "TrackingConfig", "fingerprint", "load_params", "parse_params", "read_yaml",
    "storage_url_problem", "tracking_uri_problem",
]  # fmt: skip
