"""The job of one round's worker processes: the typed round and the processed-data folder.

Every worker receives a `RoundJob` (it is pickled to spawned and forked processes) and never
re-reads `params.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import retry
from pipeline.config import BenchmarkConfig, ParamRange, RoundConfig


@dataclass(frozen=True)
class RoundJob:
    """What every worker process of one round needs (picklable: it is the spawned processes' argument).

    `data_dir` is the data handle: the benchmark's processed-data folder, loaded by each worker.
    """

    key: str  # the benchmark (names its default journal file)
    study: str  # the round's study name
    storage_url: str | None
    bench: BenchmarkConfig
    rnd: RoundConfig
    sampler: str
    sampler_seed: int
    space: dict[str, ParamRange]
    data_dir: Path
    tracking_uri: str
    log_models: bool
    experiment_id: str
    parent_run_id: str
    tags: dict[str, Any]
    budget: int
    threads: int = 1
    release_memory: bool = True  # clear the Keras session and collect garbage after every trial (off only to measure)
    retry_s: float = retry.DEFAULT_RETRY_S  # `search.retry_s`: how long storage and tracking outages are ridden out
    warm: tuple = ()  # the previous round's trials its sampler learns from (`warm_start`)
