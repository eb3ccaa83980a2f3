"""Text to Keras-style token indices, and token sequences to compact multi-hot CSR rows.

Keras IMDB conventions throughout: index 0 is padding, 1 the start of a
sequence, 2 out of vocabulary (OOV), and the word of frequency rank `r`
(1-based, as in Keras's `word_index`) gets index `r + index_from` with
`index_from = 3`. So the most frequent word is 4 and index 3 is never used,
exactly as in Keras's `imdb.npz`. `num_words` keeps the indices below it;
larger indices become OOV (2), as `keras.datasets.imdb.load_data(num_words=...)`
does.

Raw text is lower-cased and split by `TOKEN_PATTERN`. Encoded documents carry
no start marker 1 (in a multi-hot row it would be a constant column), so an
empty document (no tokens) becomes an empty sequence and then an all-zero
multi-hot row. Sequences given already indexed (kind `sequences`) are used as
given, start markers included, so the multi-hot equals Chollet's
`vectorize_sequences`.

N-grams (`ngrams=(1, 2)`): the vocabulary ranks unigrams and adjacent-token bigrams together by
count (ties alphabetically, a bigram written as its two tokens joined by one space), so the
`num_words` budget is shared: the most frequent words and bigrams get the indices from 4. A
token outside the vocabulary is still OOV (2); a bigram outside it adds nothing. Sequences given
already indexed use the same vocabulary, their indices written as decimal tokens ("12 57"), so
their unigram columns are re-ranked by training counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

PAD, START, OOV, INDEX_FROM = 0, 1, 2, 3
NGRAMS = ((1,), (1, 2))  # the n-gram sets supported: unigrams, or unigrams and bigrams
TOKEN_PATTERN = r"[a-z0-9]+(?:'[a-z0-9]+)*"
_TOKEN_RE = re.compile(TOKEN_PATTERN)


def tokenize(text: str) -> list[str]:
    """Split a document into lower-case word tokens.

    Args:
        `text`: the raw document.

    Returns:
        The tokens matching `TOKEN_PATTERN` after lower-casing (apostrophes
        inside words are kept: "don't").
    """
    return _TOKEN_RE.findall(text.lower())


def check_texts(texts: Iterable) -> list[str]:
    """Return `texts` as a list of strings.

    Raises:
        TypeError: naming the first row that is not a string.
    """
    texts = list(texts)
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text row {row} is {type(text).__name__}, expected str")
    return texts


def bigrams(tokens: Sequence[str]) -> list[str]:
    """Adjacent token pairs, each written as `"first second"`."""
    return [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


def sequence_tokens(sequences: Sequence) -> list[list[str]]:
    """Index sequences as lists of decimal tokens (for an n-gram vocabulary over indices)."""
    return [[str(int(v)) for v in seq] for seq in sequences]


class Vocabulary:
    """Frequency-ranked word (and bigram) list fitted on training documents.

    Args:
        `words`: entries in rank order (rank 1 first); a bigram is two tokens joined by a space.
        `num_words`: indices kept; only the entries whose index `rank + 3` is
            below it are stored.
        `ngrams`: `(1,)` (words) or `(1, 2)` (words and bigrams sharing `num_words`).
    """

    def __init__(self, words: Sequence[str], num_words: int, ngrams: Sequence[int] = (1,)):
        self.num_words = int(num_words)
        self.ngrams = tuple(int(n) for n in ngrams)
        if self.ngrams not in NGRAMS:
            raise ValueError(f"ngrams {list(self.ngrams)} is not supported; use [1] or [1, 2]")
        self.words = list(words)[: max(self.num_words - INDEX_FROM - 1, 0)]
        self.index = {w: rank + INDEX_FROM for rank, w in enumerate(self.words, start=1)}

    @classmethod
    def fit(cls, texts: Iterable[str], num_words: int, ngrams: Sequence[int] = (1,)) -> Vocabulary:
        """Rank the words (and bigrams) of `texts` by frequency, ties broken alphabetically.

        Args:
            `texts`: training documents.
            `num_words`: index limit, as in Keras.
            `ngrams`: `(1,)` or `(1, 2)`.

        Returns:
            The fitted vocabulary.

        Raises:
            TypeError: when a document is not a string (names the row).
        """
        return cls.fit_tokens((tokenize(text) for text in check_texts(texts)), num_words, ngrams)

    @classmethod
    def fit_tokens(cls, documents: Iterable[Sequence[str]], num_words: int, ngrams: Sequence[int] = (1,)):
        """`fit` on documents already split into tokens."""
        counts = Counter()
        with_bigrams = 2 in tuple(ngrams)
        for tokens in documents:
            counts.update(tokens)
            if with_bigrams:
                counts.update(bigrams(tokens))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([w for w, _ in ranked], num_words, ngrams)

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """Turn documents into Keras-style index sequences (no start marker).

        Args:
            `texts`: documents.

        Returns:
            Object array of int32 arrays; unknown or rare words are `OOV` (2); with bigrams,
            each document's known bigram indices follow its word indices.

        Raises:
            TypeError: when a document is not a string (names the row).
        """
        return self.encode_tokens([tokenize(text) for text in check_texts(texts)])

    def encode_tokens(self, documents: Sequence[Sequence[str]]) -> np.ndarray:
        """`encode` on documents already split into tokens."""
        out = np.empty(len(documents), dtype=object)
        get = self.index.get
        with_bigrams = 2 in self.ngrams
        for row, tokens in enumerate(documents):
            words = np.fromiter((get(t, OOV) for t in tokens), dtype=np.int32)
            if with_bigrams:
                found = [i for i in map(get, bigrams(tokens)) if i is not None]
                words = np.concatenate([words, np.asarray(found, dtype=np.int32)])
            out[row] = words
        return out

    def to_json(self) -> dict:
        """Return the JSON form of the vocabulary (words in rank order; `ngrams` unless unigrams)."""
        extra = {} if self.ngrams == (1,) else {"ngrams": list(self.ngrams)}
        return {"num_words": self.num_words, "index_from": INDEX_FROM, **extra, "words": self.words}

    @classmethod
    def from_json(cls, obj: dict) -> Vocabulary:
        """Rebuild a vocabulary from `to_json` output."""
        return cls(obj["words"], obj["num_words"], obj.get("ngrams", (1,)))


def flatten(sequences: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate sequences into one integer array and its CSR row pointer.

    Raises:
        ValueError: for nested or non-integer sequences.
    """
    n = len(sequences)
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if indptr[-1] == 0:
        return np.zeros(0, dtype=np.int64), indptr
    flat = np.concatenate([s for s in sequences if len(s)])
    if flat.ndim != 1 or flat.size != indptr[-1]:
        raise ValueError("every sequence must be a flat list or 1-D array of integer indices")
    if not np.issubdtype(flat.dtype, np.integer):
        raise ValueError(f"sequence indices must be integers, got dtype {flat.dtype}")
    return flat, indptr


def _row_of(indptr: np.ndarray, position: int) -> int:
    """Return the row that holds flat `position`."""
    return int(np.searchsorted(indptr, position, side="right") - 1)


def check_indices(flat: np.ndarray, indptr: np.ndarray, vocab_size: int | None) -> None:
    """Refuse negative indices and indices at or beyond a known vocabulary size.

    Args:
        `flat`: concatenated indices.
        `indptr`: row pointer of `flat`.
        `vocab_size`: exclusive upper bound of valid indices, or None when unknown.

    Raises:
        ValueError: naming the first offending row and index.
    """
    if flat.size == 0:
        return
    bad = flat < 0 if vocab_size is None else (flat < 0) | (flat >= vocab_size)
    if bad.any():
        pos = int(np.argmax(bad))
        bound = "[0, inf)" if vocab_size is None else f"[0, {vocab_size})"
        raise ValueError(
            f"sequence row {_row_of(indptr, pos)} contains index {int(flat[pos])}; indices must lie in {bound}"
        )


def _unique_keys(cols: np.ndarray, indptr: np.ndarray, num_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Collapse duplicate (row, column) pairs, chunk by chunk, through a boolean bitmap.

    Each chunk of rows marks its pairs in a reusable `(rows, num_words)` bitmap
    (about 8 MB) and reads them back with `np.flatnonzero`, which yields the
    unique columns already sorted row by row (canonical CSR), with no sort.

    Returns:
        The unique column indices (int32) and the per-row counts.
    """
    n = len(indptr) - 1
    lengths = np.diff(indptr)
    chunk = max(1, min(n, (1 << 23) // num_words))
    bitmap = np.zeros(chunk * num_words, dtype=bool)
    out_cols, out_counts = [], []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        a, b = indptr[start], indptr[stop]
        keys = np.repeat(np.arange(stop - start, dtype=np.int64), lengths[start:stop]) * num_words + cols[a:b]
        bitmap[keys] = True
        found = np.flatnonzero(bitmap[: (stop - start) * num_words])
        bitmap[keys] = False
        rows, found_cols = np.divmod(found, num_words)
        out_cols.append(found_cols.astype(np.int32))
        out_counts.append(np.bincount(rows, minlength=stop - start))
    return np.concatenate(out_cols), np.concatenate(out_counts)


def multi_hot(sequences: Sequence, num_words: int, vocab_size: int | None = None) -> sp.csr_matrix:
    """Multi-hot encode index sequences into a float32 CSR matrix, vectorized.

    Equals Chollet's `vectorize_sequences(sequences, num_words)` (duplicates
    collapse to 1) after mapping indices `>= num_words` to `OOV` (2), but
    memory grows with the number of tokens, not rows x vocabulary. There is
    no Python loop per row: a loop per chunk of ~800 rows (10,000 words).

    Args:
        `sequences`: object array or list of integer arrays/lists.
        `num_words`: number of columns.
        `vocab_size`: when given, indices must be below it.

    Returns:
        CSR float32 matrix of shape `(len(sequences), num_words)`, canonical
        (sorted, unique column indices per row); empty sequences give zero rows.

    Raises:
        ValueError: for negative or out-of-vocabulary indices (names the row),
            non-integer indices, or `num_words <= 2`.
    """
    if num_words <= OOV:
        raise ValueError(f"num_words must be > {OOV} (0/1/2 are reserved), got {num_words}")
    flat, indptr = flatten(sequences)
    check_indices(flat, indptr, vocab_size)
    n = len(indptr) - 1
    if flat.size == 0:
        return sp.csr_matrix((n, num_words), dtype=np.float32)
    cols = flat.astype(np.int64)
    cols[cols >= num_words] = OOV
    unique_cols, counts = _unique_keys(cols, indptr, num_words)
    new_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=new_indptr[1:])
    data = np.ones(unique_cols.size, dtype=np.float32)
    return sp.csr_matrix((data, unique_cols, new_indptr), shape=(n, num_words))
