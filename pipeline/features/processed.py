"""`ProcessedData`: a dataset's model-ready features on disk and in memory, and its fold-safe training views.

Saved as `features.npz`, `labels.npz`, `transformer/` and `manifest.json` (written last, with every
file's SHA-256, checked again at each load); npz and JSON only, never pickle, and the same data
always gives the same bytes. `holdout_or_folds` / `iter_folds` give the training and validation
pairs (see `pipeline.features.preprocessing` for the K-fold choice).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from pipeline import fileio, paths
from pipeline.features import storage
from pipeline.features.transformer import Transformer

FORMAT_VERSION = 1
Matrix = np.ndarray | sp.csr_matrix


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
        files = {n: fileio.file_digest(d / n) for n in names}
        hashes = input_hashes if input_hashes is not None else self.input_hashes
        fileio.write_json_atomic(d / paths.MANIFEST, self.manifest(files, hashes), strict=True)
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
