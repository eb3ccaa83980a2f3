"""tunebench: benchmarking and hyperparameter search for deep-learning models."""

__version__ = "0.1.0"
