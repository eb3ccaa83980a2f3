"""The MLflow model registry: register each benchmark's best model and move `champion` only when earned.

A version gets alias `challenger`. It becomes `champion` when there is no
champion yet, when its test metric beats the champion's by at least
`min_improvement` in the metric's direction, or when forced. Every alias
move is recorded in an audit history (registered-model tag `alias_history`).

Crash safety: `promote` is idempotent and its steps are ordered so that a
process killed at any point leaves the registry consistent, and running it
again converges to the state of an uninterrupted run:

1. find the version registered for this run (`search_model_versions` by
   `run_id`); create it only if there is none (one version per run; a stray
   version left by a killed promote is reused);
2. decide: a version that already holds `champion` keeps the decision stored on
   it; any other is compared with the current champion;
3. store the decision on the version (tag `promotion`);
4. move the aliases: `challenger`, then `champion` if promoted (the registry
   keeps its champion if anything before failed);
5. record the move in `alias_history`, after it happened; this also repairs a
   history that lacks the last move or claims a champion the alias does not
   point to;
6. (the stage) tag the run and write `promotions/<benchmark>.json`, last.

A kill between 4 and 6 leaves the aliases moved and the history or promotion
file behind; rerunning `tunebench promote` completes them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.errors import TrackingError
from pipeline.tasks import is_better

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG, DECISION_TAG = "alias_history", "promotion"
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # on a logged model: the registered versions made from it
_HISTORY_CHARS = 4500  # the history tag stays under MLflow's tag length limit


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
    run_id: str | None = None
    test: dict | None = None  # the paired test against the champion (`stats.paired_bootstrap`), or why none ran
    alpha: float | None = None


def decide(candidate: float, champion: float | None, direction: str, margin: float, force: bool = False,
           test: dict | None = None, alpha: float = 0.05):  # fmt: skip
    """Return `(promote, reason)` for a candidate test metric against the current champion's.

    With a paired `test` (p-value and gain interval), the candidate must also beat the champion
    significantly, p < `alpha`; without one (`{"test": None, "why": ...}`: predictions that cannot be
    paired) the metrics alone decide and the reason says why nothing was tested.
    """
    if force:
        return True, "forced"
    if champion is None:
        return True, "no champion yet"
    better = is_better(candidate, champion, direction, margin)
    versus = f"{candidate:.6g} vs champion {champion:.6g} ({direction}, margin {margin:g})"
    if test is None or test.get("p_value") is None:
        untested = f"; untested: {test['why']}" if test else ""
        return better, f"{versus}: {'beats it' if better else 'does not beat it'}{untested}"
    p, ci = test["p_value"], f"gain {test['gain']:+.4g}, 95% CI [{test['ci_low']:+.4g}, {test['ci_high']:+.4g}]"
    verdict = "significant" if p < alpha else "not significant"
    gain = "beats it" if better else "does not beat it"
    return better and p < alpha, f"{versus}: {gain}; paired bootstrap {ci}, p={p:.3g} ({verdict} at alpha {alpha:g})"


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


def _wait_ready(mlc: MlflowClient, name: str, version: str, seconds: float = 120) -> str:
    """Wait until a version is READY; return its final status (`READY` or `FAILED_REGISTRATION`)."""
    end = time.time() + seconds
    while time.time() < end:
        mv = mlc.get_model_version(name, version)
        if mv.status in ("READY", "FAILED_REGISTRATION"):
            return mv.status
        time.sleep(0.5)
    raise TrackingError(f"registered model {name} version {version} not READY after {seconds:.0f} s; "
                        "check the MLflow server and rerun `tunebench promote`")  # fmt: skip


def versions_of_run(mlc: MlflowClient, name: str, run_id: str) -> list:
    """The versions of `name` registered from `run_id`, oldest first (none when `name` is not registered)."""
    try:
        found = mlc.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    except MlflowException:
        return []
    return sorted(found, key=lambda mv: int(mv.version))


def _version_for_run(mlc: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict,
                     model_id: str | None = None):  # fmt: skip
    """The one version of `name` for `run_id`: the existing one (a stray of a killed promote too), else a new one."""
    for mv in versions_of_run(mlc, name, run_id):
        if _wait_ready(mlc, name, mv.version) == "READY":
            return mv
        mlc.delete_model_version(name, mv.version)  # a failed registration: register again
    _ensure_registered(mlc, name)
    mv = mlc.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
    if _wait_ready(mlc, name, mv.version) != "READY":
        raise TrackingError(f"registering {model_uri} as {name} failed: "
                            f"{mlc.get_model_version(name, mv.version).status_message}")  # fmt: skip
    first = versions_of_run(mlc, name, run_id)[0]  # a concurrent promote of the same run: the oldest wins
    if str(first.version) != str(mv.version):
        mlc.delete_model_version(name, mv.version)
        return first
    return mv


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
    model_id: str | None = None,
    test: dict | None = None,
    alpha: float = 0.05,
) -> Decision:
    """Register `model_uri` (once per run) as a version of `name` and move the aliases if it wins.

    Idempotent: promoting the same run again reuses its version; a version that already holds
    `champion` keeps it with its stored decision (see the module docstring for the order of steps).

    Args:
        `metric`, `direction`, `value`: the candidate's test metric (e.g. `accuracy`, `maximize`, 0.88).
        `tags`: version tags (dataset manifest hash, params, study, git commit).
        `dry_run`: decide and return without changing anything.
        `model_id`: the MLflow 3 logged model of `model_uri` (`models:/<model_id>`): linked to the version.
    """
    current = champion(mlc, name)
    existing = versions_of_run(mlc, name, run_id)
    mine = existing[0] if existing else None
    champ_value = float(current.tags[f"test_{metric}"]) if current and f"test_{metric}" in current.tags else None
    if mine is not None and current is not None and str(current.version) == str(mine.version):
        if dry_run:  # what a promote would do now: nothing (its stored decision is how it became champion)
            held = f"test {metric} {champ_value:.6g}" if champ_value is not None else f"no test {metric} recorded"
            return Decision(name, metric, direction, value, str(current.version), champ_value, min_improvement, False,
                            f"this model is champion already (version {current.version}, {held})", str(mine.version),
                            run_id)  # fmt: skip
        decision = _stored_decision(mine) or Decision(name, metric, direction, value, None, None, min_improvement,
                                                      True, "already champion")  # fmt: skip
    else:
        ok, reason = decide(value, champ_value, direction, min_improvement, force, test, alpha)
        decision = Decision(name, metric, direction, value, current.version if current else None, champ_value,
                            min_improvement, ok, reason, test=test, alpha=alpha)  # fmt: skip
    decision.version = str(mine.version) if mine is not None else None
    decision.run_id = run_id
    if dry_run:
        return decision
    version_tags = {**{k: str(v)[:5000] for k, v in tags.items()}, f"test_{metric}": str(value)}
    mv = _version_for_run(mlc, name, model_uri, run_id, version_tags, model_id)
    if model_id is not None:
        link_logged_model(mlc, model_id, name, mv.version)
    decision.version = str(mv.version)
    mlc.set_model_version_tag(name, mv.version, DECISION_TAG, json.dumps(asdict(decision)))
    before = {k: str(v) for k, v in (mlc.get_registered_model(name).aliases or {}).items()}
    version = decision.version
    moved = before.get(CHALLENGER) != version or (decision.promote and before.get(CHAMPION) != version)
    mlc.set_registered_model_alias(name, CHALLENGER, mv.version)
    if decision.promote:
        mlc.set_registered_model_alias(name, CHAMPION, mv.version)
    _record_history(mlc, name, decision, moved=moved)
    return decision


def link_logged_model(mlc: MlflowClient, model_id: str, name: str, version) -> None:
    """Record on logged model `model_id` that it is version `version` of `name` (idempotent).

    The tag `mlflow.modelVersions` is the link `mlflow.register_model` makes (the SQL registry
    keeps no model id on a version, only its `models:/<model_id>` source): the Models tab shows it.
    """
    tags = mlc.get_logged_model(model_id).tags
    try:
        links = [v for v in json.loads(tags.get(MODEL_VERSIONS_TAG, "[]")) if isinstance(v, dict)]
    except ValueError:
        links = []
    if not any(v.get("name") == name and str(v.get("version")) == str(version) for v in links):
        links.append({"name": name, "version": str(version)})
        mlc.set_logged_model_tags(model_id, {MODEL_VERSIONS_TAG: json.dumps(links)})


def _stored_decision(mv) -> Decision | None:
    """The decision stored on a version by `promote`, if readable."""
    try:
        return Decision(**json.loads(mv.tags[DECISION_TAG]))
    except (KeyError, TypeError, ValueError):
        return None


def _record_history(mlc: MlflowClient, name: str, decision: Decision, *, moved: bool) -> None:
    """Append the alias move just made (`moved`) or missing from `alias_history`; repair claims the aliases contradict.

    A short history of alias moves kept on the registered model (mlflow#2169): each entry is one
    version getting `challenger` (`champion: false`) or `champion` too (`champion: true`).
    """
    rm = mlc.get_registered_model(name)
    try:
        history = [h for h in json.loads(rm.tags.get(HISTORY_TAG, "[]")) if isinstance(h, dict)]
    except ValueError:
        history = []
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": decision.version,
             "champion": decision.promote, "reason": decision.reason}  # fmt: skip
    if moved:
        history.append(entry)
    holder = str((rm.aliases or {}).get(CHAMPION) or "") or None
    history = repair_history(history, holder, None if moved else entry)
    while len(json.dumps(history)) > _HISTORY_CHARS and len(history) > 1:
        keep = _last_claim(history, holder)
        history.pop(1 if keep == 0 else 0)
    mlc.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def _last_claim(history: list[dict], version: str | None) -> int | None:
    """Index of the last entry making `version` champion."""
    return max((i for i, h in enumerate(history) if h.get("champion") and str(h.get("version")) == version),
               default=None)  # fmt: skip


def repair_history(history: list[dict], holder: str | None, latest: dict | None = None) -> list[dict]:
    """Make `history` agree with the champion alias (`holder`, a version or None).

    Entries claiming `champion` after the last move to `holder` (moves a killed promote recorded
    but never made) become `champion: false, moved: false` with a note. `latest`, the entry of the
    move the aliases show now, is added if it is not the last move recorded (a promote killed
    after moving them); a move to `holder` still missing is added last.
    """
    claim = _last_claim(history, holder)
    out = []
    for i, h in enumerate(history):
        if h.get("champion") and str(h.get("version")) != holder and (claim is None or i > claim):
            h = {**h, "champion": False, "moved": False,
                 "note": "the aliases never moved here (interrupted promote)"}  # fmt: skip
        out.append(h)
    moves = [h for h in out if h.get("moved", True)]
    last = (str(moves[-1].get("version")), bool(moves[-1].get("champion"))) if moves else None
    if latest is not None and last != (str(latest["version"]), bool(latest["champion"])):
        out.append(latest)
    if holder is not None and _last_claim(out, holder) is None:
        out.append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": holder,
                    "champion": True, "reason": "holds the champion alias (history repaired)"})  # fmt: skip
    return out


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
