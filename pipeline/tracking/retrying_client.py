"""An MLflow client that rides out tracking-server outages: calls retried on connection errors.

For an `http(s)` tracking server, `tracking.client` returns a `RetryingClient`: the calls in
`RETRIED` (reads, and writes that are safe to repeat: batches of metrics, params and tags, end
states, artifacts) are repeated through an outage for at most `search.retry_s` seconds, with one
line per outage (`pipeline.retry`). MLflow's own HTTP retries are turned off for that
(`MLFLOW_HTTP_REQUEST_MAX_RETRIES=0` unless set): they would wait minutes with a warning per try.
`create_run` is repeated only after checking that the run was not created by the try whose
answer was lost. Every other attribute is the `MlflowClient`'s own (`raw` is the client itself).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from pipeline import retry
from pipeline.errors import TrackingError
from pipeline.redaction import redact, split_credentials

TRANSIENT_STATUS = (408, 429, 502, 503, 504)  # HTTP answers of a server that is busy, starting or behind a proxy
RETRIED = frozenset({
    "get_run", "get_experiment", "get_experiment_by_name", "search_runs", "search_experiments", "list_artifacts",
    "download_artifacts", "get_metric_history", "log_batch", "log_metric", "log_param", "set_tag", "set_terminated",
    "update_run", "log_artifact", "log_artifacts", "create_experiment", "set_experiment_tag", "log_inputs",
    "finalize_logged_model",
    "get_registered_model", "get_model_version", "get_model_version_by_alias", "search_model_versions",
    "search_registered_models", "set_registered_model_alias", "set_registered_model_tag", "set_model_version_tag",
})  # fmt: skip
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


def is_transient(exc: BaseException) -> bool:
    """True for a refused, reset or timed-out connection to the server, or a busy/unavailable answer."""
    import requests  # noqa: PLC0415
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    kinds = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.RetryError,
             requests.exceptions.ChunkedEncodingError, ConnectionError, TimeoutError)  # fmt: skip
    for e in retry.chain(exc):
        if isinstance(e, kinds):
            return True
        if isinstance(e, MlflowException) and e.get_http_status_code() in TRANSIENT_STATUS:
            return True
    return False


def describe_server(uri: str) -> str:
    """The server in outage messages: `MLflow server at http://host:port` (no credentials)."""
    return f"MLflow server at {redact(split_credentials(uri)[0].rstrip('/'))}"


def call(where: str, fn, *args, **kwargs) -> Any:
    """`fn(*args, **kwargs)` retried through an outage of the MLflow server `where` (`pipeline.retry.call`)."""
    return retry.call(fn, *args, kind="tracking", where=where, transient=is_transient, error=TrackingError, **kwargs)


class RetryingClient:
    """`client` (an `MlflowClient` of a tracking server) with the calls in `RETRIED` retried through outages."""

    def __init__(self, client, where: str):
        self.raw = client
        self.where = where

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if name in RETRIED and callable(attr):
            return functools.partial(call, self.where, attr)
        return attr

    def create_run(self, experiment_id: str, *args, tags: dict | None = None, **kwargs):
        """`MlflowClient.create_run`; a repeat first looks for the run an unanswered try may have created."""
        tries = [0]

        def attempt():
            tries[0] += 1
            if tries[0] > 1 and tags and tags.get("tunebench.pid"):
                found = self._created_before(experiment_id, tags)
                if found is not None:
                    return found
            return self.raw.create_run(experiment_id, *args, tags=tags, **kwargs)

        return call(self.where, attempt)

    def _created_before(self, experiment_id: str, tags: dict):
        """The run of this process with these name, owner and parent tags, if one exists."""
        keys = ("mlflow.runName", "tunebench.pid", "tunebench.started", "tunebench.host", "mlflow.parentRunId")
        clauses = [f"tags.`{k}` = '{tags[k]}'" for k in keys if tags.get(k) and "'" not in str(tags[k])]
        runs = self.raw.search_runs([experiment_id], " and ".join(clauses), max_results=1)
        return runs[0] if runs else None


def outage_error(client, exc: BaseException) -> TrackingError | None:
    """The outage's one-line error when `exc` is a lost connection to `client`'s server in a call that is not
    retried (e.g. creating a logged model), as if the outage had outlasted `search.retry_s`; else None."""
    if isinstance(client, RetryingClient) and is_transient(exc):
        return retry.give_up("tracking", client.where, exc, TrackingError)
    return None


def noticed(client) -> None:
    """Announce an outage of `client`'s server that the caller rides out itself (kept metrics)."""
    if isinstance(client, RetryingClient):
        retry.board().down("tracking", client.where, retry.retry_limit())


def wrap(client, uri: str):
    """`client` as a `RetryingClient` for an `http(s)` server (MLflow's own retries off); other stores as is."""
    if not uri.startswith(("http://", "https://")):
        return client
    for var, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(var, value)
    return RetryingClient(client, describe_server(uri))
