"""Read and atomically write `manifest.json`, the record of what a dataset folder holds."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def write_manifest(dest: Path, manifest: dict[str, Any]) -> Path:
    """Write `dest/manifest.json` through a temporary file and an atomic rename."""
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=dest)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, dest / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest / MANIFEST


def read_manifest(dest: Path) -> dict[str, Any] | None:
    """Return the manifest in `dest`, or None when there is none or it is unreadable."""
    try:
        data = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
