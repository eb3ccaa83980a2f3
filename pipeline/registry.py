"""The MLflow model registry: register each benchmark's best model and move `champion` only when earned.

A new version gets alias `challenger`. It becomes `champion` when there is no
champion yet, when its test metric beats the champion's by at least
`min_improvement` in the metric's direction, or when forced. Alias changes
are the last step, after the version is registered and tagged, so a failure
never leaves the registry without the champion it had. Every decision is
appended to an audit history (a registered-model tag and the promotion file).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.tasks import is_better

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class Decision:
    """What promotion decided, and why."""

    model_name: str
    metric: str
    direction: str
    candidate_value: float
    champion_version: str | None
    champion_value: float | None
    min_improvement: float
    promote: bool
    reason: str
    version: str | None = None


def decide(candidate: float, champion: float | None, direction: str, margin: float, force: bool = False):
    """Return `(promote, reason)` for a candidate test metric against the current champion's."""
    if force:
        return True, "forced"
    if champion is None:
        return True, "no champion yet"
    if is_better(candidate, champion, direction, margin):
        return True, f"{candidate:.6g} beats champion {champion:.6g} by at least {margin:g} ({direction})"
    return False, f"{candidate:.6g} does not beat champion {champion:.6g} by {margin:g} ({direction})"


def champion(mlc: MlflowClient, name: str):
    """The version holding `champion`, or None."""
    try:
        return mlc.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _ensure_registered(mlc: MlflowClient, name: str) -> None:
    try:
        mlc.get_registered_model(name)
    except MlflowException:
        try:
            mlc.create_registered_model(name, description=f"tunebench best model of {name}")
        except MlflowException:  # created meanwhile by another process
            mlc.get_registered_model(name)


def _wait_ready(mlc: MlflowClient, name: str, version: str, seconds: float = 120) -> None:
    end = time.time() + seconds
    while time.time() < end:
        mv = mlc.get_model_version(name, version)
        if mv.status == "READY":
            return
        if mv.status == "FAILED_REGISTRATION":
            raise RuntimeError(f"registration of {name} v{version} failed: {mv.status_message}")
        time.sleep(0.5)
    raise TimeoutError(f"{name} v{version} not READY after {seconds:.0f} s")


def promote(
    mlc: MlflowClient,
    name: str,
    *,
    model_uri: str,
    run_id: str,
    metric: str,
    direction: str,
    value: float,
    tags: dict,
    min_improvement: float = 0.0,
    force: bool = False,
    dry_run: bool = False,
) -> Decision:
    """Register `model_uri` as a new version of `name` and move the aliases if it wins.

    Args:
        `metric`, `direction`, `value`: the candidate's test metric (e.g. `accuracy`, `maximize`, 0.88).
        `tags`: version tags (dataset manifest hash, params, study, git commit).
        `dry_run`: decide and return without registering anything.
    """
    current = champion(mlc, name)
    champ_value = float(current.tags[f"test_{metric}"]) if current and f"test_{metric}" in current.tags else None
    ok, reason = decide(value, champ_value, direction, min_improvement, force)
    decision = Decision(name, metric, direction, value, current.version if current else None, champ_value,
                        min_improvement, ok, reason)  # fmt: skip
    if dry_run:
        return decision
    _ensure_registered(mlc, name)
    mv = mlc.create_model_version(name, model_uri, run_id=run_id,
                                  tags={**{k: str(v)[:5000] for k, v in tags.items()}, f"test_{metric}": str(value)})
    _wait_ready(mlc, name, mv.version)
    decision.version = str(mv.version)
    mlc.set_model_version_tag(name, mv.version, "promotion", json.dumps(asdict(decision)))
    _append_history(mlc, name, decision)
    # aliases last: the registry keeps its champion if anything above failed
    mlc.set_registered_model_alias(name, CHALLENGER, mv.version)
    if ok:
        mlc.set_registered_model_alias(name, CHAMPION, mv.version)
    return decision


def _append_history(mlc: MlflowClient, name: str, decision: Decision) -> None:
    """Keep a short history of alias decisions on the registered model (mlflow#2169)."""
    rm = mlc.get_registered_model(name)
    history = json.loads(rm.tags.get("alias_history", "[]"))
    history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": decision.version,
                    "champion": decision.promote, "reason": decision.reason})  # fmt: skip
    while len(json.dumps(history)) > 4500:
        history.pop(0)
    mlc.set_registered_model_tag(name, "alias_history", json.dumps(history))


def list_models(mlc: MlflowClient) -> list[dict]:
    """Registered models with their versions, aliases and test metrics."""
    out = []
    for rm in mlc.search_registered_models():
        for mv in mlc.search_model_versions(f"name='{rm.name}'"):
            out.append({
                "name": rm.name, "version": str(mv.version), "run_id": mv.run_id,
                "aliases": sorted(a for a, v in (rm.aliases or {}).items() if str(v) == str(mv.version)),
                "metrics": {k: v for k, v in mv.tags.items() if k.startswith("test_")},
            })  # fmt: skip
    return sorted(out, key=lambda r: (r["name"], int(r["version"])))
