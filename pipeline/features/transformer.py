"""The fitted preprocessing chain: raw input -> model-ready features.

A `Transformer` is three stages:

1. `base`: deterministic encoding of raw input. Text is tokenized and indexed
   with the training `Vocabulary` (with `ngrams: [1, 2]` also its bigrams; sequences
   then get a vocabulary of their own over index tokens), sequences are multi-hot encoded (CSR),
   tabular rows and images become float arrays (images scaled by 1/255 when
   `scale`; flattened for `standardize`/`pca`).
2. `step`: the one data-dependent fit (`Standardizer`, `PCA`, `MeanImage`, or
   none for multi-hot), fit on training rows only. It is the part that is
   refit inside each K-fold fold.
3. `layout`: images as (N, H, W, C) when `channels_last`, else (N, C, H, W).

`transform_raw` runs all three on raw input (what a served model receives).
`save` / `load` use JSON and `.npz` only (no pickle); the vocabulary is JSON.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from pipeline import fileio
from pipeline.features import storage
from pipeline.features.pca import PCA, plot_png
from pipeline.features.scaling import MeanImage, Standardizer, check_finite
from pipeline.features.text import (
    INDEX_FROM,
    Vocabulary,
    check_indices,
    check_texts,
    flatten,
    multi_hot,
    sequence_tokens,
)

FORMAT_VERSION = 1
STEPS = {"standardize": Standardizer, "pca": PCA, "mean_image": MeanImage}
OPTIONAL_FILES = ("transformer.npz", "vocabulary.json", "explained_variance.json", "explained_variance.png")


def vocab_size_from_meta(meta: dict) -> int | None:
    """Exclusive bound of valid sequence indices from a dataset's meta, if known.

    Uses `meta["vocab_size"]`, else `max(word_index.values()) + index_from + 1`
    (Keras's `word_index` ranks start at 1 and sequences hold `rank + index_from`).
    """
    if meta.get("vocab_size") is not None:
        return int(meta["vocab_size"])
    word_index = meta.get("word_index")
    if word_index:
        return int(max(word_index.values())) + int(meta.get("index_from", INDEX_FROM)) + 1
    return None


class Transformer:
    """Fitted chain from raw input to features; see the module docstring.

    Args:
        `kind`: `multi_hot`, `standardize`, `pca` or `images`.
        `source`: the raw kind: `sequences`, `text`, `tabular` or `images`.
        `params`: resolved transform parameters (`num_words`, `ngrams` when not `[1]`, `scale`,
            `mean_subtraction`, `channels_last`, `n_components`, `whiten`, `seed`).
        `vocab_size`: bound of valid sequence indices, or None.
        `feature_names`: tabular column names for error messages, or None.
    """

    def __init__(
        self,
        kind: str,
        source: str,
        params: dict,
        *,
        vocab_size: int | None = None,
        feature_names: list[str] | None = None,
    ):
        self.kind = kind
        self.source = source
        self.params = dict(params)
        self.vocab_size = vocab_size
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.vocab: Vocabulary | None = None
        self.step = self._new_step()
        self.raw_shape: tuple[int, ...] | None = None  # per-sample shape of raw arrays

    @property
    def ngrams(self) -> tuple[int, ...]:
        """The n-gram sizes of a multi-hot encoding: `(1,)` unless `params["ngrams"]` says otherwise."""
        return tuple(self.params.get("ngrams") or (1,))

    def _new_step(self):
        """Return the unfitted data-dependent step of this kind, or None."""
        if self.kind == "standardize":
            return Standardizer()
        if self.kind == "pca":
            return PCA(self.params["n_components"], self.params["whiten"], self.params["seed"])
        if self.kind == "images" and self.params.get("mean_subtraction"):
            return MeanImage()
        return None

    # -- fitting -----------------------------------------------------------------------------
    def fit_transform(self, x_raw) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray | sp.csr_matrix]:
        """Fit on raw training input and return `(features, base)`.

        Args:
            `x_raw`: raw training input (sequences, list of str, 2-D rows or images).

        Returns:
            The transformed training features and the `base` encoding before
            the fitted step (kept for fold-safe refits).
        """
        if self.source == "text":
            self.vocab = Vocabulary.fit(x_raw, self.params["num_words"], self.ngrams)
        elif self.source == "sequences" and self.ngrams != (1,):
            check_indices(*flatten(x_raw), self.vocab_size)
            self.vocab = Vocabulary.fit_tokens(sequence_tokens(x_raw), self.params["num_words"], self.ngrams)
        if self.source in ("tabular", "images"):
            self.raw_shape = tuple(int(s) for s in np.shape(x_raw)[1:])
        base = self.base(x_raw, "x_train")
        if self.step is not None:
            self.step.fit(base)
        return self.transform_base(base), base

    def refit(self, base_train: np.ndarray) -> Transformer:
        """Return a copy whose data-dependent step is refit on `base_train` (fold-safe CV).

        Args:
            `base_train`: `base` encoding of a fold's training rows.

        Returns:
            A new transformer sharing vocabulary and parameters, with a fresh step.
        """
        other = Transformer(
            self.kind, self.source, self.params, vocab_size=self.vocab_size, feature_names=self.feature_names
        )
        other.vocab, other.raw_shape = self.vocab, self.raw_shape
        if other.step is not None:
            other.step.fit(base_train)
        return other

    # -- applying ------------------------------------------------------------------------------
    def validate(self, x_raw, what: str) -> None:
        """Check raw input before any split, so errors name rows of the input as given.

        Args:
            `x_raw`: raw input of this transformer's source kind.
            `what`: name of the input for messages (`x_train`, `x_test`).

        Raises:
            TypeError: for a non-string document (names the row).
            ValueError: for bad sequence indices or NaN/inf features (names row / column).
        """
        if self.source == "text":
            check_texts(x_raw)
        elif self.source == "sequences":
            check_indices(*flatten(x_raw), self.vocab_size)
        else:
            X = np.asarray(x_raw)
            check_finite(X, what, self.feature_names if self.source == "tabular" else None)

    def base(self, x_raw, what: str = "input"):
        """Encode raw input deterministically (no fitted statistics besides the vocabulary).

        Args:
            `x_raw`: raw input of this transformer's source kind.
            `what`: name of the input for error messages.

        Returns:
            CSR float32 (multi-hot), float64 2-D rows (tabular), or float32
            images (N, H, W, C) / flattened pixels.

        Raises:
            ValueError / TypeError: for input of the wrong shape or type, NaN/inf, bad indices.
        """
        if self.kind == "multi_hot":
            return self._base_tokens(x_raw)
        if self.source == "tabular":
            X = np.asarray(x_raw, dtype=np.float64)
            self._check_shape(X, what)
            check_finite(X, what, self.feature_names)
            return X
        images = self._base_images(x_raw, what)
        return images if self.kind == "images" else images.reshape(len(images), -1)

    def _base_tokens(self, x_raw) -> sp.csr_matrix:
        """Text or sequences -> multi-hot CSR."""
        if isinstance(x_raw, (str, bytes)):
            raise TypeError("pass a list of documents or sequences, not a single string")
        if self.source == "text":
            if self.vocab is None:
                raise RuntimeError("the transformer is not fitted (no vocabulary)")
            return multi_hot(self.vocab.encode(x_raw), self.params["num_words"])
        if self.vocab is not None:  # sequences with n-grams
            check_indices(*flatten(x_raw), self.vocab_size)
            return multi_hot(self.vocab.encode_tokens(sequence_tokens(x_raw)), self.params["num_words"])
        return multi_hot(x_raw, self.params["num_words"], self.vocab_size)

    def _check_shape(self, X: np.ndarray, what: str) -> None:
        """Raise unless `X` is a batch whose per-sample shape matches the fitted one."""
        expected_ndim = 2 if self.source == "tabular" else None
        if (expected_ndim and X.ndim != expected_ndim) or X.ndim < 2:
            raise ValueError(f"{what}: expected a 2-D batch of rows, got shape {X.shape}")
        if self.raw_shape is not None and tuple(X.shape[1:]) != self.raw_shape:
            raise ValueError(f"{what}: per-sample shape {X.shape[1:]} differs from the fitted {self.raw_shape}")

    def _base_images(self, x_raw, what: str) -> np.ndarray:
        """Images (N, H, W[, C]) -> float32 (N, H, W, C), scaled by 1/255 when `scale`."""
        X = np.asarray(x_raw)
        if X.ndim not in (3, 4):
            raise ValueError(f"{what}: images must be (N, H, W) or (N, H, W, C), got shape {X.shape}")
        if X.ndim == 4 and X.shape[-1] == 1 and self.raw_shape is not None and len(self.raw_shape) == 2:
            X = X[..., 0]  # grayscale given with an explicit channel axis
        self._check_shape(X, what)
        check_finite(X, what)
        X = X.astype(np.float32)
        if self.params.get("scale", True):
            X *= np.float32(1.0 / 255.0)
        return X[..., None] if X.ndim == 3 else X

    def transform_base(self, base):
        """Apply the fitted step and the layout to a `base` encoding."""
        out = self.step.transform(base) if self.step is not None else base
        if self.kind == "images" and not self.params.get("channels_last", True):
            out = np.ascontiguousarray(np.moveaxis(out, -1, 1))
        return out

    def transform_raw(self, x_raw):
        """Apply the whole fitted chain to raw input, as the served model does.

        Args:
            `x_raw`: token sequences, a list of strings (text datasets), raw
                feature rows or raw images: a batch, never a single sample.

        Returns:
            Features as `preprocess` produced them for the test split.
        """
        return self.transform_base(self.base(x_raw))

    def output_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the features (after fitting)."""
        if self.kind == "multi_hot":
            return (int(self.params["num_words"]),)
        if self.kind == "pca":
            return (self.step.k,)
        if self.source == "tabular":
            return (self.raw_shape[0],)
        h, w = self.raw_shape[:2]
        c = self.raw_shape[2] if len(self.raw_shape) == 3 else 1
        if self.kind != "images":
            return (h * w * c,)
        return (h, w, c) if self.params.get("channels_last", True) else (c, h, w)

    # -- persistence ---------------------------------------------------------------------------
    def describe(self) -> dict:
        """Return the JSON description of the transformer (parameters, not arrays)."""
        step = None if self.step is None else {"name": self.step.name, "params": self.step.params()}
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "source": self.source,
            "params": self.params,
            "vocab_size": self.vocab_size,
            "feature_names": self.feature_names,
            "raw_shape": list(self.raw_shape) if self.raw_shape is not None else None,
            "output_shape": list(self.output_shape()),
            "step": step,
            "vocabulary_words": len(self.vocab.words) if self.vocab is not None else None,
        }

    def save(self, directory: str | Path) -> list[str]:
        """Write `transformer.json` (+ `transformer.npz`, `vocabulary.json`, PCA curve files).

        Each file is written atomically with deterministic bytes; files of an
        earlier, different transformer in `directory` are removed.

        Args:
            `directory`: destination folder, created if missing.

        Returns:
            The names of the files written.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        written = {"transformer.json": self.describe()}
        if self.vocab is not None:
            written["vocabulary.json"] = self.vocab.to_json()
        if isinstance(self.step, PCA):
            written["explained_variance.json"] = self.step.curve()
        for name, obj in written.items():
            fileio.write_json_atomic(d / name, obj, strict=True)
        names = list(written)
        if self.step is not None:
            storage.write_npz(d / "transformer.npz", self.step.to_arrays())
            names.append("transformer.npz")
        if isinstance(self.step, PCA):
            fileio.write_bytes_atomic(d / "explained_variance.png", plot_png(self.step.curve()))
            names.append("explained_variance.png")
        for stale in set(OPTIONAL_FILES) - set(names):
            (d / stale).unlink(missing_ok=True)
        return sorted(names)

    @classmethod
    def load(cls, directory: str | Path) -> Transformer:
        """Read a transformer written by `save`.

        Raises:
            ValueError: for an unknown format version.
        """
        d = Path(directory)
        desc = fileio.read_json(d / "transformer.json")
        if desc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{d}: unsupported transformer format {desc.get('format_version')!r}")
        obj = cls(
            desc["kind"],
            desc["source"],
            desc["params"],
            vocab_size=desc["vocab_size"],
            feature_names=desc["feature_names"],
        )
        obj.raw_shape = tuple(desc["raw_shape"]) if desc["raw_shape"] is not None else None
        if (d / "vocabulary.json").exists() and (desc["source"] == "text" or obj.ngrams != (1,)):
            obj.vocab = Vocabulary.from_json(fileio.read_json(d / "vocabulary.json"))
        if desc["step"] is not None:
            step_cls = STEPS[desc["step"]["name"]]
            obj.step = step_cls.from_arrays(storage.read_npz(d / "transformer.npz"), desc["step"]["params"])
        return obj
