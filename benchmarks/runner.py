"""The benchmarks' shared runner: one result schema, the argument conventions, progress lines, atomic writes.

Every benchmark saves one JSON object (by default `benchmarks/results/<name>.json`):

    {"command":  "python -m benchmarks.text_ceiling --features 1:10000",  # how it was run (argv)
     "machine":  {"cpus", "cpu", "memory_gb", "platform",
                  "loadavg_1_5_15m_start", "loadavg_1_5_15m_end"},       # benchmarks.machine.machine
     "versions": {"python", "tunebench": "<git commit>[-dirty]", "tensorflow-cpu", "optuna", ...},
     "figures":  {...}}                                                    # the benchmark's own numbers

written atomically (`pipeline.fileio`): a reader sees the old result or the new one, never half of one.
A benchmark's `main(argv)` takes its arguments from `parser` (the module docstring as help, `--out`),
starts a `Run`, reports with `Run.progress` and ends with `Run.save`; `load` and `figures` read a result back.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from benchmarks.machine import loadavg, machine, versions
from pipeline import fileio

RESULTS = Path(__file__).resolve().parent / "results"
SCHEMA = ("command", "machine", "versions", "figures")  # the keys of every result, in this order


def parser(doc: str, out: str | None) -> argparse.ArgumentParser:
    """Arguments with the benchmarks' conventions: the module docstring's first line as description, the rest
    as epilog, and `--out` (default `benchmarks/results/<out>`; no `--out` when `out` is None)."""
    first, _, rest = doc.strip().partition("\n")
    ap = argparse.ArgumentParser(description=first, epilog=rest.strip() or None,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    if out is not None:
        ap.add_argument("--out", type=Path, default=RESULTS / out, help="the result's file (default: %(default)s)")
    return ap


class Run:
    """One run of a benchmark: the command it was started with, when, under what load."""

    def __init__(self, module: str, argv: list[str] | None = None):
        """`module`: the benchmark's module (`benchmarks.faults`); `argv`: its arguments (default `sys.argv[1:]`)."""
        self.command = shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])
        self.started = time.monotonic()
        self.load_at_start = loadavg()

    def seconds(self) -> float:
        """Seconds since the run began."""
        return time.monotonic() - self.started

    def progress(self, message: str) -> None:
        """One progress line on stderr, with the seconds since the run began."""
        print(f"[{self.seconds():7.1f} s] {message}", file=sys.stderr, flush=True)

    def result(self, figures: dict) -> dict:
        """The result object (`SCHEMA`) holding `figures`."""
        return {"command": self.command, "machine": machine(self.load_at_start), "versions": versions(),
                "figures": figures}  # fmt: skip

    def save(self, out: Path | str, figures: dict) -> dict:
        """Write the result holding `figures` to `out` atomically (keys in the order given); return it."""
        result = self.result(figures)
        fileio.write_json_atomic(out, result, sort_keys=False)
        self.progress(f"saved {out}")
        return result


def load(path: Path | str) -> dict:
    """The result saved at `path` (`SCHEMA`).

    Raises:
        ValueError: the file holds no result (other keys).
    """
    result = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(result, dict) or list(result) != list(SCHEMA):
        raise ValueError(f"{path} is not a benchmark result (keys {', '.join(SCHEMA)})")
    return result


def figures(path: Path | str) -> dict:
    """The figures of the result saved at `path` (see `load`)."""
    return load(path)["figures"]
