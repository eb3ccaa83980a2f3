"""Seeded train/validation/test splits, K-fold indices and stratified subsampling.

All functions return sorted index arrays (rows keep their source order) and
are deterministic for a given seed. For classification, every part of a
split (train, validation, a test part carved from train, and the train part
of every fold) must contain every class present in the rows being split;
otherwise a `ValueError` names the part and the missing classes, so a model
is never trained or validated blind to a class by accident. The validation
part of a fold is exempt (a class needs K rows to reach all K of them).
`max_rows` subsampling is stratified and may drop classes rarer than
1/max_rows; later splits then check only the classes that remain.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, StratifiedShuffleSplit


def check_classes(y_part: np.ndarray, classes: np.ndarray, what: str) -> None:
    """Raise when `y_part` lacks any of `classes`.

    Args:
        `y_part`: labels of one part of a split.
        `classes`: the classes that must all be present.
        `what`: name of the part for the message (`val`, `fold 2 train`, ...).

    Raises:
        ValueError: naming the part and the absent classes.
    """
    missing = np.setdiff1d(classes, np.unique(y_part))
    if missing.size:
        raise ValueError(
            f"the {what} part ({len(y_part)} rows) has no row of class(es) {missing.tolist()}; "
            "use more data, a larger fraction, or stratify=True"
        )


def _check_stratifiable(y: np.ndarray, need: int, what: str) -> None:
    """Raise when a class has fewer than `need` rows, so a stratified split cannot keep it everywhere."""
    classes, counts = np.unique(y, return_counts=True)
    small = classes[counts < need]
    if small.size:
        c = int(small[0])
        raise ValueError(
            f"cannot make a stratified {what} split: class {c} has only "
            f"{int(counts[classes == c][0])} row(s), at least {need} are needed "
            f"(classes under {need} rows: {small.tolist()})"
        )


def held_out(n: int, fraction: float) -> int:
    """How many of `n` rows a `holdout` of `fraction` holds out (rounded up)."""
    return int(np.ceil(fraction * n))


def holdout(
    y: np.ndarray, fraction: float, seed: int, *, stratify: bool, classify: bool, what: str = "val"
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into a kept part and a held-out part of `fraction`.

    Args:
        `y`: labels of the rows.
        `fraction`: share of rows held out, in (0, 1).
        `seed`: random seed.
        `stratify`: keep class proportions (classification only).
        `classify`: True for classification tasks (enables the class checks).
        `what`: name of the held-out part (`val` or `test`) for messages.

    Returns:
        `(kept_idx, held_idx)`, each sorted.

    Raises:
        ValueError: when a part would be empty or lack a class.
    """
    n = len(y)
    n_held = held_out(n, fraction)
    if n_held < 1 or n - n_held < 1:
        raise ValueError(f"a {what} fraction of {fraction} of {n} rows leaves an empty part")
    if classify and stratify:
        _check_stratifiable(y, 2, what)
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_held, random_state=seed)
        try:
            kept, held = next(splitter.split(np.zeros(n), y))
        except ValueError as err:
            raise ValueError(f"cannot make a stratified {what} split of {n} rows: {err}") from err
    else:
        perm = np.random.default_rng(seed).permutation(n)
        held, kept = perm[:n_held], perm[n_held:]
    kept, held = np.sort(kept), np.sort(held)
    if classify:
        classes = np.unique(y)
        check_classes(y[kept], classes, f"{what}-split train")
        check_classes(y[held], classes, what)
    return kept, held


def kfold(y: np.ndarray, k: int, seed: int, *, stratify: bool, classify: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return K shuffled folds as `(train_idx, val_idx)` pairs.

    Args:
        `y`: labels of the rows.
        `k`: number of folds, >= 2.
        `seed`: random seed.
        `stratify`: stratified folds (classification only).
        `classify`: True for classification tasks.

    Returns:
        K pairs of sorted int64 index arrays.

    Raises:
        ValueError: when `k` exceeds the rows or a fold's train part lacks a class.
    """
    n = len(y)
    if k < 2 or k > n:
        raise ValueError(f"kfold must be between 2 and the {n} training rows, got {k}")
    if classify and stratify:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [(np.sort(tr).astype(np.int64), np.sort(va).astype(np.int64)) for tr, va in splitter.split(np.zeros(n), y)]
    if classify:
        classes = np.unique(y)
        for i, (tr, _) in enumerate(folds):
            check_classes(y[tr], classes, f"fold {i} train")
    return folds


def subsample(y: np.ndarray, max_rows: int, seed: int, *, stratify: bool, classify: bool) -> np.ndarray:
    """Choose at most `max_rows` rows, stratified for classification.

    Args:
        `y`: labels of the rows.
        `max_rows`: row budget (>= 1).
        `seed`: random seed.
        `stratify`: keep class proportions (classification only).
        `classify`: True for classification tasks.

    Returns:
        Sorted indices of the kept rows (all rows when `max_rows >= len(y)`).
        Stratified when asked and possible; with more classes than `max_rows`
        or a class of a single row it falls back to a plain seeded sample.
    """
    n = len(y)
    if max_rows >= n:
        return np.arange(n)
    if classify and stratify and np.unique(y).size <= max_rows:
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() >= 2:
            splitter = StratifiedShuffleSplit(n_splits=1, train_size=max_rows, random_state=seed)
            kept, _ = next(splitter.split(np.zeros(n), y))
            return np.sort(kept)
    return np.sort(np.random.default_rng(seed).permutation(n)[:max_rows])
