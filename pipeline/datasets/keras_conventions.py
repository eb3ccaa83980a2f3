"""Keras's dataset conventions, reproduced exactly (vectorised) without importing Keras.

Sequences (`keras/src/datasets/imdb.py`, `reuters.py`): shuffle with
`np.random.RandomState(seed)`, prefix `start_char`, shift word ranks by `index_from`,
drop sequences with `len >= maxlen`, then map every index outside
`[skip_top, num_words)` to `oov_char` (or drop it when `oov_char` is None); without
`num_words` the largest index is the bound (and so itself becomes OOV, as in Keras).
Tabular (`boston_housing.py`): shuffle, then the first `int(n * (1 - test_split))` rows train.
"""

from __future__ import annotations

import itertools

import numpy as np

SEQUENCE_OPTIONS = ("num_words", "skip_top", "maxlen", "seed", "start_char", "oov_char", "index_from")


def _shuffled(rng: np.random.RandomState, *arrays: np.ndarray) -> list[np.ndarray]:
    """Apply one `rng.shuffle` permutation to arrays of equal length."""
    idx = np.arange(len(arrays[0]))
    rng.shuffle(idx)
    return [np.asarray(a)[idx] for a in arrays]


def _flatten(seqs) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate sequences into one int64 array plus their lengths."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _encode(flat, lengths, start_char, index_from):
    """Shift by `index_from` and prefix `start_char` (Keras's order of cases)."""
    if start_char is None:
        return (flat + index_from if index_from else flat), lengths
    new_lengths = lengths + 1
    out = np.empty(int(new_lengths.sum()), dtype=np.int64)
    starts = np.cumsum(new_lengths) - new_lengths
    is_start = np.zeros(len(out), dtype=bool)
    is_start[starts] = True
    out[is_start] = start_char
    out[~is_start] = flat + index_from
    return out, new_lengths


def _drop_long(flat, lengths, labels, maxlen):
    """Keep sequences shorter than `maxlen` (Keras's `remove_long_seq`)."""
    keep = lengths < maxlen
    return flat[np.repeat(keep, lengths)], lengths[keep], labels[keep]


def _limited(flat, lengths, num_words, skip_top, oov_char) -> np.ndarray:
    """The sequences with indices outside `[skip_top, num_words)` mapped to `oov_char` (or dropped).

    Without `num_words` the largest index is the bound.
    """
    if not num_words:
        num_words = int(flat.max()) if flat.size else 0
    inside = (flat >= skip_top) & (flat < num_words)
    if oov_char is not None:
        return _unflatten(np.where(inside, flat, oov_char), lengths)
    seg = np.repeat(np.arange(len(lengths)), lengths)
    return _unflatten(flat[inside], np.bincount(seg[inside], minlength=len(lengths)).astype(np.int64))


def _unflatten(flat, lengths) -> np.ndarray:
    """An object array of int32 arrays, one per sequence."""
    parts = np.split(flat.astype(np.int32), np.cumsum(lengths)[:-1]) if len(lengths) else []
    out = np.empty(len(lengths), dtype=object)
    for i, p in enumerate(parts):
        out[i] = p
    return out


def _prepare(rng, xs, ys, start_char, index_from, maxlen):
    """Shuffle, encode and length-filter one part (train or test)."""
    xs, ys = _shuffled(rng, xs, ys)
    flat, lengths = _encode(*_flatten(xs), start_char, index_from)
    if maxlen:
        flat, lengths, ys = _drop_long(flat, lengths, ys, maxlen)
    return flat, lengths, ys


def sequences_train_test(
    x_train, y_train, x_test, y_test, *, num_words=None, skip_top=0, maxlen=None, seed=113,
    start_char=1, oov_char=2, index_from=3,
):  # fmt: skip
    """IMDB convention: shuffle train then test with one RNG, encode, filter, limit the vocabulary.

    Returns:
        `(x_train, y_train, x_test, y_test)`; x as object arrays of int32 arrays.

    Raises:
        ValueError: `maxlen` left no sequence in train or test (as Keras does).
    """
    rng = np.random.RandomState(seed)
    f_tr, l_tr, y_tr = _prepare(rng, x_train, y_train, start_char, index_from, maxlen)
    f_te, l_te, y_te = _prepare(rng, x_test, y_test, start_char, index_from, maxlen)
    if maxlen and (not len(l_tr) or not len(l_te)):
        raise ValueError(f"After filtering for sequences shorter than maxlen={maxlen}, no sequence was kept.")
    xs = _limited(np.concatenate([f_tr, f_te]), np.concatenate([l_tr, l_te]), num_words, skip_top, oov_char)
    n = len(l_tr)
    return xs[:n], y_tr, xs[n:], y_te


def sequences_split(
    x, y, *, test_split=0.2, num_words=None, skip_top=0, maxlen=None, seed=113,
    start_char=1, oov_char=2, index_from=3,
):  # fmt: skip
    """Reuters convention: shuffle, encode, filter, limit the vocabulary, then split off the test part."""
    rng = np.random.RandomState(seed)
    flat, lengths, ys = _prepare(rng, x, y, start_char, index_from, maxlen)
    xs = _limited(flat, lengths, num_words, skip_top, oov_char)
    idx = int(len(xs) * (1 - test_split))
    return xs[:idx], ys[:idx], xs[idx:], ys[idx:]


def split_shuffled(x, y, *, test_split=0.2, seed=113):
    """Boston-housing convention: shuffle rows, the first `int(n * (1 - test_split))` are train.

    Raises:
        ValueError: `test_split` outside `[0, 1)`.
    """
    if not 0 <= test_split < 1:
        raise ValueError(f"test_split must be in [0, 1), got {test_split}")
    x, y = _shuffled(np.random.RandomState(seed), x, y)
    idx = int(len(x) * (1 - test_split))
    return x[:idx], y[:idx], x[idx:], y[idx:]
