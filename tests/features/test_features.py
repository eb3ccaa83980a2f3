"""pipeline.features: multi-hot and Keras text conventions, scaling, PCA, images, configuration."""

from __future__ import annotations


import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.decomposition import PCA as SkPCA

from pipeline.datasets import RawData as Raw
from pipeline.features import OOV, PCA, DataError, Vocabulary, multi_hot, preprocess, tokenize
from pipeline.features import pca as pca_module


def textbook(sequences, dimension):
    """Chollet's vectorize_sequences."""
    results = np.zeros((len(sequences), dimension))
    for i, seq in enumerate(sequences):
        results[i, seq] = 1.0
    return results


def seqs(*rows):
    out = np.empty(len(rows), dtype=object)
    out[:] = [np.asarray(r, dtype=np.int32) for r in rows]
    return out


REVIEWS = [
    "A great film, great acting!",
    "Bad plot. Bad acting; the film drags.",
    "",
    "I don't like it",
    "great great great",
    "The plot is fine",
]


# -- multi-hot ------------------------------------------------------------------------------------
def test_multi_hot_equals_textbook_and_is_compact():
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 50, size=rng.integers(0, 30)) for _ in range(40)]
    rows[3] = np.array([1, 7, 7, 7, 9], dtype=np.int32)  # duplicates collapse to 1
    m = multi_hot(seqs(*rows), 50)
    assert sp.isspmatrix_csr(m) and m.dtype == np.float32 and m.has_canonical_format
    np.testing.assert_array_equal(m.toarray(), textbook(rows, 50))
    assert m.nnz == sum(len(set(r.tolist())) for r in rows)


def test_multi_hot_maps_rare_indices_to_oov_like_keras():
    m = multi_hot(seqs([1, 4, 12, 30], [1, 5]), 10)
    np.testing.assert_array_equal(m.toarray(), textbook([[1, 4, 2, 2], [1, 5]], 10))


def test_multi_hot_accepts_lists_and_empty_rows():
    m = multi_hot([[1, 3], [], [4]], 6)
    np.testing.assert_array_equal(m.toarray()[1], np.zeros(6))
    assert multi_hot([[], []], 6).shape == (2, 6)


@pytest.mark.parametrize(
    "rows, vocab, match",
    [
        ([[1, 4], [1, -3]], None, "row 1 contains index -3"),
        ([[1, 4], [1, 5], [1, 99]], 50, r"row 2 contains index 99; indices must lie in \[0, 50\)"),
    ],
)
def test_multi_hot_rejects_bad_indices_naming_the_row(rows, vocab, match):
    with pytest.raises(ValueError, match=match):
        multi_hot(seqs(*rows), 10, vocab_size=vocab)


def test_multi_hot_rejects_float_indices():
    with pytest.raises(ValueError, match="integers"):
        multi_hot([np.array([1.5, 2.0])], 10)


def test_sequence_vocab_bound_comes_from_word_index():
    x = seqs(*([[1, 4], [1, 5], [1, 6], [1, 7]] * 3))
    meta = {"word_index": {"a": 1, "b": 2, "c": 3, "d": 4}}  # Keras ranks: indices 4..7 are valid
    raw = Raw(
        "s",
        "binary",
        "sequences",
        x,
        np.arange(12) % 2,
        x_test=seqs([1, 4], [1, 9]),
        y_test=np.array([1, 0]),
        meta=meta,
    )
    data = preprocess(
        raw.__class__(**{**raw.__dict__, "x_test": x[:2], "y_test": np.array([0, 1])}),
        {"kind": "multi_hot", "num_words": 6},
    )
    assert data.X_train[:, 2].nnz > 0  # 6 and 7 are valid but >= num_words: OOV
    with pytest.raises(ValueError, match=r"row 1 contains index 9; indices must lie in \[0, 8\)"):
        preprocess(raw, {"kind": "multi_hot", "num_words": 6})


# -- text and Keras conventions -------------------------------------------------------------------
def test_tokenize_lowercases_and_keeps_apostrophes():
    assert tokenize("I DON'T like it... 10/10!") == ["i", "don't", "like", "it", "10", "10"]


def test_vocabulary_follows_keras_conventions():
    vocab = Vocabulary.fit(["b a c", "a b", "a d d"], num_words=100)
    # counts: a=3, b=2, d=2, c=1 -> ties (b, d) alphabetical; rank r has index r + 3
    assert vocab.words == ["a", "b", "d", "c"]
    assert vocab.index == {"a": 4, "b": 5, "d": 6, "c": 7}
    (enc,) = vocab.encode(["a zzz c"])
    assert enc.tolist() == [4, OOV, 7]  # unknown -> 2; no padding 0, no start 1, index 3 unused


def test_vocabulary_num_words_keeps_the_most_frequent():
    vocab = Vocabulary.fit(["b a c", "a b", "a d d"], num_words=6)
    assert vocab.words == ["a", "b"]  # indices 4 and 5 are < 6
    assert vocab.encode(["d c a"])[0].tolist() == [OOV, OOV, 4]


def test_text_rows_and_empty_documents():
    raw = Raw("rt", "binary", "text", REVIEWS * 4, np.array([1, 0, 0, 0, 1, 1] * 4), n_classes=2)
    data = preprocess(raw, {"kind": "multi_hot", "num_words": 50, "seed": 1})
    vocab = data.transformer.vocab
    X = data.transformer.transform_raw(["great film", "", "!!! ...", "unseenword"])
    assert X.shape == (4, 50) and sp.isspmatrix_csr(X)
    assert sorted(X[0].indices.tolist()) == sorted([vocab.index["great"], vocab.index["film"]])
    assert X[1].nnz == 0 and X[2].nnz == 0  # empty documents are all-zero rows
    assert X[3].indices.tolist() == [OOV]


def test_text_vocabulary_is_fit_on_train_only():
    train = ["alpha beta"] * 10 + ["gamma"] * 10
    test = ["omega omega omega"]
    raw = Raw("t", "binary", "text", train, np.array([0, 1] * 10), x_test=test, y_test=np.array([1]), n_classes=2)
    data = preprocess(raw, {"kind": "multi_hot", "num_words": 20})
    assert "omega" not in data.transformer.vocab.index
    assert data.X_test[0].indices.tolist() == [OOV]


def test_non_string_document_names_the_row():
    raw = Raw("t", "binary", "text", ["ok", "fine", None, "good"] * 3, np.array([0, 1, 0, 1] * 3))
    with pytest.raises(DataError, match="dataset 't': text row 2 is NoneType") as info:
        preprocess(raw, {"kind": "multi_hot", "stratify": False})
    assert isinstance(info.value.__cause__, TypeError)


# -- standardization ------------------------------------------------------------------------------
def test_standardize_uses_train_statistics():
    bc = load_breast_cancer()
    data = preprocess(Raw("bc", "binary", "tabular", bc.data, bc.target, n_classes=2), {"kind": "standardize"})
    st = data.transformer.step
    assert data.X_train.dtype == np.float32 and data.input_shape == (30,)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.X_train.std(axis=0), 1, atol=1e-4)
    assert abs(data.X_test.mean()) > 1e-4  # test is not re-standardized on itself
    raw_test = data.transformer.base(bc.data[:5])
    np.testing.assert_allclose(data.transformer.transform_raw(bc.data[:5]), (raw_test - st.mean) / st.std, rtol=1e-5)


def test_constant_column_gets_unit_std_and_maps_to_zero():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(5, 2, 60), np.full(60, 7.25), rng.normal(0, 1, 60)])
    data = preprocess(Raw("c", "regression", "tabular", X, rng.normal(size=60)), {"kind": "standardize"})
    assert data.transformer.step.std[1] == 1.0
    assert np.all(data.X_train[:, 1] == 0) and np.all(data.X_test[:, 1] == 0)


def test_nan_and_inf_name_column_and_row_count():
    X = np.random.default_rng(0).normal(size=(30, 4))
    X[[3, 7], 2] = np.nan
    X[9, 2] = np.inf
    raw = Raw("n", "regression", "tabular", X, np.zeros(30), meta={"feature_names": ["a", "b", "c", "d"]})
    with pytest.raises(DataError, match=r"feature column 2 \('c'\) has 3 row\(s\) with NaN, inf or a value beyond"):
        preprocess(raw, {"kind": "standardize", "test_fraction": 0.1, "val_fraction": 0.1, "seed": 0})
    raw.x_train = X[~np.isnan(X).any(1) & np.isfinite(X).all(1)]
    data = preprocess(raw.__class__(**{**raw.__dict__, "y_train": np.zeros(len(raw.x_train))}), {"kind": "standardize"})
    with pytest.raises(ValueError, match="column 2"):
        data.transformer.transform_raw(X)


# -- PCA --------------------------------------------------------------------------------------------
def _aligned(a, b):
    """`a` with each column's sign matched to `b`."""
    return a * np.sign(np.sum(a * b, axis=0))


def test_pca_matches_sklearn_up_to_sign():
    X = load_digits().data
    ours = PCA(10).fit(X)
    sk = SkPCA(10, svd_solver="full").fit(X)
    np.testing.assert_allclose(_aligned(ours.transform(X), sk.transform(X)), sk.transform(X), atol=1e-3)
    np.testing.assert_allclose(ours.explained_variance_ratio[:10], sk.explained_variance_ratio_, rtol=1e-6)
    assert ours.method == "exact"


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.95])
def test_pca_variance_fraction_selects_like_sklearn(fraction):
    X = load_digits().data
    assert PCA(fraction).fit(X).k == SkPCA(fraction, svd_solver="full").fit(X).n_components_


def test_whitening_gives_unit_variance():
    data = preprocess(Raw("d", "multiclass", "tabular", load_digits().data, load_digits().target, n_classes=10),
                      {"kind": "pca", "n_components": 12, "whiten": True})  # fmt: skip
    assert data.input_shape == (12,)
    np.testing.assert_allclose(data.X_train.var(axis=0), 1.0, rtol=1e-4)


def test_randomized_pca_for_wide_data(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 80)) * 3 + rng.normal(scale=0.1, size=(200, 80))
    monkeypatch.setattr(pca_module, "WIDE_FEATURES", 50)
    ours = PCA(0.9).fit(X)
    sk = SkPCA(ours.k, svd_solver="full").fit(X)
    assert ours.method == "randomized" and ours.k == SkPCA(0.9, svd_solver="full").fit(X).n_components_
    np.testing.assert_allclose(_aligned(ours.transform(X), sk.transform(X)), sk.transform(X), atol=1e-2)


def test_too_many_components_is_a_clear_error():
    with pytest.raises(ValueError, match="n_components=65 exceeds what the data allows: 64 features"):
        PCA(65).fit(load_digits().data)
    with pytest.raises(ValueError, match="n_components"):
        PCA(1.5)


# -- images ----------------------------------------------------------------------------------------
def _images(n=120, shape=(6, 5), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), np.arange(n) % 3


def test_images_scaled_channels_last_and_mean_subtracted():
    x, y = _images()
    raw = Raw("im", "multiclass", "images", x, y, x_test=x[:10], y_test=y[:10], n_classes=3)
    data = preprocess(raw, {"kind": "images", "val_fraction": 0.25})
    assert data.X_train.shape == (90, 6, 5, 1) and data.input_shape == (6, 5, 1) and data.X_train.dtype == np.float32
    np.testing.assert_allclose(data.X_test[..., 0], x[:10] / 255.0, rtol=1e-6)
    centred = preprocess(raw, {"kind": "images", "mean_subtraction": True, "val_fraction": 0.25})
    np.testing.assert_allclose(centred.X_train.mean(axis=0), 0, atol=1e-6)
    first = preprocess(raw, {"kind": "images", "channels_last": False, "val_fraction": 0.25})
    assert first.X_train.shape == (90, 1, 6, 5) and first.input_shape == (1, 6, 5)


def test_images_pca_flattens_pixels():
    x, y = _images(shape=(4, 4, 3))
    data = preprocess(Raw("im", "multiclass", "images", x, y, n_classes=3), {"kind": "pca", "n_components": 5})
    assert data.X_train.shape[1] == 5 and data.transformer.raw_shape == (4, 4, 3)


# -- configuration ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"kind": "tfidf"}, "kind='tfidf'"),
        ({"kind": "multi_hot"}, "a kind for 'tabular' data"),
        ({"kind": "standardize", "num_word": 5}, r"unknown key\(s\) \['num_word'\]"),
        ({"kind": "pca"}, "n_components=None"),
        ({"kind": "standardize", "val_fraction": 1.5}, "val_fraction=1.5"),
        ({"kind": "standardize", "kfold": 1}, "kfold=1"),
    ],
)
def test_bad_config_is_named(cfg, match):
    bc = load_breast_cancer()
    with pytest.raises(ValueError, match=match):
        preprocess(Raw("bc", "binary", "tabular", bc.data, bc.target), cfg)


def test_integral_float_n_components_is_a_count():
    d = load_digits()
    data = preprocess(Raw("d", "multiclass", "tabular", d.data, d.target), {"kind": "pca", "n_components": 20.0})
    assert data.input_shape == (20,) and data.params["n_components"] == 20
