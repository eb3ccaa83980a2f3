"""Warm worker processes: one process per worker slot, kept across the rounds of a search.

Starting a worker costs seconds (Python, MLflow, then TensorFlow at its first trial: 6-11 s
of CPU on the 2-core reference machine), as much as several small trials. Workers are forked
from a fork server (`multiprocessing`'s `forkserver`, where the platform has it) that imported
the search's modules once, TensorFlow included for the Keras families (`fork_server`): a worker
then starts in about a second. A fork server's workers inherit its environment, not the
launcher's: each job carries the launcher's environment, applied before it runs. Within
`warm_workers()` (a whole search) a slot's process stays up between its jobs, waiting on its
pipe for the next one; it is replaced when it has run `per_process` trials (TensorFlow keeps
memory of every model it built, see `memory.trials_per_process`), when the next job wants
another thread count, or when it died. Outside that context, each `dispatch.run_workers` call has its
own pool, closed when it returns. A worker whose launcher dies finds its pipe closed and exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline import retry


BUSY, ENDED = object(), object()  # `Warm.report()`: the job runs; the process died without answering


@dataclass
class Warm:
    """One slot's process, its end of the pipe, its thread count and the trials it was given."""

    proc: Any
    conn: Any
    threads: int
    trials: int = 0

    def report(self):
        """What its job came to: `BUSY` (running), None (done), the failure line, or `ENDED` (the process died)."""
        if self.conn.poll():
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                return ENDED
        return BUSY if self.proc.is_alive() else ENDED


class WorkerPool:
    """The warm processes of one launcher, by slot; `target(conn, board)` is each process's body."""

    def __init__(self, target: Callable[..., None]):
        self.ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        self.board = retry.shared_board(self.ctx)
        self.target = target
        self.slots: dict[int, Warm] = {}

    def preload(self, modules: list[str], *, start: bool = False) -> None:
        """Modules the fork server imports when it starts (once per launcher process: later calls do nothing).

        `start`: start the fork server now, without waiting for it, so that its imports (TensorFlow:
        seconds) overlap what this process does before its first worker is needed.
        """
        if self.ctx.get_start_method() == "forkserver":
            self.ctx.set_forkserver_preload(modules)
            if start:
                from multiprocessing import forkserver  # noqa: PLC0415

                forkserver.ensure_running()

    def submit(self, slot: int, message: tuple, *, threads: int, trials: int, per_process: int) -> Warm:
        """Hand `message` (a job of `trials` trials) to `slot`'s process, started or replaced as needed."""
        warm = self.slots.get(slot)
        fits = per_process <= 0 or warm is None or warm.trials + trials <= per_process
        if warm is not None and (not warm.proc.is_alive() or warm.threads != threads or not fits):
            self.retire(slot)
            warm = None
        if warm is not None:
            try:
                warm.conn.send(message)
            except OSError:  # it died since it was last seen alive
                self.retire(slot)
                warm = None
        if warm is None:
            warm = self._start(slot, threads)
            warm.conn.send(message)
        warm.trials += trials
        return warm

    def _start(self, slot: int, threads: int) -> Warm:
        ours, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(target=self.target, args=(theirs, self.board.shared), name=f"tunebench-worker-{slot}")
        proc.start()
        theirs.close()  # the worker holds the only other end: it sees EOF once this launcher is gone
        self.slots[slot] = Warm(proc, ours, threads)
        return self.slots[slot]

    def retire(self, slot: int) -> int | None:
        """Stop `slot`'s process (asked to end; waited for) and forget it; its exit code."""
        warm = self.slots.pop(slot, None)
        if warm is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            warm.conn.send(None)
        warm.proc.join()
        warm.conn.close()
        return warm.proc.exitcode

    def close(self) -> None:
        """Stop every process (each finishes the job it is running first)."""
        for slot in list(self.slots):
            self.retire(slot)


_current: WorkerPool | None = None


@contextlib.contextmanager
def warm_workers(target: Callable[..., None]) -> Iterator[WorkerPool]:
    """Keep worker processes warm across the `run_workers` calls inside (a whole search)."""
    global _current
    outer, _current = _current, WorkerPool(target) if _current is None else _current
    try:
        yield _current
    finally:
        if outer is None:
            _current.close()
        _current = outer


def current() -> WorkerPool | None:
    """The pool of the enclosing `warm_workers()`, if any."""
    return _current
