"""pipeline.models.batches: CSR (densified per batch) and dense inputs give the same batches, in seeded order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.models import batches
from pipeline.models.batches import make_dataset


def _csr(n=203, d=40, seed=0):
    X = sp.random(n, d, density=0.15, format="csr", dtype=np.float32, random_state=seed)
    X.data[:] = np.arange(1, X.nnz + 1, dtype=np.float32)  # distinct values catch misplaced entries
    return X


def _batches(ds):
    return [tuple(np.asarray(t) for t in (b if isinstance(b, tuple) else (b,))) for b in ds.as_numpy_iterator()]


def test_csr_and_dense_give_the_same_batches():
    X = _csr()
    y = np.arange(X.shape[0], dtype=np.int64)
    sparse = _batches(make_dataset(X, y, 32, shuffle=True, seed=5))
    dense = _batches(make_dataset(X.toarray(), y, 32, shuffle=True, seed=5))
    assert len(sparse) == len(dense) == 7
    for (xs, ys), (xd, yd) in zip(sparse, dense):
        assert xs.dtype == np.float32 and xs.shape[1] == 40
        np.testing.assert_array_equal(xs, xd)
        np.testing.assert_array_equal(ys, yd)
        np.testing.assert_array_equal(xs, X[ys].toarray())  # rows stay with their labels
    assert sorted(np.concatenate([b[1] for b in sparse]).tolist()) == list(range(203))


def test_order_is_repeatable_per_seed_and_reshuffled_per_epoch():
    X, y = _csr(), np.arange(203)
    ds = make_dataset(X, y, 50, shuffle=True, seed=1)
    epoch1 = np.concatenate([b[1] for b in _batches(ds)])
    epoch2 = np.concatenate([b[1] for b in _batches(ds)])
    again = make_dataset(X, y, 50, shuffle=True, seed=1)
    assert np.array_equal(epoch1, np.concatenate([b[1] for b in _batches(again)]))
    assert np.array_equal(epoch2, np.concatenate([b[1] for b in _batches(again)]))
    assert not np.array_equal(epoch1, epoch2)
    other = np.concatenate([b[1] for b in _batches(make_dataset(X, y, 50, shuffle=True, seed=2))])
    assert not np.array_equal(epoch1, other)


def test_no_shuffle_keeps_order_and_features_only():
    X = _csr(n=10)
    (xb,), (xb2,) = _batches(make_dataset(X, None, 6, shuffle=False, seed=0))
    np.testing.assert_array_equal(np.concatenate([xb, xb2]), X.toarray())


def test_dense_images_and_empty_csr_rows():
    images = np.random.default_rng(0).random((9, 4, 3, 1)).astype(np.float32)
    (xb, yb), *_ = _batches(make_dataset(images, np.arange(9.0, dtype=np.float32), 4, shuffle=False, seed=0))
    assert xb.shape == (4, 4, 3, 1) and yb.dtype == np.float32
    empty = sp.csr_matrix((5, 7), dtype=np.float32)
    ((xe, _),) = _batches(make_dataset(empty, np.zeros(5), 8, shuffle=False, seed=0))
    assert xe.shape == (5, 7) and not xe.any()


def test_non_canonical_csr_sums_duplicates_like_scipy():
    X = sp.csr_matrix((np.array([1.0, 2.0, 3.0], np.float32), [3, 1, 3], [0, 3, 3]), shape=(2, 5))
    ((xb,),) = _batches(make_dataset(X, None, 2, shuffle=False, seed=0))
    np.testing.assert_array_equal(xb, X.toarray())


def test_int64_positions_for_huge_batches_give_the_same_rows():
    tf = batches._tf()
    X = _csr(n=30, d=40)
    idx = tf.constant([5, 0, 29], tf.int64)
    small, huge = batches._csr_gather(X, 8), batches._csr_gather(X, 2**31 // 40 + 1)
    np.testing.assert_array_equal(small(idx).numpy(), X[[5, 0, 29]].toarray())
    np.testing.assert_array_equal(huge(idx).numpy(), X[[5, 0, 29]].toarray())


def test_bad_arguments():
    with pytest.raises(ValueError, match="3 rows but y has 2"):
        make_dataset(np.zeros((3, 2)), np.zeros(2), 2, shuffle=False, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(np.zeros((3, 2)), None, 0, shuffle=False, seed=0)


def test_keras_trains_from_a_csr_dataset():
    import keras  # noqa: PLC0415 - after make_dataset has configured TensorFlow

    X = _csr(n=64, d=20)
    sums = np.asarray(X.sum(axis=1)).ravel()
    y = (sums > np.median(sums)).astype(np.float32)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="rmsprop", loss="mse")
    history = model.fit(make_dataset(X, y, 16, shuffle=True, seed=0), epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
