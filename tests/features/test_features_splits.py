"""pipeline.features: seeded and stratified splits, absent classes, K-fold fold safety, subsampling."""

from __future__ import annotations


import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits

from pipeline.datasets import RawData as Raw
from pipeline.features import holdout_or_folds, iter_folds, preprocess
from pipeline.features import splits as split_module


def _digits(**kw):
    d = load_digits()
    return Raw("digits", "multiclass", "tabular", d.data, d.target, n_classes=10, **kw)


def test_splits_are_stratified_seeded_and_disjoint():
    y = load_digits().target
    kept, held = split_module.holdout(y, 0.2, 7, stratify=True, classify=True)
    assert len(held) == int(np.ceil(0.2 * len(y))) and not set(kept) & set(held)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(y)))
    share_all = np.bincount(y) / len(y)
    np.testing.assert_allclose(np.bincount(y[held]) / len(held), share_all, atol=0.01)
    again = split_module.holdout(y, 0.2, 7, stratify=True, classify=True)
    other = split_module.holdout(y, 0.2, 8, stratify=True, classify=True)
    assert np.array_equal(held, again[1]) and not np.array_equal(held, other[1])


def test_preprocess_sizes_without_official_test_split():
    data = preprocess(_digits(), {"kind": "standardize", "val_fraction": 0.25, "test_fraction": 0.2})
    n = len(load_digits().target)
    n_test = int(np.ceil(0.2 * n))
    assert len(data.y_test) == n_test
    assert len(data.y_val) == int(np.ceil(0.25 * (n - n_test)))
    assert len(data.y_train) + len(data.y_val) + n_test == n
    assert data.y_train.dtype == np.int64 and set(np.unique(data.y_val)) == set(range(10))


def test_regression_labels_are_float32_and_not_stratified():
    d = load_diabetes()
    data = preprocess(Raw("diab", "regression", "tabular", d.data, d.target), {"kind": "standardize"})
    assert data.y_train.dtype == np.float32 and data.n_classes is None


def test_class_too_rare_to_stratify_is_a_clear_error():
    y = np.array([0] * 20 + [1] * 20 + [2])
    raw = Raw("r", "multiclass", "tabular", np.random.default_rng(0).normal(size=(41, 3)), y, n_classes=3)
    with pytest.raises(ValueError, match="class 2 has only 1 row"):
        preprocess(raw, {"kind": "standardize"})


def test_unstratified_split_leaving_a_class_absent_is_a_clear_error():
    y = np.array([0] * 30 + [1] * 2)
    raw = Raw("r", "binary", "tabular", np.random.default_rng(0).normal(size=(32, 3)), y, n_classes=2)
    with pytest.raises(ValueError, match=r"has no row of class\(es\) \[1\]"):
        preprocess(raw, {"kind": "standardize", "stratify": False, "seed": 3})


def test_labels_out_of_range_are_refused():
    raw = Raw("r", "multiclass", "tabular", np.zeros((10, 2)), np.arange(10) % 4, n_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        preprocess(raw, {"kind": "standardize"})


def test_max_rows_subsamples_train_stratified():
    data = preprocess(_digits(), {"kind": "standardize", "max_rows": 300, "val_fraction": 0.2})
    assert len(data.y_train) + len(data.y_val) == 300
    assert set(np.unique(data.y_train)) == set(range(10))
    assert len(data.y_test) == int(np.ceil(0.2 * 1797))  # the test part is not subsampled


def test_kfold_is_fold_safe():
    d = load_diabetes()
    raw = Raw("boston_like", "regression", "tabular", d.data[:400], d.target[:400], d.data[400:], d.target[400:])
    data = preprocess(raw, {"kind": "standardize", "kfold": 4})
    assert data.X_val is None and len(data.folds) == 4 and data.X_train_base is not None
    val_rows = np.sort(np.concatenate([va for _, va in data.folds]))
    assert np.array_equal(val_rows, np.arange(400))  # each row validates exactly once
    pairs = list(iter_folds(data))
    assert len(pairs) == 4 and len(list(holdout_or_folds(data))) == 4
    for (tr, va), (X_tr, _, X_va, y_va) in zip(data.folds, pairs):
        base_tr = d.data[:400][tr]
        mean, std = base_tr.mean(axis=0), base_tr.std(axis=0)
        np.testing.assert_allclose(X_tr, (base_tr - mean) / std, atol=1e-5)  # fit inside the fold
        np.testing.assert_allclose(X_va, (d.data[:400][va] - mean) / std, atol=1e-5)
        assert not np.allclose(X_va, data.X_train[va], atol=1e-3)  # differs from the global fit
        np.testing.assert_array_equal(y_va, data.y_train[va])
    # the stored X_train / X_test use the fit on the whole training part (for the final model)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-5)


def test_kfold_pca_refits_inside_each_fold():
    data = preprocess(_digits(), {"kind": "pca", "n_components": 5, "kfold": 3})
    X_tr, _, X_va, _ = next(iter_folds(data))
    assert X_tr.shape[1] == X_va.shape[1] == 5
    np.testing.assert_allclose(X_tr.mean(axis=0), 0, atol=1e-4)


def test_kfold_classification_is_stratified():
    data = preprocess(_digits(), {"kind": "standardize", "kfold": 4})
    for _, va in data.folds:
        assert set(np.unique(data.y_train[va])) == set(range(10))


def test_holdout_yields_the_single_pair():
    data = preprocess(_digits(), {"kind": "standardize"})
    ((X_tr, y_tr, X_va, y_va),) = list(holdout_or_folds(data))
    assert X_tr is data.X_train and y_va is data.y_val
    with pytest.raises(ValueError, match="no folds"):
        next(iter_folds(data))
