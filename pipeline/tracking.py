"""MLflow tracking: one experiment per benchmark, a parent run per study round, a child run per trial.

A thin layer over `MlflowClient` (no fluent global state, so it is safe in
worker processes): runs are created with explicit ids, metrics are logged
once per epoch in one batch, and every run ends with a status that fits how
its trial ended (FINISHED, KILLED for pruned, FAILED with the error).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline import paths

_CREDENTIALS = re.compile(r"(?<=://)([^/@:]+)(:[^/@]*)?@")


def redact(uri: str) -> str:
    """Hide credentials in a URI (`postgresql://user:pw@host` -> `postgresql://***@host`)."""
    return _CREDENTIALS.sub("***@", uri)


def client(uri: str) -> MlflowClient:
    """A client for `uri` (a local SQLite store by default, or a server URL)."""
    import mlflow  # noqa: PLC0415

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_name(benchmark: str, dataset: str, model: str) -> str:
    """The experiment of a benchmark: `<dataset>/<model>` (`<benchmark>` when several share them)."""
    return f"{dataset}/{model}" if benchmark in (f"{dataset}_{model}", dataset) else f"{dataset}/{model}/{benchmark}"


def ensure_experiment(mlc: MlflowClient, name: str) -> str:
    """Return the id of experiment `name`, creating it if needed (safe when processes race)."""
    found = mlc.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    uri = mlc.tracking_uri
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        location = (paths.MLARTIFACTS / safe).resolve().as_uri()
    try:
        return mlc.create_experiment(name, artifact_location=location)
    except MlflowException:  # another worker created it first (mlflow#10334)
        found = mlc.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def git_commit() -> str:
    """The current git commit, or `unknown` outside a repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _params(hp: Mapping[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:6000]) for k, v in sorted(hp.items())]


def _tags(tags: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(k, str(v)) for k, v in tags.items()]


def _now_ms() -> int:
    return int(time.time() * 1000)


def start_run(
    mlc: MlflowClient, experiment_id: str, name: str, *, parent_id: str | None = None, tags: Mapping | None = None
) -> str:
    """Create a run (nested under `parent_id` if given) and return its id."""
    all_tags = {"mlflow.runName": name, **(tags or {})}
    if parent_id:
        all_tags["mlflow.parentRunId"] = parent_id
    run = mlc.create_run(experiment_id, run_name=name, tags=all_tags)
    return run.info.run_id


def log_params(mlc: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params in one batch."""
    mlc.log_batch(run_id, params=_params(params))


def log_metrics(mlc: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log finite metrics at `step` in one batch."""
    ts = _now_ms()
    batch = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None and v == v]
    if batch:
        mlc.log_batch(run_id, metrics=batch)


def set_tags(mlc: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set tags in one batch."""
    mlc.log_batch(run_id, tags=_tags(tags))


def smooth_curve(points: list[float], factor: float = 0.9) -> list[float]:
    """Exponential moving average of a learning curve, as in Chollet's `smooth_curve`."""
    out: list[float] = []
    for p in points:
        out.append(out[-1] * factor + p * (1 - factor) if out else p)
    return out


def plot_learning_curves(history: Mapping[str, list[float]], path: Path, title: str = "") -> Path:
    """Save raw and smoothed learning curves (each metric with its `val_` twin) as a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    keys = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(len(keys), 2, figsize=(10, 3.2 * max(1, len(keys))), squeeze=False)
    for row, key in enumerate(keys):
        for col, smooth in enumerate((False, True)):
            ax = axes[row][col]
            for k in (key, f"val_{key}"):
                pts = list(history.get(k, []))
                if not pts:
                    continue
                skip = 10 if smooth and len(pts) > 20 else 0
                ys = smooth_curve(pts[skip:]) if smooth else pts
                ax.plot(range(skip + 1, skip + len(ys) + 1), ys, marker="o" if len(ys) < 30 else None, label=k)
            ax.set_title(f"{key} ({'smoothed' if smooth else 'raw'})")
            ax.set_xlabel("epoch")
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


class TrialRun:
    """The MLflow child run of one Optuna trial."""

    def __init__(self, mlc: MlflowClient, experiment_id: str, parent_id: str, trial, tags: Mapping[str, Any]):
        self.mlc = mlc
        self.trial_number = trial.number
        self.run_id = start_run(
            mlc,
            experiment_id,
            f"trial-{trial.number}",
            parent_id=parent_id,
            tags={**tags, "trial_number": trial.number, "state": "RUNNING"},
        )
        trial.set_user_attr("mlflow_run_id", self.run_id)

    def log_epoch(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Log one epoch's metrics with `step=epoch` (0-based) in one call."""
        log_metrics(self.mlc, self.run_id, logs, step=epoch)

    def finish(
        self,
        state: str,
        *,
        history: Mapping[str, list[float]] | None = None,
        final: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        model=None,
        log_model: bool = True,
    ) -> None:
        """End the run: final metrics, curves, the model (completed trials) and a status matching `state`."""
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
        try:
            set_tags(self.mlc, self.run_id, {"state": state, **(tags or {})})
            if final:
                log_metrics(self.mlc, self.run_id, final, step=0)
            with tempfile.TemporaryDirectory() as tmp:
                if history and any(history.values()):
                    plot_learning_curves(history, Path(tmp) / "learning_curves.png", f"trial {self.trial_number}")
                    self.mlc.log_artifact(self.run_id, str(Path(tmp) / "learning_curves.png"))
                if model is not None and log_model:
                    model.save(Path(tmp) / "model")
                    self.mlc.log_artifacts(self.run_id, str(Path(tmp) / "model"), "model")
        finally:
            self.mlc.set_terminated(self.run_id, status=status, end_time=_now_ms())


def log_figure_files(mlc: MlflowClient, run_id: str, files: list[Path], artifact_path: str | None = None) -> None:
    """Upload a list of already written files to a run."""
    for f in files:
        mlc.log_artifact(run_id, str(f), artifact_path)
