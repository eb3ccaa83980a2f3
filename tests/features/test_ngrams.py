"""N-gram multi-hot (`ngrams: [1, 2]`): a shared `num_words` budget, the same encoding for training,
saved-and-reloaded and served input, unigram output unchanged, sequences and bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.datasets import RawData as Raw
from pipeline.features import OOV, Vocabulary, preprocess
from pipeline.features.transformer import Transformer

DOCS = ["not good at all", "very good film", "not good", "good film good", "a very bad film"]


def test_bigrams_share_the_budget_ranked_with_words():
    vocab = Vocabulary.fit(DOCS, num_words=100, ngrams=[1, 2])
    # counts: good 5, film 3, then 2 each for "good film", not, "not good", very (ties alphabetical)
    assert vocab.words[:6] == ["good", "film", "good film", "not", "not good", "very"]
    assert vocab.index["not good"] == 5 + 3
    small = Vocabulary.fit(DOCS, num_words=8, ngrams=[1, 2])  # indices 4..7: four entries
    assert small.words == ["good", "film", "good film", "not"]
    (enc,) = small.encode(["not good film zzz"])
    # words (unknown -> OOV), then the known bigrams; "not good" is outside the budget: nothing
    assert enc.tolist() == [7, 4, 5, OOV, 6]


def test_unigram_vocabulary_and_its_json_are_unchanged():
    one = Vocabulary.fit(DOCS, num_words=100)
    assert one.to_json() == {"num_words": 100, "index_from": 3, "words": one.words}
    assert all(" " not in w for w in one.words)
    two = Vocabulary.fit(DOCS, num_words=100, ngrams=(1, 2))
    assert two.to_json()["ngrams"] == [1, 2]
    again = Vocabulary.from_json(two.to_json())
    assert again.ngrams == (1, 2) and again.index == two.index


def _raw(n=8):
    labels = np.array([0, 1, 0, 1, 0] * n)
    return Raw("rt", "binary", "text", DOCS * n, labels, n_classes=2)


def test_preprocess_with_bigrams_saves_and_serves_the_same_features(tmp_path):
    one = preprocess(_raw(), {"kind": "multi_hot", "num_words": 40, "seed": 1})
    data = preprocess(_raw(), {"kind": "multi_hot", "num_words": 40, "seed": 1, "ngrams": [1, 2]})
    assert sp.isspmatrix_csr(data.X_train) and data.X_train.shape[1] == 40
    assert data.X_train.nnz > one.X_train.nnz  # bigram columns added
    assert data.params["ngrams"] == [1, 2] and "ngrams" not in one.params  # [1] leaves no trace
    data.transformer.save(tmp_path / "t")
    loaded = Transformer.load(tmp_path / "t")
    served = loaded.transform_raw(["not good", "very good film"])
    vocab = data.transformer.vocab
    assert sorted(served[0].indices.tolist()) == sorted([vocab.index[w] for w in ("not", "good", "not good")])
    assert (served != data.transformer.transform_raw(["not good", "very good film"])).nnz == 0


def test_sequences_with_bigrams_get_a_vocabulary_of_index_tokens(tmp_path):
    rows = [[1, 14, 22, 16], [1, 14, 22], [1, 5, 6], [1, 14, 22, 9]] * 6
    x = np.empty(len(rows), dtype=object)
    x[:] = [np.asarray(r, dtype=np.int32) for r in rows]
    raw = Raw("imdb", "binary", "sequences", x, np.array([1, 0, 1, 0] * 6), n_classes=2, meta={"vocab_size": 30})
    data = preprocess(raw, {"kind": "multi_hot", "num_words": 20, "ngrams": [1, 2], "stratify": False})
    vocab = data.transformer.vocab
    assert "14 22" in vocab.index  # the frequent index pair is a column
    data.transformer.save(tmp_path / "t")
    served = Transformer.load(tmp_path / "t").transform_raw(x[:1])
    assert vocab.index["14 22"] in served[0].indices
    with pytest.raises(ValueError, match="index 99"):
        data.transformer.transform_raw([np.array([1, 99])])


@pytest.mark.parametrize(("cfg", "match"), [
    ({"kind": "multi_hot", "ngrams": [1, 2, 3]}, "ngrams"),
    ({"kind": "multi_hot", "ngrams": [3]}, "ngrams"),
])  # fmt: skip
def test_unsupported_ngrams_are_named(cfg, match):
    with pytest.raises(ValueError, match=match):
        preprocess(_raw(), cfg)
