"""The search's entry point for `pipeline.stages`: run every round of one benchmark.

The work is split by job: `rounds` (studies, narrowing, the result), `round_setup` (a round's
study and parent run), `execution` (the processes that run trials, the budget across them),
`samplers` (samplers and pruners), `objective` (one trial), `storage` (Optuna storages).
"""

from __future__ import annotations

from pipeline import retry
from pipeline.config import Params
from pipeline.search.rounds import run_search as _run_search
from pipeline.search.execution.fork_server import keep_warm


def run_search(params: Params, key: str, **kwargs) -> dict:
    """Run (or resume) every round of benchmark `key`: `rounds.run_search` (see there)."""
    # worker processes stay up from one round to the next; outages are ridden out only while the search runs
    with keep_warm(), retry.scoped():
        return _run_search(params, key, **kwargs)
