"""MLflow tracking: one experiment per benchmark, a parent run per study round, a child run per trial.

One module per job; callers use the names re-exported here (`from pipeline import tracking`,
`tracking.client(...)`):

- `store`: the client of a tracking store (`client`, SQLite tuning, relative SQLite URIs),
  the preflight `check_reachable` (`connect`: preflight, then client), the `mlflow ui` command line
  (`ui_command`), its links (`ui_links`) and its port check (`check_ui_port`).
- `runs`: experiments (artifact locations relative to the project) and runs (`ensure_experiment`,
  `start_run`, `reopen_run`), params, metrics and tags in batches, source tags, dataset inputs,
  uploaded files, and `close_orphan_runs` for the runs of a process that died.
- `trial_run`: `TrialRun`, the child run of one Optuna trial (per-epoch metrics, end status).
- `retrying_client`: the client of a tracking server, retried through outages (`search.retry_s`);
  `outage_error` for a lost connection in a call that is not retried.
- `charts`: the learning-curve PNG of a trial (Pillow).
- `model_logging`: a trial's model as the `TrainedModel` folder plus the MLflow Keras flavor, and
  MLflow 3 logged models (`create_logged_model`, `stamp_mlmodel`, `link_metrics`, `finish_logged_model`);
  `warm_up_model_logging` does the first model's one-off work in a thread while a trial trains.

Credentials never reach MLflow's own output, our logs, params or tags: every value logged goes
through `pipeline.redaction.redact` (re-exported here as `redact`), which stays outside this
package because configuration and storage code below the tracking layer use it without MLflow.
Private MLflow APIs are used only through `pipeline.compat`.
"""

from __future__ import annotations

from pipeline.redaction import redact, split_credentials
from pipeline.tracking.charts import plot_learning_curves, smooth_curve
from pipeline.tracking.model_logging import (
    create_logged_model,
    finish_logged_model,
    link_metrics,
    stamp_mlmodel,
    warm_up_model_logging,
)
from pipeline.tracking.runs import (
    MAX_PARAM_LENGTH,
    MAX_TAG_LENGTH,
    OWNER_TAGS,
    close_orphan_runs,
    close_runs_of_finished_trials,
    dataset_input,
    ensure_experiment,
    experiment_name,
    git_commit,
    log_dataset,
    log_figure_files,
    log_metrics,
    log_params,
    metric_batch,
    owner_tags,
    reopen_run,
    set_tags,
    source_tags,
    start_run,
)
from pipeline.tracking.retrying_client import outage_error
from pipeline.tracking.store import (
    absolute_sqlite_uri,
    check_reachable,
    check_ui_port,
    client,
    connect,
    local_artifact_dir,
    ui_command,
    ui_links,
)
from pipeline.tracking.trial_run import STATUS, TrialRun

__all__ = [
    "MAX_PARAM_LENGTH",
    "MAX_TAG_LENGTH",
    "OWNER_TAGS",
    "STATUS",
    "TrialRun",
    "absolute_sqlite_uri",
    "check_reachable",
    "check_ui_port",
    "client",
    "connect",
    "close_orphan_runs",
    "close_runs_of_finished_trials",
    "create_logged_model",
    "dataset_input",
    "ensure_experiment",
    "finish_logged_model",
    "experiment_name",
    "git_commit",
    "link_metrics",
    "local_artifact_dir",
    "log_dataset",
    "log_figure_files",
    "log_metrics",
    "log_params",
    "metric_batch",
    "outage_error",
    "owner_tags",
    "plot_learning_curves",
    "redact",
    "reopen_run",
    "set_tags",
    "smooth_curve",
    "source_tags",
    "stamp_mlmodel",
    "start_run",
    "split_credentials",
    "ui_command",
    "ui_links",
    "warm_up_model_logging",
]
