"""Read and atomically write `manifest.json`, the record of what a dataset folder holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.io import write_json_atomic
from pipeline.paths import MANIFEST


def write_manifest(dest: Path, manifest: dict[str, Any]) -> Path:
    """Write `dest/manifest.json` atomically (keys in the order given: people read it)."""
    write_json_atomic(dest / MANIFEST, manifest, sort_keys=False)
    return dest / MANIFEST


def read_manifest(dest: Path) -> dict[str, Any] | None:
    """Return the manifest in `dest`, or None when there is none or it is unreadable."""
    try:
        data = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
