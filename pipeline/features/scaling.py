"""Fitted feature scalers: per-column standardization and mean-image subtraction.

Both are fit on training rows only and store plain arrays (`to_arrays` /
`from_arrays`), so they save to `.npz` without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.datasets.formats import unusable


def check_finite(X: np.ndarray, what: str, feature_names: Sequence[str] | None = None) -> None:
    """Refuse values no model can use (NaN, infinite, beyond float32), naming the first bad column and its row count.

    Args:
        `X`: 2-D feature matrix (images are checked flattened).
        `what`: which input this is, for the message (`x_train`, ...).
        `feature_names`: optional column names for the message.

    Raises:
        ValueError: when any value is NaN, +/-inf or beyond float32's range (`pipeline.datasets.formats.unusable`).
    """
    if not np.issubdtype(X.dtype, np.floating):
        return
    flat = X.reshape(len(X), -1)
    bad = unusable(flat)
    if not bad.any():
        return
    per_col = bad.sum(axis=0)
    col = int(np.argmax(per_col > 0))
    name = f" ({feature_names[col]!r})" if feature_names is not None and col < len(feature_names) else ""
    first_row = int(np.argmax(bad[:, col]))
    raise ValueError(
        f"{what}: feature column {col}{name} has {int(per_col[col])} row(s) with NaN, inf or a value beyond "
        f"float32's range (first at row {first_row}, from 0: {flat[first_row, col]:g}); "
        f"{int(bad.any(axis=1).sum())} row(s) affected in all"
    )


def _training_rows(X: np.ndarray, what: str) -> np.ndarray:
    """`X` as float64 to fit `what` on; ValueError for zero rows."""
    if len(X) == 0:
        raise ValueError(f"cannot fit {what} on zero rows")
    return np.asarray(X, dtype=np.float64)


class Standardizer:
    """Per-column standardization `(x - mean) / std` with train statistics.

    A constant column (all training values equal) gets `std = 1`, so it maps
    to exactly 0 instead of dividing by zero. The std is the population one
    (`ddof=0`), as `x.std(axis=0)` in Chollet's Boston example.
    """

    name = "standardize"

    def __init__(self):
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> Standardizer:
        """Compute the column means and stds of `X` (float64).

        Args:
            `X`: 2-D training features.

        Returns:
            `self`.

        Raises:
            ValueError: for an empty `X`.
        """
        X64 = _training_rows(X, "a standardizer")
        self.mean = X64.mean(axis=0)
        std = X64.std(axis=0)
        std[np.ptp(X64, axis=0) == 0] = 1.0
        self.std = std
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return `(X - mean) / std` as float32."""
        return ((np.asarray(X, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the fitted state as named arrays."""
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict | None = None) -> Standardizer:
        """Rebuild a fitted standardizer from `to_arrays` output."""
        obj = cls()
        obj.mean, obj.std = arrays["mean"], arrays["std"]
        return obj

    def params(self) -> dict:
        """Return the JSON parameters (none for this step)."""
        return {}


class MeanImage:
    """Subtract the mean training image (per pixel and channel)."""

    name = "mean_image"

    def __init__(self):
        self.mean: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> MeanImage:
        """Compute the mean image of `X` (N, ...) in float64.

        Raises:
            ValueError: for an empty `X`.
        """
        self.mean = _training_rows(X, "a mean image").mean(axis=0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return `X - mean` as float32."""
        return (np.asarray(X, dtype=np.float32) - self.mean.astype(np.float32)).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the fitted state as named arrays."""
        return {"mean": self.mean}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict | None = None) -> MeanImage:
        """Rebuild a fitted mean image from `to_arrays` output."""
        obj = cls()
        obj.mean = arrays["mean"]
        return obj

    def params(self) -> dict:
        """Return the JSON parameters (none for this step)."""
        return {}
