"""The MLflow child run of one Optuna trial: per-epoch metrics in batches, curves, the model, a fitting end.

A trial's per-epoch metrics (each with its step and time) reach the store in batches every few
seconds and when it ends, and every run ends with a status that fits how its trial ended
(FINISHED, KILLED for pruned, FAILED with the error). What this costs per trial is measured by
`benchmarks/tracking_overhead.py`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from pipeline.redaction import redact
from pipeline.tracking import retrying_client
from pipeline.tracking.charts import plot_learning_curves
from pipeline.tracking.model_logging import (
    create_logged_model,
    finish_logged_model,
    link_metrics,
    save_trial_model,
    stamp_mlmodel,
)
from pipeline.tracking.runs import DIGEST_CHARS, create_run, dataset_input, metric_batch, now_ms, tag_batch
from pipeline.tracking.store import local_artifact_dir

STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}  # any other trial state ends its run FAILED
_BATCH = 900  # metrics per `log_batch` (MLflow takes at most 1000 entries, tags included)


class TrialRun:
    """The MLflow child run of one Optuna trial.

    Its name says what it is at a glance (`t07 lr=3e-3 l2=1e-5`, given by the caller), with
    `pruned` or `FAILED` put after the number when it ends so; its description (`mlflow.note.content`)
    says how it ended, and metric `pruned` (1 or 0) is a column to add. A completed trial's model is
    an MLflow 3 logged model named `model_name`, with the final metrics linked to it.

    Args:
        `name`: the run name (default `t<NN>`); `model_name`: its logged model's (default `trial-<NN>`).
        `tags`: tags of the run (redacted), besides `trial_number`, `state` and its owner.
        `model_format`: `keras` logs a Keras model with the MLflow flavor as well, `folder` only the
            `TrainedModel` folder (the overhead benchmark compares both).
        `flush_seconds`: per-epoch metrics reach the store at most this late.

    Attributes:
        `run_id`: the run's id (also the trial's user attr `mlflow_run_id`).
        `timings`: seconds this object spent in tracking, by phase (`start`, `epochs`, `finish`,
            and inside `finish`: `curves`, `model`, `log`); read by the overhead benchmark.
    """

    def __init__(
        self, mlc: MlflowClient, experiment_id: str, parent_id: str, trial, tags: Mapping[str, Any], *,
        model_format: str = "keras", flush_seconds: float = 5.0, name: str | None = None,
        model_name: str | None = None,
    ):  # fmt: skip
        t0 = time.perf_counter()
        self.mlc = mlc
        self.model_format, self.flush_seconds = model_format, flush_seconds
        self.trial_number = trial.number
        self.experiment_id, self.name = experiment_id, name or f"t{trial.number:02d}"
        self.model_name = model_name or f"trial-{trial.number:02d}"
        self.dataset: tuple[str, str] | None = None  # (name, digest) of its dataset input, set by `log_dataset`
        self.model_id: str | None = None
        run = create_run(
            mlc,
            experiment_id,
            self.name,
            parent_id=parent_id,
            tags={**tags, "trial_number": trial.number, "state": "RUNNING"},
        )
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        trial.set_user_attr("mlflow_run_id", self.run_id)
        self._pending: list[Metric] = []
        self._flushed_at = time.perf_counter()
        self.timings: dict[str, float] = {"start": self._flushed_at - t0, "epochs": 0.0}

    def log_dataset(self, dataset: str, manifest_hash: str, context: str) -> None:
        """Record the data the trial uses as the run's dataset input (see `runs.dataset_input`)."""
        self.mlc.log_inputs(self.run_id, datasets=[dataset_input(dataset, manifest_hash, context)])
        self.dataset = (dataset, manifest_hash[:DIGEST_CHARS])

    def log_epoch(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Record the metrics of epoch number `epoch` (counted from 1: the metric step) with their own timestamp.

        They go to the store in one batch every `flush_seconds` and when the run ends: one store
        write per epoch cost about 10 ms, 5-8 % of a trial whose epochs are short. While the
        tracking server is unreachable they are kept and sent with the next batch (training goes on).
        """
        t0 = time.perf_counter()
        self._pending += metric_batch(logs, epoch)
        if t0 - self._flushed_at >= self.flush_seconds:
            self._flush(wait=False)
        self.timings["epochs"] += time.perf_counter() - t0

    def _flush(self, metrics: list[Metric] = (), tags: list[RunTag] = (), wait: bool = True) -> None:
        """Write the pending epoch metrics (and `metrics`, `tags`) in as few batches as MLflow allows.

        `wait` False: one try; through an outage the metrics stay pending (see `retrying_client`).
        """
        batch, tags, self._pending = [*self._pending, *metrics], list(tags), []
        while batch or tags:
            try:
                (self.mlc if wait else getattr(self.mlc, "raw", self.mlc)).log_batch(
                    self.run_id, metrics=batch[:_BATCH], tags=tags
                )
            except Exception as exc:
                if wait or not retrying_client.is_transient(exc):
                    raise
                retrying_client.noticed(self.mlc)
                self._pending = batch
                break
            batch, tags = batch[_BATCH:], []
        self._flushed_at = time.perf_counter()

    def finish(
        self,
        state: str,
        *,
        history: Mapping[str, list[float]] | None = None,
        final: Mapping[str, float] | None = None,
        tags: Mapping[str, Any] | None = None,
        model=None,
        log_model: bool = True,
        input_example=None,
    ) -> None:
        """End the run: final metrics and tags, curves, the model (completed trials), a matching status.

        `state` is the trial's (`COMPLETE`, `PRUNED`, `FAIL`); the run ends FINISHED, KILLED or
        FAILED, with metric `pruned` (1 or 0), a description saying how it ended, and a pruned or
        failed run's name marked. A failed run carries tags `error` (the `reason` tag, or the exception being
        handled) and `state`, and the traceback as artifact `error.txt`, all redacted. With a
        local artifact store the files are written in place (no temporary copy); otherwise they
        go up in one call. A problem writing them is recorded as tag `tracking_error` and warned
        about rather than failing a finished trial.

        Args:
            `input_example`: feature rows for the Keras flavor's input example (see `save_trial_model`).
        """
        t0 = time.perf_counter()
        status = STATUS.get(state, "FAILED")
        all_tags: dict[str, Any] = {"state": state, **(tags or {})}
        error = sys.exc_info()[1] if status == "FAILED" else None
        if status == "FAILED" and "error" not in all_tags:
            all_tags["error"] = all_tags.get("reason") or (f"{type(error).__name__}: {error}" if error else state)
        all_tags["mlflow.note.content"] = _description(state, all_tags, final)
        if state != "COMPLETE":
            number, _, rest = self.name.partition(" ")
            all_tags["mlflow.runName"] = f"{number} {'pruned' if state == 'PRUNED' else 'FAILED'} {rest}".strip()
        if state in STATUS:
            final = {**(final or {}), "pruned": float(state == "PRUNED")}
        local = local_artifact_dir(self.artifact_uri)
        try:
            with nullcontext(str(local)) if local is not None else tempfile.TemporaryDirectory() as out:
                self._write_artifacts(Path(out), all_tags, history, model if log_model else None, input_example,
                                      error)  # fmt: skip
                t = time.perf_counter()
                metrics = metric_batch(final or {}, 0)
                if self.model_id is not None:  # the Models tab shows them with the model
                    metrics += link_metrics(metrics, self.model_id, self.dataset)
                    all_tags["model_id"] = self.model_id
                self._flush(metrics, tag_batch(all_tags))
                if local is None and any(Path(out).iterdir()):
                    self.mlc.log_artifacts(self.run_id, out)
                self.timings["log"] = time.perf_counter() - t
        finally:
            if self.model_id is not None:
                finish_logged_model(self.mlc, self.model_id, "model_format" in all_tags)
            self.mlc.set_terminated(self.run_id, status=status, end_time=now_ms())
            self.timings["finish"] = time.perf_counter() - t0

    def _write_artifacts(self, out: Path, tags: dict, history, model, input_example, error) -> None:
        """Write the curves, the model and the error into `out`; on a problem, tag it and go on."""
        try:
            t = time.perf_counter()
            out.mkdir(parents=True, exist_ok=True)
            if history and any(history.values()):
                plot_learning_curves(history, out / "learning_curves.png", self.name)
            self.timings["curves"] = time.perf_counter() - t
            t = time.perf_counter()
            if model is not None:
                self._log_model(model, input_example, tags)
            self.timings["model"] = time.perf_counter() - t
            if error is not None:
                text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
                (out / "error.txt").write_text(redact(text))
        except Exception as exc:  # noqa: BLE001 - a finished trial stays finished
            tags["tracking_error"] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"trial {self.trial_number}: artifacts not logged: {redact(str(exc))}", stacklevel=3)

    def _log_model(self, model, input_example, tags: dict) -> None:
        """Log `model` as an MLflow 3 logged model of this run (in place when its artifact store is local)."""
        logged = create_logged_model(self.mlc, self.experiment_id, self.run_id, self.model_name,
                                     params=getattr(model, "hparams", None) or {}, model_type="trial")  # fmt: skip
        self.model_id = logged.model_id
        local = local_artifact_dir(logged.artifact_location)
        with nullcontext(str(local)) if local is not None else tempfile.TemporaryDirectory() as out:
            try:
                fmt = save_trial_model(model, Path(out), input_example, keras_flavor=self.model_format == "keras")
                stamp_mlmodel(Path(out), self.model_id, self.run_id)
                if local is None:
                    self.mlc.log_model_artifacts(self.model_id, out)
            except BaseException:
                if local is not None:
                    shutil.rmtree(local, ignore_errors=True)  # no half-written model: the logged model ends FAILED
                raise
        tags["model_format"] = fmt


def _description(state: str, tags: Mapping[str, Any], final: Mapping[str, float] | None) -> str:
    """The run's description (shown on its page): how the trial ended, in one line."""
    if state == "COMPLETE":
        best = ", ".join(f"{k} {v:.4g}" for k, v in (final or {}).items() if k.startswith("best_val_"))
        return f"complete: {best}" + (f" at epoch {tags['best_epoch']}" if "best_epoch" in tags else "")
    if state == "PRUNED":
        return f"pruned: {tags.get('reason', 'by the pruner')}"
    return f"failed: {tags.get('error', state)}"
