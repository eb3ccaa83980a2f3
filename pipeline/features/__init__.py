"""Model-ready features: multi-hot, standardization, PCA, images, splits and K-fold.

Public API (see `core` for the order of work and the K-fold choice, `processed` for the files):

- `preprocess(raw, cfg) -> ProcessedData`
- `ProcessedData` (`save(dir)`, `load(dir)`), `Transformer` (`transform_raw`, `save`, `load`)
- `holdout_or_folds(data)`, `iter_folds(data)`: fold-safe training/validation pairs
- building blocks: `multi_hot`, `tokenize`, `Vocabulary`, `Standardizer`, `PCA`, `MeanImage`

Documented choices:

- multi-hot is a float32 CSR matrix (Keras IMDB conventions, see `text`); an
  empty document is an all-zero row; text gets no start marker 1.
- standardization uses train mean and population std; a constant column gets
  std 1 (it maps to 0). NaN, inf and values beyond float32 are refused (`DataError`), naming
  column and row count.
- PCA only centres (as the notes and scikit-learn); standardize first for
  columns of unrelated scales. Exact covariance SVD up to `pca.WIDE_FEATURES`
  columns, randomized SVD beyond.
- images: x/255 (`scale`), optional mean-image subtraction, (N, H, W, C) or
  (N, C, H, W); flattened for `standardize` / `pca`.
- settings the data's size cannot give (more folds than training rows, more PCA components than
  features or training rows, an empty split) are refused before any work (`SizeError`, a
  `ConfigError`).
- every split part must contain every class (see `splits`); K-fold keeps
  `X_train_base` so `iter_folds` refits the scaler / PCA inside each fold.
- storage is npz + JSON, atomic per file and byte-identical on re-save.

Nothing here imports TensorFlow; `pipeline.models.batches` feeds these arrays to Keras.
"""

from pipeline.features.preprocessing import DEFAULTS, SOURCES, DataError, SizeError, preprocess, resolve_config
from pipeline.features.pca import PCA
from pipeline.features.processed import ProcessedData, holdout_or_folds, iter_folds
from pipeline.features.scaling import MeanImage, Standardizer, check_finite
from pipeline.features.text import INDEX_FROM, OOV, PAD, START, Vocabulary, multi_hot, tokenize
from pipeline.features.transformer import Transformer

__all__ = [
    "DEFAULTS",
    "INDEX_FROM",
    "OOV",
    "PAD",
    "PCA",
    "SOURCES",
    "START",
    "MeanImage",
    "DataError",
    "ProcessedData",
    "SizeError",
    "Standardizer",
    "Transformer",
    "Vocabulary",
    "check_finite",
    "holdout_or_folds",
    "iter_folds",
    "multi_hot",
    "preprocess",
    "resolve_config",
    "tokenize",
]
