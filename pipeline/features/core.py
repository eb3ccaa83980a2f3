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

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from pipeline import io, paths
from pipeline.features import splits, storage
from pipeline.features.transformer import Transformer, vocab_size_from_meta
from pipeline.tasks import TASKS

if TYPE_CHECKING:
    from pipeline.datasets import RawData

FORMAT_VERSION = 1
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
Matrix = np.ndarray | sp.csr_matrix


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
    unknown = sorted(set(cfg) - set(DEFAULTS) - {"kind"})
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


# -- the processed data ----------------------------------------------------------------------------
@dataclass
class ProcessedData:
    """Model-ready features of one dataset, with the transformer that made them.

    `X_*` are float32 `np.ndarray` or float32 `scipy.sparse.csr_matrix`; `y_*`
    int64 (classification) or float32 (regression). With K-fold, `X_val` and
    `y_val` are None, `folds` holds `(train_idx, val_idx)` into `X_train`, and
    `X_train_base` the pre-fit encoding used by `iter_folds`. `params` is the
    resolved configuration; `input_hashes` the raw files' SHA-256 when known.
    """

    task: str
    n_classes: int | None
    X_train: Matrix
    y_train: np.ndarray
    X_val: Matrix | None
    y_val: np.ndarray | None
    X_test: Matrix
    y_test: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]] | None
    transformer: Transformer
    name: str = "dataset"
    X_train_base: Matrix | None = None
    params: dict = field(default_factory=dict)
    input_hashes: dict | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the features (`Transformer.output_shape`)."""
        return self.transformer.output_shape()

    def manifest(self, files: dict[str, str], input_hashes: dict | None) -> dict:
        """Return the manifest: shapes, dtypes, nnz, parameters, file hashes, input hashes."""
        matrices = {k: storage.describe(getattr(self, k)) for k in ("X_train", "X_val", "X_test", "X_train_base")}
        labels = {
            k: None
            if getattr(self, k) is None
            else {"shape": list(getattr(self, k).shape), "dtype": str(getattr(self, k).dtype)}
            for k in ("y_train", "y_val", "y_test")
        }
        folds = None if self.folds is None else [{"train": len(tr), "val": len(va)} for tr, va in self.folds]
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "task": self.task,
            "n_classes": self.n_classes,
            "params": self.params,
            "features": matrices,
            "labels": labels,
            "folds": folds,
            "transformer": self.transformer.describe(),
            "files": files,
            "input_hashes": input_hashes,
        }

    def save(self, directory: str | Path, *, input_hashes: dict | None = None) -> Path:
        """Write `features.npz`, `labels.npz`, `transformer/` and `manifest.json` (last).

        Every file is written atomically; the same data always gives the
        same bytes (no timestamps anywhere).

        Args:
            `directory`: destination, conventionally `data/processed/<dataset>/`.
            `input_hashes`: hashes of the raw inputs for the manifest; default
                `self.input_hashes` (the raw data's `meta["files"]`).

        Returns:
            The path of `manifest.json`.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        feats: dict[str, np.ndarray] = {}
        for key in ("X_train", "X_val", "X_test", "X_train_base"):
            if getattr(self, key) is not None:
                feats.update(storage.matrix_to_arrays(key, getattr(self, key)))
        labels = {k: getattr(self, k) for k in ("y_train", "y_val", "y_test") if getattr(self, k) is not None}
        for i, (tr, va) in enumerate(self.folds or []):
            labels[f"fold{i}.train"], labels[f"fold{i}.val"] = tr, va
        storage.write_npz(d / "features.npz", feats)
        storage.write_npz(d / "labels.npz", labels)
        names = ["features.npz", "labels.npz"]
        names += [f"transformer/{n}" for n in self.transformer.save(d / "transformer")]
        files = {n: io.file_digest(d / n) for n in names}
        hashes = input_hashes if input_hashes is not None else self.input_hashes
        io.write_json_atomic(d / paths.MANIFEST, self.manifest(files, hashes), strict=True)
        return d / paths.MANIFEST

    @classmethod
    def load(cls, directory: str | Path) -> ProcessedData:
        """Read data written by `save` (no pickle), after checking every file against the manifest's SHA-256.

        Raises:
            MissingInputError: a file is missing, truncated or changed, or of another format version.
        """
        d = Path(directory)
        man = storage.read_manifest(d, FORMAT_VERSION)
        try:
            return cls._from_files(d, man)
        except (KeyError, IndexError, TypeError, ValueError, zipfile.BadZipFile) as exc:
            from pipeline.errors import MissingInputError  # noqa: PLC0415

            raise MissingInputError(f"{d} is corrupt ({type(exc).__name__}: {exc}); "
                                    f"rerun `{paths.producer(d / paths.MANIFEST)}`") from exc  # fmt: skip

    @classmethod
    def _from_files(cls, d: Path, man: dict) -> ProcessedData:
        feats = storage.read_npz(d / "features.npz")
        labels = storage.read_npz(d / "labels.npz")
        folds = None
        if man["folds"] is not None:
            folds = [(labels[f"fold{i}.train"], labels[f"fold{i}.val"]) for i in range(len(man["folds"]))]
        return cls(
            task=man["task"],
            n_classes=man["n_classes"],
            X_train=storage.arrays_to_matrix("X_train", feats),
            y_train=labels["y_train"],
            X_val=storage.arrays_to_matrix("X_val", feats),
            y_val=labels.get("y_val"),
            X_test=storage.arrays_to_matrix("X_test", feats),
            y_test=labels["y_test"],
            folds=folds,
            transformer=Transformer.load(d / "transformer"),
            name=man["name"],
            X_train_base=storage.arrays_to_matrix("X_train_base", feats),
            params=man["params"],
            input_hashes=man["input_hashes"],
        )


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
        ValueError: for invalid configuration, inputs (NaN/inf, bad indices,
            too many components) or splits that leave a class absent.
        TypeError: for a non-string text document.
    """
    p = resolve_config(cfg, raw.task, raw.kind)
    meta = dict(getattr(raw, "meta", None) or {})
    y0 = _labels(raw.y_train, raw.task, getattr(raw, "n_classes", None), "y_train")
    n_classes = _n_classes(raw, raw.task, y0)
    transformer = Transformer(
        p["kind"],
        raw.kind,
        {k: p[k] for k in TRANSFORM_KEYS[p["kind"]]},
        vocab_size=vocab_size_from_meta(meta),
        feature_names=meta.get("feature_names"),
    )
    transformer.validate(raw.x_train, "x_train")
    if raw.x_test is not None:
        transformer.validate(raw.x_test, "x_test")
    x_pool, y_pool, x_test, y_test = _split_pool(raw, p, n_classes)
    classify = raw.task != "regression"
    folds, X_val, y_val, base_keep = None, None, None, None
    if p["kfold"]:
        folds = splits.kfold(y_pool, p["kfold"], p["seed"], stratify=p["stratify"], classify=classify)
        X_train, base = transformer.fit_transform(x_pool)
        y_train = y_pool
        base_keep = base if transformer.step is not None else None
    else:
        tr, va = splits.holdout(
            y_pool, p["val_fraction"], p["seed"], stratify=p["stratify"], classify=classify, what="val"
        )
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


# -- cross-validation views ----------------------------------------------------------------------------
def iter_folds(data: ProcessedData) -> Iterator[tuple[Matrix, np.ndarray, Matrix, np.ndarray]]:
    """Yield `(X_tr, y_tr, X_va, y_va)` per fold, the fitted step refit inside each fold.

    Args:
        `data`: processed data made with `kfold`.

    Yields:
        Fold-safe features: the scaler / PCA / mean image is fit on the fold's
        train rows only (multi-hot has no fitted step and is sliced as is).

    Raises:
        ValueError: when `data` has no folds.
    """
    if data.folds is None:
        raise ValueError(f"{data.name}: no folds (preprocess with kfold >= 2)")
    for tr, va in data.folds:
        if data.transformer.step is None or data.X_train_base is None:
            yield data.X_train[tr], data.y_train[tr], data.X_train[va], data.y_train[va]
            continue
        fold_t = data.transformer.refit(data.X_train_base[tr])
        yield (
            fold_t.transform_base(data.X_train_base[tr]),
            data.y_train[tr],
            fold_t.transform_base(data.X_train_base[va]),
            data.y_train[va],
        )


def holdout_or_folds(data: ProcessedData) -> Iterator[tuple[Matrix, np.ndarray, Matrix, np.ndarray]]:
    """Yield the single `(X_train, y_train, X_val, y_val)` pair, or the K fold-safe pairs.

    Args:
        `data`: processed data.

    Yields:
        One tuple for a holdout split, K tuples (see `iter_folds`) with folds.
    """
    if data.folds is None:
        yield data.X_train, data.y_train, data.X_val, data.y_val
    else:
        yield from iter_folds(data)
