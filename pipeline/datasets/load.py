"""Load a fetched dataset from its cache folder, re-checking every file against the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .catalog import get_spec
from .errors import FetchError, HashMismatchError
from pipeline.fileio import file_digest

from .integrity import quarantine
from .manifest import read_manifest
from .packaged import load_packaged
from .readers import READERS
from .spec import DatasetSpec, RawData


def load(name: str, dest: Path, *, custom: dict | None = None, **options: Any) -> RawData:
    """Read a dataset that `fetch` put in `dest`.

    Args:
        `name`: a built-in dataset or the name of a `custom` one.
        `dest`: the cache folder given to `fetch`.
        `custom`: the same user declaration given to `fetch`.
        `options`: reader options, e.g. `num_words=10000` for imdb / reuters
            (`num_words`, `skip_top`, `maxlen`, `seed`, `start_char`, `oov_char`, `index_from`,
            and `test_split` for reuters / boston_housing).

    Returns:
        The `RawData`.

    Raises:
        FetchError: not fetched yet, or a file is missing; says to run `tunebench fetch`.
        HashMismatchError: a file changed since it was fetched (it is quarantined).
        FormatError: a file is malformed.
        ValueError: an unknown option.
    """
    return load_spec(get_spec(name, custom), dest, **options)


def load_spec(spec: DatasetSpec, dest: Path, **options: Any) -> RawData:
    """Like `load`, for an explicit `DatasetSpec`."""
    dest = Path(dest)
    manifest = read_manifest(dest)
    if manifest is None or manifest.get("dataset") != spec.name:
        raise FetchError(f"dataset {spec.name!r} is not fetched yet ({dest / 'manifest.json'} is missing or "
                         f"names another dataset): run `tunebench fetch --dataset {spec.name}` first")  # fmt: skip
    try:
        fs = spec.fileset(str(manifest.get("fileset")))
    except KeyError as exc:
        raise FetchError(f"{dest}/manifest.json names file set {manifest.get('fileset')!r}, unknown to "
                         f"{spec.name}; run `tunebench fetch --dataset {spec.name}` again") from exc  # fmt: skip
    if fs.packaged:
        if options:
            raise ValueError(f"{spec.name} takes no options, got {sorted(options)}")
        return load_packaged(spec, fs, manifest)
    entries = {e.get("name"): e for e in manifest.get("files", []) if isinstance(e, dict)}
    paths = {}
    for f in fs.files:
        e = entries.get(f.name)
        path = dest / f.name
        if e is None or e.get("pin") != f.pin() or not path.is_file():
            raise FetchError(f"dataset {spec.name!r}: {path} is missing or was fetched with another pin; "
                             f"run `tunebench fetch --dataset {spec.name}` again")  # fmt: skip
        actual = file_digest(path)
        if actual != e.get("sha256"):
            moved = quarantine(path, dest, f.name)
            raise HashMismatchError(
                f"{spec.name}: {path} has SHA-256 {actual}, the manifest recorded {e.get('sha256')}; "
                f"moved to {moved}; run `tunebench fetch --dataset {spec.name}` again",
                file=f.name, expected=str(e.get("sha256")), actual=actual, source=str(path),
                quarantined=str(moved),
            )  # fmt: skip
        paths[f.role] = path
    raw = READERS[fs.format](spec, fs, paths, options)
    raw.meta["files"] = {name: e.get("sha256") for name, e in entries.items()}
    return raw
