"""What a dataset's processed data was made from, and the check that it still matches `params.yaml`.

`preprocess` records two hashes in `data/processed/<d>/manifest.json` (`input_hashes`): the raw
folder's content manifest (each raw file's SHA-256, no paths or times) and `dataset_config`, a
fingerprint of the dataset's settings (source hash, format, task and target, catalog entry,
options, preprocessing; not where the file lies, so a moved project or file keeps its identity).
Every later stage calls `require_current` first: processed data made for other settings (a failed
preprocess after a change, an edited raw folder) is refused, never silently used, and a search's
study names hash the returned identity, so new data always means new studies.
"""

from __future__ import annotations

from pipeline import fileio, paths
from pipeline.config import Params, fingerprint
from pipeline.errors import MissingInputError

LOCATION_KEYS = {"url", "path"}  # where a custom file lies: not part of what the data is


def dataset_fingerprint(params: Params, dataset: str) -> str:
    """A short hash of everything in `datasets.<dataset>` that decides its processed data."""
    cfg = params.dataset(dataset).model_dump()
    if isinstance(cfg["source"], dict):
        cfg["source"] = {k: v for k, v in cfg["source"].items() if k not in LOCATION_KEYS}
    cfg["catalog"] = params.catalog_name(dataset)
    return fingerprint(cfg)


def processed_inputs(params: Params, dataset: str) -> dict[str, str]:
    """The `input_hashes` that `preprocess` records: the raw manifest's SHA-256 and the settings' fingerprint."""
    return {"raw_manifest": fileio.file_sha256(paths.raw_manifest(dataset)),
            "dataset_config": dataset_fingerprint(params, dataset)}  # fmt: skip


def require_current(params: Params, dataset: str) -> dict[str, str]:
    """The identity of `dataset`'s processed data, after checking it was made from today's settings and raw data.

    Raises:
        MissingInputError: no processed data, or processed data made from other settings or other raw files;
            the message names the folder and the command that rebuilds it.
    """
    where = paths.processed_manifest(dataset)
    rebuild = f"run `tunebench preprocess --dataset {dataset}` (or `dvc repro`) and fix what makes it fail"
    if not where.is_file():
        raise MissingInputError(f"{where} is missing: {dataset} is not preprocessed; {rebuild}")
    recorded = fileio.read_json(where).get("input_hashes") or {}
    if recorded.get("dataset_config") != dataset_fingerprint(params, dataset):
        raise MissingInputError(f"{where} was made from other settings of datasets.{dataset} than params.yaml "
                                f"gives now (an older preprocess, or one that failed since); {rebuild}")  # fmt: skip
    raw = paths.raw_manifest(dataset)
    if raw.is_file() and recorded.get("raw_manifest") != fileio.file_sha256(raw):
        raise MissingInputError(f"{where} was made from other raw files than {raw.parent} holds now; {rebuild}")
    return {"raw_manifest": recorded["raw_manifest"], "dataset_config": recorded["dataset_config"]}
