"""MLflow experiments and runs: naming, creating and reopening runs, logging in batches, closing orphans.

A thin layer over `MlflowClient` (no fluent global state, so it is safe in worker processes):
runs are created with explicit ids and every value logged goes through `redact`. Every run
carries the host, pid and start time of the process that made it, so that a later stage can
close the runs a dead process left RUNNING (`close_orphan_runs`).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline import compat, paths
from pipeline.config.benchmarks import model_name
from pipeline.processes import worker_alive, worker_id
from pipeline.redaction import redact
from pipeline.tracking.store import local_artifact_dir

MAX_PARAM_LENGTH = 6000  # MLflow's limits on a param and a tag value
MAX_TAG_LENGTH = 8000

_TEXT_SUFFIXES = {".csv", ".json", ".txt", ".md", ".yaml", ".yml", ".html", ".log"}


def experiment_name(benchmark: str, dataset: str, model: str) -> str:
    """The experiment of a benchmark, named like its registered model (`pipeline.config.model_name`)."""
    return model_name(benchmark, dataset, model)


def ensure_experiment(mlc: MlflowClient, name: str) -> str:
    """Return the id of experiment `name`, creating it if needed (safe when processes race).

    In a SQLite store the new experiment's artifact location is `mlartifacts/<name>`, relative to
    the project folder (the working directory of every command), so a copied or moved project
    keeps finding its artifacts and never writes into the original folder: MLflow would store an
    absolute path, which every run and model inherits (`compat.set_experiment_artifact_location`).
    A server decides its own (`mlflow-artifacts:/...`, relative too).
    """
    found = mlc.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    relative = mlc.tracking_uri.startswith("sqlite:")
    if relative or mlc.tracking_uri.startswith("file:") or "://" not in mlc.tracking_uri:
        location = (paths.MLARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)).as_posix()
    try:
        experiment_id = mlc.create_experiment(name, artifact_location=location)
    except MlflowException:  # another worker created it first (mlflow#10334)
        found = mlc.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
    if relative:
        compat.set_experiment_artifact_location(mlc, experiment_id, location)
        _relocate_default_experiment(mlc)
    return experiment_id


def _relocate_default_experiment(mlc: MlflowClient) -> None:
    """Store MLflow's own `Default` experiment (made with the database) at `mlruns/0`, relative like ours."""
    location = mlc.get_experiment("0").artifact_location
    folder = local_artifact_dir(location)
    if folder is not None and folder.is_absolute() and folder.is_relative_to(Path.cwd()):
        compat.set_experiment_artifact_location(mlc, "0", folder.relative_to(Path.cwd()).as_posix())


def git_commit() -> str:
    """The current git commit, or `unknown` outside a repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def source_tags(entry_point: str, commit: str | None = None) -> dict[str, str]:
    """MLflow's source tags (the runs table's Source column): the command and, in a git checkout, the commit."""
    commit = git_commit() if commit is None else commit
    tags = {"mlflow.source.name": entry_point, "mlflow.source.type": "LOCAL"}
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


DIGEST_CHARS = 16  # MLflow keeps at most 36 characters of a dataset digest; tag `dataset_manifest_hash` has it all


def dataset_input(dataset: str, manifest_hash: str, context: str):
    """The processed dataset as an MLflow dataset input: its name, the manifest hash as digest, the split as context.

    The source is the processed folder, relative to the project (`data/processed/<dataset>`).
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag  # noqa: PLC0415

    source = json.dumps({"uri": paths.processed_dir(dataset).as_posix()})
    ds = Dataset(name=dataset, digest=manifest_hash[:DIGEST_CHARS], source_type="local", source=source)
    return DatasetInput(ds, tags=[InputTag("mlflow.data.context", context)])


def log_dataset(mlc: MlflowClient, run_id: str, dataset: str, manifest_hash: str, context: str) -> None:
    """Record on a run the data it used (`dataset_input`): the runs table's Dataset column."""
    mlc.log_inputs(run_id, datasets=[dataset_input(dataset, manifest_hash, context)])


def param_values(hp: Mapping[str, Any]) -> dict[str, str]:
    """Params as MLflow keeps them (a run's, a logged model's): text, redacted and cut to MLflow's limit."""
    return {k: redact(str(v))[:MAX_PARAM_LENGTH] for k, v in hp.items()}


def param_batch(hp: Mapping[str, Any]) -> list[Param]:
    """Params for `log_batch`: `param_values`, sorted."""
    return [Param(k, v) for k, v in sorted(param_values(hp).items())]


def tag_batch(tags: Mapping[str, Any]) -> list[RunTag]:
    """Tags for `log_batch`: values redacted and cut to MLflow's limit."""
    return [RunTag(k, redact(str(v))[:MAX_TAG_LENGTH]) for k, v in tags.items()]


def metric_batch(metrics: Mapping[str, float], step: int) -> list[Metric]:
    """Metrics for `log_batch` at `step`, stamped now; None and NaN values are left out."""
    ts = now_ms()
    return [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None and v == v]


def now_ms() -> int:
    """The time now in milliseconds, as MLflow stamps runs and metrics."""
    return int(time.time() * 1000)


def start_run(
    mlc: MlflowClient, experiment_id: str, name: str, *, parent_id: str | None = None, tags: Mapping | None = None
) -> str:
    """Create a run (nested under `parent_id` if given) and return its id."""
    return create_run(mlc, experiment_id, name, parent_id=parent_id, tags=tags).info.run_id


def create_run(mlc: MlflowClient, experiment_id: str, name: str, *, parent_id: str | None, tags: Mapping | None):
    """Create a run named `name` (nested under `parent_id`), tagged with `tags` and its owner; returns the `Run`."""
    all_tags = {"mlflow.runName": name, **(tags or {}), **owner_tags()}
    if parent_id:
        all_tags["mlflow.parentRunId"] = parent_id
    return mlc.create_run(experiment_id, run_name=name, tags={t.key: t.value for t in tag_batch(all_tags)})


def log_params(mlc: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params in one batch (values redacted)."""
    mlc.log_batch(run_id, params=param_batch(params))


def log_metrics(mlc: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log finite metrics at `step` in one batch."""
    batch = metric_batch(metrics, step)
    if batch:
        mlc.log_batch(run_id, metrics=batch)


def set_tags(mlc: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set tags in one batch (values redacted)."""
    mlc.log_batch(run_id, tags=tag_batch(tags))


def log_figure_files(mlc: MlflowClient, run_id: str, files: list[Path], artifact_path: str | None = None) -> None:
    """Upload a list of already written files to a run; text files (CSV, JSON, HTML...) are redacted first."""
    for f in map(Path, files):
        if f.suffix.lower() in _TEXT_SUFFIXES and f.is_file():
            text = f.read_text(errors="replace")
            clean = redact(text)
            if clean != text:  # upload a redacted copy; the caller's file (maybe a DVC output) stays
                with tempfile.TemporaryDirectory() as tmp:
                    (Path(tmp) / f.name).write_text(clean)
                    mlc.log_artifact(run_id, str(Path(tmp) / f.name), artifact_path)
                continue
        mlc.log_artifact(run_id, str(f), artifact_path)


# --- runs of interrupted processes ------------------------------------------------------------------
# Every run we create carries the host, pid and start time of its process (`owner_tags`); a stage
# that starts closes the runs whose process is gone (`close_orphan_runs`), as `search.storage`
# does for the Optuna trials of a dead worker (and with the same `worker_id` / `worker_alive`).

OWNER_TAGS = ("tunebench.host", "tunebench.pid", "tunebench.started")


def owner_tags() -> dict[str, str]:
    """Tags naming this process (host, pid, start time), set on every run `start_run` creates."""

    w = worker_id()
    return dict(zip(OWNER_TAGS, (str(w["host"]), str(w["pid"]), "" if w["started"] is None else str(w["started"]))))


def _owner(tags: Mapping[str, str]) -> dict | None:
    """A run's owner tags as a `worker_id()` dict, or None for a run without them."""
    try:
        started = tags.get(OWNER_TAGS[2]) or None
        return {"host": tags[OWNER_TAGS[0]], "pid": int(tags[OWNER_TAGS[1]]),
                "started": started}  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def reopen_run(mlc: MlflowClient, run_id: str) -> bool:
    """Set a finished or interrupted run RUNNING again, owned by this process (a resumed study round).

    Returns:
        False when the run is gone (the tracking store was deleted or replaced since).
    """
    try:
        mlc.update_run(run_id, status="RUNNING")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    set_tags(mlc, run_id, owner_tags())
    return True


def close_orphan_runs(mlc: MlflowClient, experiment_id: str, *, by: str) -> list[str]:
    """Mark FAILED the runs of an experiment left RUNNING by a process of this host that has ended.

    Runs of live processes (concurrent stages or search workers), of other hosts (their process
    cannot be checked from here: an RDB search's heartbeats handle those) and runs without owner
    tags are left alone. A closed run gets tags `interrupted` and `error` saying why (and `state`
    FAIL for a trial's run).

    Args:
        `by`: the stage closing them, named in the tag.

    Returns:
        The ids of the runs closed.
    """

    me = worker_id()

    def tags_of(run) -> dict | None:
        owner = _owner(run.data.tags)
        if owner is None or owner["host"] != me["host"] or owner == me or worker_alive(owner):
            return None
        why = (f"interrupted: its process (pid {owner['pid']} on {owner['host']}) ended while it ran; "
               f"closed by `tunebench {by}`")  # fmt: skip
        return {"interrupted": why, "error": why, **({"state": "FAIL"} if "trial_number" in run.data.tags else {})}

    return _close_running(mlc, experiment_id, "attributes.status = 'RUNNING'", tags_of)


def close_runs_of_finished_trials(mlc: MlflowClient, experiment_id: str, study_name: str, finished: set[int],
                                  *, by: str) -> list[str]:  # fmt: skip
    """Mark FAILED the runs of study `study_name` still RUNNING whose trial (`trial_number`) is in `finished`.

    A finished trial's own run is ended before Optuna hears the result, so such a run is a twin: created
    a second time when the tracking server went away mid-request, by a worker process that lives on
    (a warm worker), which `close_orphan_runs` leaves alone. Each gets tags `stray`, `error` and
    `state` FAIL.

    Returns:
        The ids of the runs closed.
    """

    def tags_of(run) -> dict | None:
        number = run.data.tags.get("trial_number", "")
        if not number.isdigit() or int(number) not in finished:
            return None
        why = (f"stray: trial {number} has ended but this run of it was still RUNNING (a twin created through a "
               f"tracking outage, or its worker was cut off); closed by `tunebench {by}`")  # fmt: skip
        return {"stray": why, "error": why, "state": "FAIL"}

    query = f"attributes.status = 'RUNNING' and tags.study_name = '{study_name}'"
    return _close_running(mlc, experiment_id, query, tags_of)


def _close_running(mlc: MlflowClient, experiment_id: str, query: str, tags_of: Callable) -> list[str]:
    """Mark FAILED each run found by `query` for which `tags_of(run)` gives tags (saying why); its ids."""
    closed, token = [], None
    while True:
        page = mlc.search_runs([experiment_id], query, max_results=500, page_token=token)
        for run in page:
            tags = tags_of(run)
            if tags is not None:
                set_tags(mlc, run.info.run_id, tags)
                mlc.set_terminated(run.info.run_id, status="FAILED", end_time=now_ms())
                closed.append(run.info.run_id)
        token = page.token
        if not token:
            return closed
