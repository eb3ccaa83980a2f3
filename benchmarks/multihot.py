"""Benchmark the compact multi-hot path (CSR + per-batch densify) against dense float32.

On an IMDB-shaped input (25,000 reviews, top 10,000 words) it measures, in one
run, each path in its own subprocess for clean peaks:

1. peak RSS of preprocessing + training the Keras 16-16-1 model (rmsprop,
   batch 512) for a few epochs: dense float32 vs CSR (goal: CSR/dense <= 0.25);
2. training throughput after the first (tracing) epoch, paired epoch by epoch
   in one process so that load from other processes cancels (goal: CSR/dense >= 0.90);
3. vectorization speed of `pipeline.features.multi_hot` vs Chollet's textbook
   Python loop (goal: >= 20x).

The input is synthetic and says so: token ranks follow a Zipf law (exponent
1.0) over IMDB's 88,584-word vocabulary, review lengths a log-normal with
IMDB's train statistics (median 178, mean ~239 tokens, clipped to 11..2,494),
a start marker 1 first, indices `rank + 3`, and indices >= num_words mapped to
2, exactly as `keras.datasets.imdb.load_data(num_words=10000)` returns them.

Usage: `python -m benchmarks.multihot [--rows 25000] [--rounds 12] [--out benchmarks/results/multihot.json]`
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import ROOT
from benchmarks.runner import Run, parser

IMDB_VOCAB = 88_584
GOALS = {"memory_ratio_max": 0.25, "throughput_ratio_min": 0.90, "vectorize_speedup_min": 20.0}


def imdb_like_sequences(rows: int, num_words: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Make IMDB-shaped token sequences and balanced binary labels.

    Args:
        `rows`: number of reviews.
        `num_words`: indices at or above it become 2 (OOV), as Keras does.
        `seed`: random seed.

    Returns:
        `(sequences, labels)`: object array of int32 arrays, int64 labels.
    """
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(178.0), 0.766, rows), 11, 2494).astype(np.int64)
    cdf = np.cumsum(1.0 / np.arange(1, IMDB_VOCAB + 1))
    ranks = np.searchsorted(cdf / cdf[-1], rng.random(int(lengths.sum()))) + 1
    tokens = (ranks + 3).astype(np.int32)
    tokens[tokens >= num_words] = 2
    seqs = np.empty(rows, dtype=object)
    for i, part in enumerate(np.split(tokens, np.cumsum(lengths)[:-1])):
        seqs[i] = np.concatenate([[1], part]).astype(np.int32)
    labels = rng.permutation(np.arange(rows) % 2).astype(np.int64)
    return seqs, labels


def vectorize_textbook(sequences, dimension: int) -> np.ndarray:
    """Chollet's `vectorize_sequences`, verbatim (float64, one Python step per row)."""
    results = np.zeros((len(sequences), dimension))
    for i, seq in enumerate(sequences):
        results[i, seq] = 1.0
    return results


def _rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    import psutil  # noqa: PLC0415

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build_model(num_words: int):
    """The book's IMDB model: Dense 16 relu, Dense 16 relu, Dense 1 sigmoid, rmsprop."""
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((num_words,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def train_worker(path: str, rows: int, num_words: int, epochs: int, batch: int) -> dict:
    """Preprocess and train in this process; return memory and timing figures.

    Args:
        `path`: `csr` (compact, densified per batch), `dense` (float32 array
            through the same tf.data pipeline) or `dense_numpy` (float32 array
            passed to `model.fit` directly, the textbook way).
        `rows`, `num_words`, `epochs`, `batch`: the workload.

    Returns:
        Figures: RSS before the data, peak RSS, preprocessing seconds, epoch seconds.
    """
    from pipeline.models.runtime import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    import keras  # noqa: PLC0415

    from pipeline.models.batches import make_dataset  # noqa: PLC0415
    from pipeline.features import multi_hot  # noqa: PLC0415

    model = _build_model(num_words)
    base_rss = _rss_mb()
    seqs, labels = imdb_like_sequences(rows, num_words)
    t0 = time.perf_counter()
    X = multi_hot(seqs, num_words)
    if path != "csr":
        X = X.toarray()
    prep_s = time.perf_counter() - t0
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    if path == "dense_numpy":
        model.fit(X, labels, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])  # noqa: E501
    else:
        ds = make_dataset(X, labels, batch, shuffle=True, seed=0)
        model.fit(ds, epochs=epochs, shuffle=False, verbose=0, callbacks=[Timer()])
    steady = times[1:] or times  # the first epoch pays tf.function tracing
    return {
        "path": path,
        "rss_before_data_mb": round(base_rss, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "data_peak_mb": round(_peak_rss_mb() - base_rss, 1),
        "features_mb": round(_matrix_mb(X), 1),
        "nnz": int(X.nnz) if hasattr(X, "nnz") else int(np.count_nonzero(X)),
        "preprocess_s": round(prep_s, 3),
        "epoch_s": [round(t, 3) for t in times],
        "samples_per_s": round(rows / float(np.median(steady)), 1),
    }


def throughput_worker(rows: int, num_words: int, rounds: int, batch: int) -> dict:
    """Paired throughput: alternate one epoch per input path in one process, `rounds` times.

    On a shared machine other processes slow whole stretches of time; pairing
    each CSR epoch with a neighbouring dense epoch (order alternating) lets
    that noise cancel in the per-round ratio.

    Returns:
        Per-path epoch times and the median per-round throughput ratio CSR / dense.
    """
    from pipeline.models.runtime import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow()
    from pipeline.models.batches import make_dataset  # noqa: PLC0415
    from pipeline.features import multi_hot  # noqa: PLC0415

    seqs, labels = imdb_like_sequences(rows, num_words)
    X = multi_hot(seqs, num_words)
    paths = {"csr": X, "dense": X.toarray()}
    fits = {}
    for name, data in paths.items():
        model = _build_model(num_words)
        ds = make_dataset(data, labels, batch, shuffle=True, seed=0)
        fits[name] = (model, ds)
        model.fit(ds, epochs=1, shuffle=False, verbose=0)  # tracing epoch, not timed
    times: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(rounds):
        for name in paths if r % 2 == 0 else reversed(paths):
            model, ds = fits[name]
            t0, c0 = time.perf_counter(), time.process_time()
            model.fit(ds, epochs=1, shuffle=False, verbose=0)
            times[name].append(round(time.perf_counter() - t0, 4))
            cpu[name].append(round(time.process_time() - c0, 4))
    ratios = [d / c for c, d in zip(times["csr"], times["dense"])]
    return {
        "epoch_s": times,
        "epoch_cpu_s": cpu,
        "samples_per_s_median": {k: round(rows / float(np.median(v)), 1) for k, v in times.items()},
        "csr_over_dense_per_round": [round(x, 3) for x in ratios],
        "csr_over_dense_median": round(float(np.median(ratios)), 3),
        "csr_over_dense_geometric_mean": round(float(np.exp(np.mean(np.log(ratios)))), 3),
        "csr_over_dense_cpu_time": round(float(np.median(cpu["dense"]) / np.median(cpu["csr"])), 3),
    }


def _matrix_mb(X) -> float:
    """Bytes held by a dense array or a CSR matrix, in MiB."""
    if hasattr(X, "nnz"):
        return (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20
    return X.nbytes / 2**20


def vectorize_worker(rows: int, num_words: int, repeats: int) -> dict:
    """Time `multi_hot` against the textbook loop, first call (cold memory) and best of `repeats` (warm).

    The textbook's cost is mostly allocating and zeroing its 2 GB float64
    array: in a fresh process the first call pays the kernel's page faults
    (and, with transparent huge pages, compaction); later calls reuse freed
    pages. Both figures are reported; equality of the results is checked.
    """
    from pipeline.features import multi_hot  # noqa: PLC0415

    seqs, _ = imdb_like_sequences(rows, num_words)
    fast, slow = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        X = multi_hot(seqs, num_words)
        fast.append(time.perf_counter() - t0)
        if i < 3:
            t0 = time.perf_counter()
            ref = vectorize_textbook(seqs, num_words)
            slow.append(time.perf_counter() - t0)
            equal = bool(np.array_equal(X.toarray(), ref))
            del ref
    results = np.zeros((len(seqs), num_words))  # the textbook loop alone, on already-touched memory
    results[:] = 1.0
    t0 = time.perf_counter()
    for i, seq in enumerate(seqs):
        results[i, seq] = 0.0
    loop_only = time.perf_counter() - t0
    return {
        "multi_hot_first_s": round(fast[0], 4),
        "multi_hot_best_s": round(min(fast), 4),
        "multi_hot_runs_s": [round(t, 4) for t in fast],
        "textbook_first_s": round(slow[0], 4),
        "textbook_best_s": round(min(slow), 4),
        "textbook_runs_s": [round(t, 4) for t in slow],
        "textbook_loop_only_s": round(loop_only, 4),
        "equal_to_textbook": equal,
        "tokens": int(sum(len(s) for s in seqs)),
        "mean_length": round(float(np.mean([len(s) for s in seqs])), 1),
    }


def _run_worker(args: list[str]) -> dict:
    """Run this script as a worker subprocess and return its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.multihot", *args, "--result", str(out)]
        subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"})
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> dict:
    """Run every worker, compute the ratios against the goals, print and save them."""
    run = Run("benchmarks.multihot", argv)
    ap = parser(__doc__, "multihot.json")
    ap.add_argument("--rows", type=int, default=25_000)
    ap.add_argument("--num-words", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=2, help="memory runs per path, interleaved")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=12, help="paired throughput epochs per path")
    ap.add_argument("--worker", choices=["csr", "dense", "dense_numpy", "vectorize", "throughput"])
    ap.add_argument("--result")
    args = ap.parse_args(argv)
    if args.worker:
        if args.worker == "vectorize":
            result = vectorize_worker(args.rows, args.num_words, args.repeats)
        elif args.worker == "throughput":
            result = throughput_worker(args.rows, args.num_words, args.rounds, args.batch)
        else:
            result = train_worker(args.worker, args.rows, args.num_words, args.epochs, args.batch)
        Path(args.result).write_text(json.dumps(result))
        return result
    common = ["--rows", str(args.rows), "--num-words", str(args.num_words), "--epochs", str(args.epochs),
              "--batch", str(args.batch), "--repeats", str(args.repeats), "--rounds", str(args.rounds)]  # fmt: skip
    runs: dict[str, list[dict]] = {"dense": [], "csr": [], "dense_numpy": []}
    for _ in range(args.trials):  # interleaved, so load from other processes hits every path alike
        for path in runs:
            runs[path].append(_run_worker([*common, "--worker", path]))
    runs["throughput"] = _run_worker([*common, "--worker", "throughput"])
    runs["vectorize"] = _run_worker([*common, "--worker", "vectorize"])
    report = _report(args, runs)
    run.save(args.out, report)
    print(json.dumps({"ratios": report["ratios"], "goals_met": report["goals_met"]}, indent=2))
    return report


def _summary(trials: list[dict], rows: int) -> dict:
    """Pool the trials of one path: max peak memory; throughput from the best and the median epoch.

    Other processes on a shared machine only ever add time, so the best
    (fastest) steady epoch is the least disturbed figure; the median is kept
    alongside.
    """
    steady = [t for run in trials for t in (run["epoch_s"][1:] or run["epoch_s"])]
    return {
        "peak_rss_mb": max(r["peak_rss_mb"] for r in trials),
        "data_peak_mb": max(r["data_peak_mb"] for r in trials),
        "rss_before_data_mb": max(r["rss_before_data_mb"] for r in trials),
        "features_mb": trials[0]["features_mb"],
        "preprocess_s": min(r["preprocess_s"] for r in trials),
        "samples_per_s_best_epoch": round(rows / min(steady), 1),
        "samples_per_s_median_epoch": round(rows / float(np.median(steady)), 1),
    }


def _ratio(a: dict, b: dict, key: str) -> float:
    """`a[key] / b[key]` rounded to 3 decimals."""
    return round(a[key] / b[key], 3)


def _report(args, runs: dict) -> dict:
    """Assemble the saved report: workload, machine, raw figures, ratios and goals."""
    dense, csr, numpy_fit = (_summary(runs[p], args.rows) for p in ("dense", "csr", "dense_numpy"))
    vec = runs["vectorize"]
    ratios = {
        "memory_data_peak_csr_over_dense": round(csr["data_peak_mb"] / dense["data_peak_mb"], 3),
        "memory_total_peak_rss_csr_over_dense": round(csr["peak_rss_mb"] / dense["peak_rss_mb"], 3),
        "throughput_csr_over_dense": runs["throughput"]["csr_over_dense_median"],
        "throughput_csr_over_dense_geometric_mean": runs["throughput"]["csr_over_dense_geometric_mean"],
        "throughput_csr_over_dense_per_cpu_second": runs["throughput"]["csr_over_dense_cpu_time"],
        "throughput_csr_over_dense_unpaired_best_epochs": _ratio(csr, dense, "samples_per_s_best_epoch"),
        "throughput_csr_over_dense_numpy_fit_unpaired_best_epochs": _ratio(csr, numpy_fit, "samples_per_s_best_epoch"),
        "vectorize_speedup_first_call": round(vec["textbook_first_s"] / vec["multi_hot_first_s"], 1),
        "vectorize_speedup_best_of": round(vec["textbook_best_s"] / vec["multi_hot_best_s"], 1),
    }
    met = {
        "memory_data_peak": ratios["memory_data_peak_csr_over_dense"] <= GOALS["memory_ratio_max"],
        "memory_total_rss": ratios["memory_total_peak_rss_csr_over_dense"] <= GOALS["memory_ratio_max"],
        "throughput": ratios["throughput_csr_over_dense"] >= GOALS["throughput_ratio_min"],
        "vectorize_first_call": ratios["vectorize_speedup_first_call"] >= GOALS["vectorize_speedup_min"],
        "vectorize_best_of": ratios["vectorize_speedup_best_of"] >= GOALS["vectorize_speedup_min"],
    }
    return {
        "workload": {
            "rows": args.rows,
            "num_words": args.num_words,
            "epochs": args.epochs,
            "batch": args.batch,
            "trials_per_path": args.trials,
            "model": "Dense 16 relu, Dense 16 relu, Dense 1 sigmoid; rmsprop; binary_crossentropy",
            "input": "synthetic: Zipf(1.0) word ranks over 88,584 words, log-normal lengths "
            "(IMDB train: median 178, mean ~239), start marker 1, indices >= num_words -> 2",
            "mean_length": vec["mean_length"],
            "tokens": vec["tokens"],
            "tf_threads": int(os.environ.get("TUNEBENCH_THREADS", "1")),
        },
        "summary": {"dense": dense, "csr": csr, "dense_numpy_fit": numpy_fit},
        "runs": runs,
        "ratios": ratios,
        "goals": GOALS,
        "goals_met": met,
        "notes": [
            "each path runs in its own subprocess; data_peak = peak RSS (ru_maxrss) minus the RSS after "
            "importing TensorFlow and building the model; total = whole-process peak RSS",
            "dense = float32 array through the same tf.data pipeline (pipeline.models.batches); "
            "dense_numpy_fit = the float32 array passed to model.fit directly",
            "throughput (the goal) = median over rounds of the paired ratio dense epoch time / CSR epoch "
            "time, one process alternating one epoch of each (tracing epoch excluded); the unpaired "
            "figures come from the separate memory runs: rows / best steady epoch, pooled over trials; "
            "per_cpu_second = median process CPU time per epoch (all threads), dense / CSR: the ratio "
            "to expect when no core is free for the input pipeline",
            "vectorize: first call = each function's first call in a fresh process (the textbook pays "
            "for faulting in 2 GB); best_of = warm repeats; textbook_loop_only_s = the loop alone on "
            "memory already touched",
        ],
    }


if __name__ == "__main__":
    main()
