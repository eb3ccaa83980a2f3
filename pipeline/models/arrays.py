"""Array conventions shared by the model families: dense float32 rows from dense or CSR input, label dtypes.

NumPy and SciPy only. A CSR matrix is densified a block of rows at a time, never whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

CHUNK_ROWS = 4096  # rows densified at a time for prediction


def dense(X, dtype=np.float32) -> np.ndarray:
    """`X` (a dense array or a sparse matrix, e.g. some rows of one) as a dense array of `dtype`."""
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=dtype)


def dense_chunks(X, size: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """Yield consecutive row blocks of `X` as dense float32 arrays (CSR densified block by block)."""
    for start in range(0, X.shape[0], size):
        yield dense(X[start : start + size])


def as_labels(task: str, y, *, classes=np.int64, targets=np.float32) -> np.ndarray:
    """`y` as class indices of dtype `classes` (binary, multiclass) or as values of dtype `targets` (regression)."""
    return np.asarray(y, dtype=targets if task == "regression" else classes)
