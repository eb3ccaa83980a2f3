"""Fetch a dataset into its cache folder: cache, then mirror folders, then URL or pip; verify; record.

Each file is verified against its pin before it is used; a bad copy goes to
`dest/.quarantine/` (one copy per content). `dest/manifest.json` is written last,
atomically, and only when every file of one file set is in place. Temporary
files (`.<file>.part`, `.pip-*`) are removed when the fetch ends, however it ends
(SIGTERM included), and the leftovers of a killed fetch when the next one starts.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import paths
from pipeline.errors import ConfigError, terminate_as_interrupt

from .catalog import get_spec
from .integrity import QUARANTINE, now_iso
from .manifest import MANIFEST, append_fetch_log, read_manifest, write_manifest
from .packaged import fetch_packaged, packaged_version
from .sources import PART, FetchAttempt
from .spec import DatasetSpec, FileSet


def fetch(
    dataset: str | DatasetSpec,
    dest: Path,
    *,
    mirrors: Sequence[Path] = (),
    custom: dict | None = None,
    progress: bool = True,
    timeout: float = 60,
    retries: int = 3,
) -> dict[str, Any]:
    """Get every file of a dataset into `dest`, verified, and write `dest/manifest.json`.

    Args:
        `dataset`: a built-in dataset (see `names()`), the name of a `custom` one, or a `DatasetSpec`
            (e.g. one built in a test).
        `dest`: the cache folder, e.g. `data/raw/<name>`.
        `mirrors`: extra folders to look in (each also as `<folder>/<name>/`).
        `custom`: a user declaration (see `catalog.custom_spec`).
        `progress`: show download progress bars.
        `timeout`: network timeout in seconds.
        `retries`: extra download tries after a broken connection.

    Returns:
        The fetch record: the manifest written to `dest/manifest.json` (content only: names,
        digests, sizes, pins) plus each file's `source` and `fetched_at`, which go to the fetch
        log beside `dest` (`paths.fetch_log`) instead.

    Raises:
        UnknownDatasetError: unknown name and no `custom`.
        HashMismatchError: the only copies found were corrupt (they are quarantined).
        FetchError: nothing usable found; the message lists every place looked and the fix.
        ConfigError: a relative `dest` (a project folder) leads outside the project through a symbolic
            link, and `TUNEBENCH_ALLOW_OUTSIDE=1` is not set (`paths.outside_project`).
    """
    spec = dataset if isinstance(dataset, DatasetSpec) else get_spec(dataset, custom)
    dest = Path(dest)
    if not dest.is_absolute() and (why := paths.outside_project(dest)):  # a project folder, as `paths.raw_dir`
        raise ConfigError(f"{dest} {why}")
    packaged = next((fs for fs in spec.filesets if fs.packaged), None)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    if packaged is not None:
        return write_manifest_for(spec, packaged, dest, [fetch_packaged(packaged)])
    _remove_temp(dest)  # what a killed fetch left
    attempt = FetchAttempt(spec, dest, [Path(m) for m in mirrors], progress, timeout, retries)
    try:
        with terminate_as_interrupt():
            fs, entries = attempt.run()
    except BaseException:
        _remove_temp(dest)
        if created and not any(dest.iterdir()):
            dest.rmdir()
        raise
    _remove_temp(dest)
    return write_manifest_for(spec, fs, dest, entries)


def write_manifest_for(spec: DatasetSpec, fs: FileSet, dest: Path, entries: list[dict]) -> dict[str, Any]:
    """Write the manifest of a fetched file set atomically, log where its files came from; return the record."""
    record = {
        "dataset": spec.name,
        "task": spec.task,
        "kind": spec.kind,
        "n_classes": spec.n_classes,
        "fileset": fs.label,
        "format": fs.format,
        "files": entries,
    }
    write_manifest(dest, record)
    append_fetch_log(dest, record, now_iso())
    return record


def _remove_temp(dest: Path) -> None:
    """Delete our temporary files and folders in `dest`."""
    for p in dest.glob(".*"):
        if p.name.endswith(PART) and p.is_file():
            p.unlink(missing_ok=True)
        elif p.name.startswith(".pip-") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def availability(name: str, dest: Path, mirrors: Sequence[Path] = (), *, custom: dict | None = None) -> str:
    """Say where a dataset would come from, without hashing or downloading anything.

    Args:
        `name`, `dest`, `mirrors`, `custom`: as for `fetch`.

    Returns:
        `cached`, `mirror: <folders>`, `download needed`, `download needed (pip: <req>)`,
        `packaged (scikit-learn <version>)` or `unavailable (...)`.

    Raises:
        UnknownDatasetError: unknown name and no `custom`.
    """
    spec = get_spec(name, custom)
    dest = Path(dest)
    packaged = next((fs for fs in spec.filesets if fs.packaged), None)
    if packaged is not None:
        return f"packaged ({packaged_version(packaged)})"
    manifest = read_manifest(dest)
    if manifest and manifest.get("dataset") == spec.name and _manifest_files_present(dest, manifest):
        return "cached"
    attempt = FetchAttempt(spec, dest, [Path(m) for m in mirrors], False, 1, 0)
    for fs in spec.filesets:
        found = [next((c for c in attempt.candidates(fs, f) if c[3]), None) for f in fs.files]
        if all(found):
            if all(c[0] == "cache" for c in found):
                return "cached (not verified yet)"
            kind = "path" if any(c[0] == "path" for c in found) else "mirror"
            places = sorted({str(c[1] if kind == "path" else c[1].parent) for c in found if c[0] == kind})
            return f"{kind}: " + ", ".join(places)
    for fs in spec.filesets:
        if all(f.remote for f in fs.files):
            pips = sorted({f.archive.pip for f in fs.files if f.archive and f.archive.pip})
            return f"download needed (pip: {', '.join(pips)})" if pips else "download needed"
    missing = [f.path or f.name for fs in spec.filesets for f in fs.files]
    return f"unavailable ({', '.join(missing)} not found)"


def _manifest_files_present(dest: Path, manifest: dict) -> bool:
    """True when every file the manifest lists exists in `dest` with the recorded size."""
    files = manifest.get("files") or []
    for e in files:
        if not isinstance(e, dict):
            continue
        p = dest / str(e.get("name"))
        if not p.is_file() or p.stat().st_size != e.get("size"):
            return False
    return bool(files)


__all__ = ["MANIFEST", "QUARANTINE", "availability", "fetch"]
