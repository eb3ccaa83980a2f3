"""A journal file whose records are never left half-written by a failed append (a full disk).

Optuna appends each batch of journal records with one write. When the disk fills up during
that write, the file keeps a cut record without its newline; Optuna's reader skips a cut last
line, but the next append (once space is freed) is glued onto it and the whole study stops
loading (`JSONDecodeError`). `SafeJournalFileBackend` appends under the journal's own lock and,
if the write fails, cuts the file back to its size before the write; opening a journal also
cuts a half-written last record that an append cut by a crash (power loss) left. A record that
cannot be read (a damaged file) is a `StorageError` naming the file and line (`corrupt_journal`),
also when it is the last one, which Optuna would skip until the next append glued it in.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from pipeline.errors import StorageError


def remove_stale_lock_renames(path: str | Path, min_age_s: float = 5.0) -> list[Path]:
    """Remove what a process killed while it released the journal's lock left next to the journal.

    Optuna releases the lock by renaming `<journal>.lock` to `<journal>.lock<uuid>.rename`, then
    unlinking that; a kill between the two leaves the renamed file in the study folder (a DVC
    output) for good. One older than `min_age_s` (by its change time, which the rename set) belongs
    to no live release, which takes microseconds. Returns the files removed.
    """
    path = Path(path)
    removed = []
    for leftover in path.parent.glob(f"{path.name}.lock*.rename"):
        try:
            if time.time() - leftover.stat().st_ctime > min_age_s:
                leftover.unlink()
                removed.append(leftover)
        except FileNotFoundError:
            pass
    return removed


class SafeJournalFileBackend(JournalFileBackend):
    """`JournalFileBackend` (with `JournalFileOpenLock`) whose appends are all or nothing."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.lock = JournalFileOpenLock(self.path)
        super().__init__(self.path, lock_obj=self.lock)
        if os.path.exists(self.path):
            with _held(self.lock):
                cut_partial_record(self.path)
                readable = _last_record_reads(self.path)
            if not readable:
                raise corrupt_journal(self.path)

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        try:
            yield from super().read_logs(log_number_from)
        except ValueError:  # `JSONDecodeError`, or Optuna's "Invalid log format."
            raise corrupt_journal(self.path) from None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = memoryview(("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8"))
        with _held(self.lock):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                size = os.lseek(fd, 0, os.SEEK_END)
                try:
                    while data:
                        data = data[os.write(fd, data) :]  # a full disk may write part, then fail
                    os.fsync(fd)
                except BaseException:
                    os.ftruncate(fd, size)  # shrinking needs no space
                    raise
            finally:
                os.close(fd)


@contextmanager
def _held(lock: JournalFileOpenLock) -> Iterator[None]:
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def cut_partial_record(path: str | Path) -> bool:
    """Cut a last record without its newline from journal `path` (call under its lock); True when one was cut."""
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return False
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return False
        start = max(0, size - (1 << 20))
        fh.seek(start)
        tail = fh.read()
        keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        fh.truncate(keep)
        return True


def _last_record_reads(path: str | Path) -> bool:
    """Whether the last record of journal `path` (ending in a newline) is valid JSON (an empty file: True)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - (1 << 20)))
        lines = fh.read().rstrip(b"\n").rsplit(b"\n", 1)
    return not lines[-1] or _reads(lines[-1])


def _reads(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def corrupt_journal(path: str | Path) -> StorageError:
    """The one-line error for journal `path` with a record that cannot be read: which line, and what to do."""
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the newline that ends the last record
    bad = next((i for i, line in enumerate(lines) if not _reads(line)), len(lines) - 1)
    where = f"Optuna journal {path}: line {bad + 1} of {len(lines)} is not a valid record"
    if bad == len(lines) - 1:
        return StorageError(
            f"{where} (the last one, likely cut short by a killed process or a crash): remove that line and rerun "
            "(a trial it left unfinished is run again), or move the file aside to start the studies afresh"
        )
    return StorageError(
        f"{where}, and the records after it build on it: restore the file from a backup, or move it aside to start "
        "the studies afresh, then rerun"
    )
