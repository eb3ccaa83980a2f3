"""`manifest.json`, the record of what a dataset folder holds, and the fetch log of where it came from.

The manifest names only content (file names, digests, sizes, pins), so fetching the same bytes
again, from another source or into a moved project, writes the same bytes and DVC sees nothing
changed downstream. Where each file came from and when is appended to the fetch log, a file
beside the folder (`paths.fetch_log`), outside the DVC output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipeline.fileio import write_json_atomic
from pipeline.paths import MANIFEST, fetch_log
from pipeline.redaction import redact

PROVENANCE = ("source", "fetched_at")  # per-file keys of a fetch record that go to the log, not the manifest


def content_manifest(record: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a fetch record: every key but each file's `source` and `fetched_at`."""
    files = [{k: v for k, v in e.items() if k not in PROVENANCE} for e in record.get("files", [])]
    return {**record, "files": files}


def write_manifest(dest: Path, record: dict[str, Any]) -> Path:
    """Write the content-only manifest of `record` to `dest/manifest.json` atomically (keys in the order given)."""
    write_json_atomic(dest / MANIFEST, content_manifest(record), sort_keys=False)
    return dest / MANIFEST


def append_fetch_log(dest: Path, record: dict[str, Any], fetched_at: str) -> Path:
    """Append one JSON line (time, dataset, each file's digest and source) to the fetch log of `dest`.

    The log is for people: nothing reads it back, so a line cut short by a crash harms nothing.
    """
    log = fetch_log(Path(dest))
    line = {"fetched_at": fetched_at, "dataset": record.get("dataset"), "folder": os.path.abspath(dest),
            "files": [{"name": e.get("name"), "sha256": e.get("sha256"), "source": e.get("source"),
                       "fetched_at": e.get("fetched_at")} for e in record.get("files", [])]}  # fmt: skip
    with open(log, "a", encoding="utf-8") as f:
        f.write(redact(json.dumps(line, sort_keys=False)) + "\n")
    return log


def read_manifest(dest: Path) -> dict[str, Any] | None:
    """Return the manifest in `dest`, or None when there is none or it is unreadable."""
    try:
        data = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
