"""Pinned digests (of the file, or of its gunzip-decompressed content) and quarantine of bad files."""

from __future__ import annotations

import gzip
import shutil
import zlib
from datetime import UTC, datetime
from pathlib import Path

from pipeline.fileio import file_digest, stream_digest

from .spec import FileSpec

QUARANTINE = ".quarantine"


def content_digest(path: Path, algorithm: str = "sha256") -> str:
    """Return the hex digest of a gzip file's decompressed content.

    Raises:
        ValueError: if the file is not a valid, complete gzip stream.
    """
    try:
        with gzip.open(path, "rb") as f:
            return stream_digest(f, algorithm)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"not a readable gzip file ({exc})") from exc


def pinned_digest(path: Path, spec: FileSpec) -> str:
    """Return the digest of `path` computed the way `spec` pins it (an `unreadable: ...` text on failure)."""
    if not spec.gunzip:
        return file_digest(path, spec.algorithm)
    try:
        return content_digest(path, spec.algorithm)
    except ValueError as exc:
        return f"unreadable: {exc}"


def quarantine(path: Path, dest: Path, name: str) -> Path:
    """Move a bad file to `dest/.quarantine/<name>.corrupt-<first 16 hex of its SHA-256>`; return that path.

    One copy per content: a copy with the same bytes already there is kept and `path` is deleted
    (a source that keeps serving the same wrong file fills no disk).
    """
    qdir = dest / QUARANTINE
    qdir.mkdir(parents=True, exist_ok=True)
    target = qdir / f"{name}.corrupt-{file_digest(path)[:16]}"
    if target.is_file():
        Path(path).unlink()
    else:
        shutil.move(str(path), target)
    return target


def now_iso() -> str:
    """Return the current UTC time as an ISO-8601 string (seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")
