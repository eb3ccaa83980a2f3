"""Model-ready features: multi-hot, standardization, PCA, images, splits and K-fold.

Public API (see `core` for the order of work and the K-fold choice):

- `preprocess(raw, cfg) -> ProcessedData`
- `ProcessedData` (`save(dir)`, `load(dir)`), `Transformer` (`transform_raw`, `save`, `load`)
- `holdout_or_folds(data)`, `iter_folds(data)`: fold-safe training/validation pairs
- building blocks: `multi_hot`, `tokenize`, `Vocabulary`, `Standardizer`, `PCA`, `MeanImage`

Nothing here imports TensorFlow; `pipeline.batches` feeds these arrays to Keras.
"""

from pipeline.features.core import (
    DEFAULTS,
    KINDS,
    ProcessedData,
    holdout_or_folds,
    iter_folds,
    preprocess,
    resolve_config,
)
from pipeline.features.pca import PCA
from pipeline.features.scaling import MeanImage, Standardizer, check_finite
from pipeline.features.text import INDEX_FROM, OOV, PAD, START, Vocabulary, multi_hot, tokenize
from pipeline.features.transformer import Transformer

__all__ = [
    "DEFAULTS",
    "INDEX_FROM",
    "KINDS",
    "OOV",
    "PAD",
    "PCA",
    "START",
    "MeanImage",
    "ProcessedData",
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
