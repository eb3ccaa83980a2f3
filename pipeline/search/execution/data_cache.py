"""What a worker process keeps between rounds: the processed data it loaded.

A search's rounds train on the same processed data; a process that runs several rounds'
trials (the launcher with one worker, a warm worker) loads it once. It is loaded again when
its manifest changed (a new `tunebench preprocess`), so a stale copy is never used. Keeping
the same arrays also lets `pipeline.models.batches` reuse their tensors across rounds.
"""

from __future__ import annotations

from pathlib import Path

from pipeline import paths

_LOADED: dict[Path, tuple[tuple[int, int], object]] = {}


def load_processed(data_dir: Path):
    """`ProcessedData.load(data_dir)`, kept for the next call while its manifest is unchanged."""
    from pipeline.features import ProcessedData  # noqa: PLC0415

    key = Path(data_dir).resolve()
    try:
        st = (key / paths.MANIFEST).stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    hit = _LOADED.get(key)
    if stamp is not None and hit is not None and hit[0] == stamp:
        return hit[1]
    data = ProcessedData.load(key)
    _LOADED.clear()  # one data set at a time: a process searches one benchmark
    if stamp is not None:
        _LOADED[key] = (stamp, data)
    return data
