"""The one I/O layer: atomic file and folder writes, file hashes, and reading an earlier stage's JSON.

A file is written to a hidden sibling (`.<name>.tmp-<pid>-<random>`), flushed to disk and renamed
over its place, so a reader sees the old file or the new one, never half of one. A folder (a
stage's whole output) is built the same way next to its place and swapped in whole
(`staged_dir`); `clean_staging` removes what a killed writer left. Paths themselves come from
`pipeline.paths`. Light on purpose: standard library only.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pipeline.processes import worker_alive

CHUNK = 1 << 20  # bytes read at a time when hashing


def _tmp_prefix(dest: Path) -> str:
    """Prefix of the hidden siblings written before `dest` is replaced (see `clean_staging`)."""
    return f".{dest.name}.tmp-{os.getpid()}-"


def temp_sibling(dest: Path) -> Path:
    """A fresh hidden path next to `dest` to write it under first (`clean_staging` removes it if its process died)."""
    return dest.with_name(f"{_tmp_prefix(dest)}{secrets.token_hex(4)}")


@contextmanager
def atomic_file(path: Path | str) -> Iterator[IO[bytes]]:
    """Yield a binary file handle whose content replaces `path` atomically when the block ends.

    The folder is created if needed; the new file gets the usual permissions (umask). If the block
    raises, `path` is untouched and the temporary file removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, data: Any, *, sort_keys: bool = True, strict: bool = False) -> None:
    """Write `data` as indented JSON (and a final newline) to `path` atomically.

    Args:
        `sort_keys`: sort mapping keys (False keeps the order given, for files people read).
        `strict`: plain JSON types only and no NaN (the feature store, whose bytes must be
            reproducible); otherwise other objects are written as `str(obj)`.
    """
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False, allow_nan=not strict,
                      default=None if strict else str)  # fmt: skip
    write_text_atomic(path, text + "\n")


def read_json(path: Path | str) -> dict:
    """Read a JSON object written by an earlier stage.

    Raises:
        MissingInputError: the file is missing or not a valid JSON object; the message names the command
            that rewrites it (`pipeline.paths.producer`).
    """
    from pipeline.errors import MissingInputError  # noqa: PLC0415
    from pipeline.paths import producer  # noqa: PLC0415

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingInputError(f"{path} is missing: run `{producer(path)}` first (or `dvc repro`)") from None
    except ValueError as exc:  # not UTF-8, or not JSON
        raise MissingInputError(f"{path} is corrupt (not valid JSON: {exc}); rerun `{producer(path)}`") from None
    if not isinstance(data, dict):
        raise MissingInputError(f"{path} is corrupt (not a JSON object); rerun `{producer(path)}`")
    return data


def stream_digest(fh: IO[bytes], algorithm: str = "sha256") -> str:
    """Hex digest of what a binary stream yields to its end, read in 1 MiB blocks (`algorithm`: a `hashlib` name)."""
    h = hashlib.new(algorithm)
    while block := fh.read(CHUNK):
        h.update(block)
    return h.hexdigest()


def file_digest(path: Path | str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    with open(path, "rb") as fh:
        return stream_digest(fh, algorithm)


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes, or `missing` if it does not exist (for tags and input hashes)."""
    try:
        return file_digest(path)
    except FileNotFoundError:
        return "missing"


# -- folders ------------------------------------------------------------------------------------
def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move a fully written folder into place (the old one goes only after the new one is complete)."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield a new hidden folder next to `dest` to write it in; it replaces `dest` whole when the block ends.

    If the block raises, the folder is removed and `dest` is untouched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=_tmp_prefix(dest)))
    try:
        yield tmp
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_staging(dest: Path) -> None:
    """Remove what an interrupted writer of `dest` left: temporary files and folders of ended processes, a cut swap.

    A temporary of a process that still runs (a concurrent stage) is kept. If a kill fell between
    the two renames of a folder swap, the complete old output is put back.
    """

    prefix = f".{dest.name}.tmp-"
    for tmp in dest.parent.glob(glob.escape(prefix) + "*"):
        pid = tmp.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and (int(pid) == os.getpid() or worker_alive({"host": socket.gethostname(), "pid": int(pid)})):
            continue
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    old = dest.with_name(f".{dest.name}.old")
    if old.is_dir() and not dest.exists():
        old.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
