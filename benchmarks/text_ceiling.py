"""How far bag-of-n-grams features go on a text dataset: linear models on tunebench's own multi-hot.

For each feature set (`--features`: n-gram orders and `num_words` budgets), the dataset is
preprocessed by the pipeline itself (same tokenizer, vocabulary ranking, split and seed as
`params.yaml`'s entry), then two linear classifiers are fitted on the training split, their
inverse regularization `C` chosen on the validation split, and scored on test:

* logistic regression on the multi-hot features;
* NB-weighted logistic regression (each column scaled by its naive-Bayes log-count ratio, the
  NBSVM recipe of Wang & Manning 2012, "Baselines and Bigrams", with a logistic loss).

It answers "is the MLP's test accuracy limited by the search or by the features?": when the
tuned network already matches the best linear model on the richest features, more search will
not reach a goal set above that ceiling. Saves `benchmarks/results/text_ceiling.json`.

    python -m benchmarks.text_ceiling          # rt_polarity from data/raw (`dvc repro fetch@rt_polarity` first)
    python -m benchmarks.text_ceiling --features 1:10000 1,2:30000 1,2:100000
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from benchmarks import ROOT
from benchmarks.runner import Run, parser
from pipeline import datasets, features
from pipeline.config import load_params

DEFAULT_FEATURES = ("1:10000", "1,2:30000", "1,2:100000")
C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def nb_ratio(x: sp.csr_matrix, y: np.ndarray) -> np.ndarray:
    """Naive-Bayes log-count ratio of each column (add-one smoothed), from the training rows."""
    p = 1.0 + np.asarray(x[y == 1].sum(axis=0)).ravel()
    q = 1.0 + np.asarray(x[y == 0].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


def fit_best(xs: dict, ys: dict) -> dict:
    """Logistic regression with `C` chosen on validation: val and test accuracy, the chosen `C`."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=5000).fit(xs["train"], ys["train"])
        val = model.score(xs["val"], ys["val"])
        if best is None or val > best["val"]:
            best = {"C": c, "val": round(val, 4), "test": round(model.score(xs["test"], ys["test"]), 4)}
    return best


def measure(raw, base_cfg: dict, ngrams: list[int], num_words: int) -> dict:
    """Both linear models on one feature set."""
    data = features.preprocess(raw, {**base_cfg, "ngrams": ngrams, "num_words": num_words})
    xs = {"train": data.X_train, "val": data.X_val, "test": data.X_test}
    ys = {"train": data.y_train, "val": data.y_val, "test": data.y_test}
    r = nb_ratio(data.X_train, data.y_train)
    nb = {k: sp.csr_matrix(x.multiply(r)) for k, x in xs.items()}
    return {"ngrams": ngrams, "num_words": num_words, "columns": int(data.X_train.shape[1]),
            "logistic": fit_best(xs, ys), "nb_logistic": fit_best(nb, ys)}  # fmt: skip


def parse_features(text: str) -> tuple[list[int], int]:
    """`1,2:30000` -> ([1, 2], 30000)."""
    orders, _, words = text.partition(":")
    return [int(n) for n in orders.split(",")], int(words)


def main(argv: list[str] | None = None) -> int:
    run = Run("benchmarks.text_ceiling", argv)
    ap = parser(__doc__, "text_ceiling.json")
    ap.add_argument("--dataset", default="rt_polarity", help="a multi_hot dataset of --params (default rt_polarity)")
    ap.add_argument("--project", default=str(ROOT), help="the project whose params.yaml and data/raw are used")
    ap.add_argument("--features", nargs="+", default=list(DEFAULT_FEATURES), help="ORDERS:NUM_WORDS, e.g. 1,2:30000")
    args = ap.parse_args(argv)
    project = Path(args.project)
    params = load_params(project / "params.yaml")
    cfg = params.dataset(args.dataset)
    base = cfg.preprocess.model_dump()
    if base.get("kind") != "multi_hot":
        print(f"error: {args.dataset} is not a multi_hot dataset in {project / 'params.yaml'}", file=sys.stderr)
        return 2
    raw_dir = project / "data" / "raw" / args.dataset
    try:
        raw = datasets.load(params.catalog_name(args.dataset), raw_dir, **cfg.options)
    except datasets.FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = []
    for spec in args.features:
        row = measure(raw, base, *parse_features(spec))
        rows.append(row)
        lg, nb = row["logistic"], row["nb_logistic"]
        print(f"{spec:>12} ({row['columns']} columns): "
              f"logistic val {lg['val']:.4f} test {lg['test']:.4f} (C {lg['C']}); "
              f"NB-logistic val {nb['val']:.4f} test {nb['test']:.4f} (C {nb['C']})")  # fmt: skip
    run.save(args.out, {"dataset": args.dataset, "split": {k: base.get(k) for k in ("val_fraction", "test_fraction",
                                                                                  "seed")},
                        "rows": rows, "wall_s": round(time.perf_counter() - t0, 1)})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
