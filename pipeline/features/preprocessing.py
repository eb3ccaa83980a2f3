"""`preprocess(raw, cfg) -> ProcessedData`: splits, fitted transformer, features on disk.

Order of work: (1) the test part is the source's official test split, or a
seeded (stratified) `test_fraction` carved from train; (2) the remaining
training pool is optionally subsampled to `max_rows` (stratified); (3) it is
split into train/val (`val_fraction`), or into K folds when `kfold` is set;
(4) the transformer is fit on the train part only and applied unchanged to
val and test.

K-fold choice (fold safety): with folds, `X_train` is the whole training
pool transformed by the transformer fit on the whole pool (the space of
`X_test`, used to retrain the final model on all train). Cross-validation
must not use it: `iter_folds` / `holdout_or_folds` refit the data-dependent
step (scaler, PCA, mean image) on each fold's train rows from
`X_train_base`, the pre-fit encoding stored alongside (only when folds and a
fitted step exist). Multi-hot of sequences has no fitted state; for raw text
the vocabulary is fit once on the whole training pool (a documented, mild
leak of word ranks into fold validation rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError, TunebenchError
from pipeline.features import splits
from pipeline.features.processed import ProcessedData
from pipeline.features.transformer import Transformer, vocab_size_from_meta
from pipeline.tasks import TASKS

if TYPE_CHECKING:
    from pipeline.datasets import RawData

# preprocessing kind -> the raw kinds (`pipeline.datasets.spec.KINDS`) it accepts
SOURCES = {
    "multi_hot": ("sequences", "text"),
    "standardize": ("tabular", "images"),
    "pca": ("tabular", "images"),
    "images": ("images",),
}
DEFAULTS: dict[str, Any] = {
    "num_words": 10000,
    "n_components": None,
    "whiten": False,
    "scale": True,
    "mean_subtraction": False,
    "channels_last": True,
    "val_fraction": 0.2,
    "test_fraction": 0.2,
    "kfold": 0,
    "seed": 42,
    "stratify": None,
    "max_rows": None,
}
TRANSFORM_KEYS = {
    "multi_hot": ("num_words",),
    "standardize": ("scale",),
    "pca": ("n_components", "whiten", "seed", "scale"),
    "images": ("scale", "mean_subtraction", "channels_last"),
}


class SizeError(ConfigError, ValueError):
    """A preprocess setting the dataset's size cannot satisfy (too many folds or components, an empty split)."""


class DataError(TunebenchError, ValueError):
    """Raw data no model can use: NaN, infinite or float32-overflowing values, bad labels, indices or texts."""


# -- configuration -----------------------------------------------------------------------------
def _require(ok: bool, key: str, value, expected: str) -> None:
    """Raise `ValueError` naming `key` unless `ok`."""
    if not ok:
        raise ValueError(f"preprocess config: {key}={value!r} is invalid; expected {expected}")


def _is_int(v) -> bool:
    """True for Python or NumPy integers, not for bools."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def resolve_config(cfg: dict, task: str, source: str) -> dict:
    """Validate `cfg` and fill in defaults.

    Args:
        `cfg`: preprocessing section (`kind` plus the keys of `DEFAULTS`).
        `task`: `binary`, `multiclass` or `regression`.
        `source`: raw kind of the dataset.

    Returns:
        The complete parameter dict (`stratify` resolved for the task).

    Raises:
        ValueError: naming the first unknown key or invalid value.
    """
    unknown = sorted(set(cfg) - set(DEFAULTS) - {"kind", "ngrams"})
    if unknown:
        raise ValueError(f"preprocess config: unknown key(s) {unknown}; known: {sorted(DEFAULTS)} + kind")
    kind = cfg.get("kind")
    _require(kind in SOURCES, "kind", kind, " | ".join(SOURCES))
    _require(
        source in SOURCES[kind],
        "kind",
        kind,
        f"a kind for {source!r} data ({' | '.join(k for k in SOURCES if source in SOURCES[k])})",
    )
    _require(task in TASKS, "task", task, " | ".join(TASKS))
    p = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}, "kind": kind}
    _require(_is_int(p["num_words"]) and p["num_words"] > 3, "num_words", p["num_words"], "an int > 3")
    ngrams = [int(n) for n in p.pop("ngrams", None) or [1]]  # kept only when not [1]: today's files unchanged
    ok = ngrams in ([1], [1, 2]) and (ngrams == [1] or kind == "multi_hot")
    _require(ok, "ngrams", ngrams, "[1] or [1, 2] (kind multi_hot)")
    if ngrams != [1]:
        p["ngrams"] = ngrams
    for key in ("whiten", "scale", "mean_subtraction", "channels_last"):
        _require(isinstance(p[key], bool), key, p[key], "true or false")
    for key in ("val_fraction", "test_fraction"):
        _require(isinstance(p[key], float) and 0 < p[key] < 1, key, p[key], "a float in (0, 1)")
    _require(_is_int(p["kfold"]) and (p["kfold"] == 0 or p["kfold"] >= 2), "kfold", p["kfold"], "0 or an int >= 2")
    _require(_is_int(p["seed"]) and p["seed"] >= 0, "seed", p["seed"], "an int >= 0")
    _require(
        p["max_rows"] is None or (_is_int(p["max_rows"]) and p["max_rows"] >= 1),
        "max_rows",
        p["max_rows"],
        "an int >= 1 or null",
    )
    if p["stratify"] is None:
        p["stratify"] = task != "regression"
    _require(isinstance(p["stratify"], bool), "stratify", p["stratify"], "true or false")
    if kind == "pca":
        n = p["n_components"]
        if isinstance(n, float) and n >= 1 and n.is_integer():
            n = int(n)  # a schema typed `float` turns a count of 20 into 20.0
        _require(
            n is not None
            and not isinstance(n, bool)
            and ((_is_int(n) and n >= 1) or (isinstance(n, float) and 0 < n < 1)),
            "n_components",
            n,
            "an int >= 1 or a variance fraction in (0, 1) (required for kind pca)",
        )
        p["n_components"] = int(n) if _is_int(n) else float(n)
    return p


# -- labels and indexing -------------------------------------------------------------------------
def _labels(y, task: str, n_classes: int | None, what: str) -> np.ndarray:
    """Return labels as int64 (classification) or float32 (regression), validated."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{what}: labels must be 1-D, got shape {y.shape}")
    if task == "regression":
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise ValueError(f"{what}: {int((~np.isfinite(y)).sum())} label(s) are NaN or inf")
        return y
    if y.size and not np.array_equal(y, np.round(y.astype(np.float64))):
        raise ValueError(f"{what}: classification labels must be integers")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        raise ValueError(f"{what}: labels must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]")
    return y


def _take(x, idx: np.ndarray):
    """Rows `idx` of an array, or of a list (text)."""
    return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]


def _n_classes(raw, task: str, y: np.ndarray) -> int | None:
    """Number of classes from the raw data, else from the labels."""
    if task == "regression":
        return None
    if getattr(raw, "n_classes", None):
        return int(raw.n_classes)
    return 2 if task == "binary" else int(y.max()) + 1


# -- the stage core -----------------------------------------------------------------------------------
def _split_pool(raw, p: dict, n_classes: int | None):
    """Return `(x_pool, y_pool, x_test, y_test)` after the test split and subsampling."""
    task, classify = raw.task, raw.task != "regression"
    x, y = raw.x_train, _labels(raw.y_train, task, n_classes, "y_train")
    if len(x) != len(y):
        raise ValueError(f"x_train has {len(x)} rows but y_train has {len(y)}")
    if raw.x_test is None:
        keep, test = splits.holdout(
            y, p["test_fraction"], p["seed"], stratify=p["stratify"], classify=classify, what="test"
        )
        x_test, y_test, x, y = _take(x, test), y[test], _take(x, keep), y[keep]
    else:
        x_test, y_test = raw.x_test, _labels(raw.y_test, task, n_classes, "y_test")
        if len(x_test) != len(y_test):
            raise ValueError(f"x_test has {len(x_test)} rows but y_test has {len(y_test)}")
    if p["max_rows"] is not None:
        idx = splits.subsample(y, p["max_rows"], p["seed"], stratify=p["stratify"], classify=classify)
        x, y = _take(x, idx), y[idx]
    return x, y, x_test, y_test


def _split_train(y_pool: np.ndarray, p: dict, classify: bool):
    """`(folds, None)` with `kfold`, else `(None, (train_idx, val_idx))`."""
    if p["kfold"]:
        return splits.kfold(y_pool, p["kfold"], p["seed"], stratify=p["stratify"], classify=classify), None
    return None, splits.holdout(y_pool, p["val_fraction"], p["seed"], stratify=p["stratify"], classify=classify)


def _check_sizes(raw, p: dict) -> str:
    """Refuse a split, fold count or component count that the data's rows and features cannot give.

    Returns:
        The sizes for a message: `N rows, T held out for test, M kept by max_rows`.

    Raises:
        SizeError: naming the dataset, the key, its value and the sizes (before any work is done).
    """
    n = len(raw.x_train)
    size, pool, capped = f"{n} rows", n, False
    if raw.x_test is None:
        n_test = splits.held_out(n, p["test_fraction"])
        pool, size = n - n_test, f"{n} rows, {n_test} held out for test"
    if p["max_rows"] is not None and p["max_rows"] < pool:
        pool, size, capped = p["max_rows"], f"{size}, {p['max_rows']} kept by max_rows", True

    def refuse(key: str, why: str) -> None:
        raise SizeError(f"dataset {raw.name!r} ({size}): preprocess.{key}={p[key]!r} {why}")

    if pool < 1:
        refuse("test_fraction", "leaves no row to train on; lower it, or add rows")
    if p["kfold"]:
        if p["kfold"] > pool:
            refuse("kfold", f"needs at least {p['kfold']} training rows, there are {pool}; use at most {pool} folds "
                            "(or 0 for a validation split)")  # fmt: skip
        n_train = pool - -(-pool // p["kfold"])  # the smallest train part of a fold
    else:
        n_val = splits.held_out(pool, p["val_fraction"])
        n_train = pool - n_val
        if n_train < 1:
            if capped:
                refuse("max_rows", f"leaves no row to train on: val_fraction={p['val_fraction']} holds out {n_val} "
                                   f"of its {pool} rows; raise max_rows or lower val_fraction")  # fmt: skip
            refuse("val_fraction", f"leaves no row to train on: it holds out {n_val} of {pool} rows; lower it, "
                                   "or add rows")  # fmt: skip
    k, n_features = p["n_components"], int(np.prod(np.shape(raw.x_train)[1:]))
    most, rows = min(n_train, n_features), f"{n_train} training rows{' of a fold' if p['kfold'] else ''}"
    if p["kind"] == "pca" and _is_int(k) and k > most:
        refuse("n_components", f"exceeds the {n_features} features or the {rows}; use at most {most}")
    return size


def preprocess(raw: RawData, cfg: dict) -> ProcessedData:
    """Turn raw data into model-ready features with a transformer fit on train only.

    Args:
        `raw`: a `pipeline.datasets.RawData` (duck-typed: `name`, `task`,
            `kind`, `x_train`, `y_train`, `x_test`, `y_test`, `n_classes`, `meta`).
        `cfg`: `kind` (`multi_hot` | `standardize` | `pca` | `images`) and the
            options of `DEFAULTS`; see the module docstring for the order of work.

    Returns:
        The processed data (in memory; call `.save(dir)` to store it).

    Raises:
        ValueError: for an invalid configuration.
        DataError: for unusable inputs (NaN, inf or beyond float32, bad labels or indices, non-string texts).
        SizeError: for settings the data's size cannot give (too many folds or components, an empty
            split, a class too rare for a split), before any work is done.
    """
    p = resolve_config(cfg, raw.task, raw.kind)
    meta = dict(getattr(raw, "meta", None) or {})
    transformer = Transformer(
        p["kind"],
        raw.kind,
        {k: p[k] for k in (*TRANSFORM_KEYS[p["kind"]], "ngrams") if k in p},
        vocab_size=vocab_size_from_meta(meta),
        feature_names=meta.get("feature_names"),
    )
    try:
        y0 = _labels(raw.y_train, raw.task, getattr(raw, "n_classes", None), "y_train")
        n_classes = _n_classes(raw, raw.task, y0)
        transformer.validate(raw.x_train, "x_train")
        if raw.x_test is not None:
            _labels(raw.y_test, raw.task, n_classes, "y_test")
            transformer.validate(raw.x_test, "x_test")
    except (TypeError, ValueError) as exc:
        raise DataError(f"dataset {raw.name!r}: {exc}; fix the source data") from exc
    size = _check_sizes(raw, p)
    try:
        x_pool, y_pool, x_test, y_test = _split_pool(raw, p, n_classes)
        folds, split = _split_train(y_pool, p, raw.task != "regression")
    except ValueError as exc:  # a class too rare for a split, or missing from a part
        raise SizeError(f"dataset {raw.name!r} ({size}): preprocess: {exc}") from exc
    X_val, y_val, base_keep = None, None, None
    if folds is not None:
        X_train, base = transformer.fit_transform(x_pool)
        y_train = y_pool
        base_keep = base if transformer.step is not None else None
    else:
        tr, va = split
        X_train, _ = transformer.fit_transform(_take(x_pool, tr))
        X_val, y_train, y_val = transformer.transform_raw(_take(x_pool, va)), y_pool[tr], y_pool[va]
    X_test = transformer.base(x_test, "x_test")
    return ProcessedData(
        task=raw.task,
        n_classes=n_classes,
        X_train=X_train,
        y_train=y_train,
        X_val=X_val,
        y_val=y_val,
        X_test=transformer.transform_base(X_test),
        y_test=y_test,
        folds=folds,
        transformer=transformer,
        name=str(raw.name),
        X_train_base=base_keep,
        params=p,
        input_hashes=meta.get("files"),
    )
