"""The `datasets` section: where each dataset comes from (built in, or a declared file) and its preprocessing."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_serializer, model_validator

from pipeline.config.base import Problems, Seed, Strict
from pipeline.tasks import TASKS


class CustomSource(Strict):
    """A dataset declared by the user: where it is, its hash and its format."""

    url: str | None = None
    path: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["keras-npz", "idx", "csv"]
    task: Literal[TASKS]  # type: ignore[valid-type]
    target: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> CustomSource:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of `url` or `path`")
        if self.format == "csv" and not self.target:
            raise ValueError("a csv source needs `target`, the label column")
        return self


class PreprocessConfig(Strict):
    """How raw data becomes features (see `pipeline.features`)."""

    kind: Literal["multi_hot", "standardize", "pca", "images"]
    num_words: int = Field(10000, gt=3)
    ngrams: list[int] = [1]  # [1] words, or [1, 2] words and bigrams sharing `num_words` (multi_hot)
    n_components: int | float | None = None  # a count >= 1 or a variance fraction in (0, 1)
    whiten: bool = False
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    kfold: int = Field(0, ge=0)
    seed: Seed = 42
    stratify: bool | None = None  # None: stratified for classification
    max_rows: int | None = Field(None, gt=10)
    scale: bool = True
    mean_subtraction: bool = False
    channels_last: bool = True

    @field_validator("n_components", mode="before")
    @classmethod
    def _count_or_fraction(cls, v: Any) -> Any:
        if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        if isinstance(v, float) and math.isfinite(v) and 0 < v < 1:
            return v
        raise ValueError("expected a whole count >= 1 (e.g. 20) or a variance fraction in (0, 1) (e.g. 0.95)")

    @model_validator(mode="after")
    def _check(self) -> PreprocessConfig:
        problems = []
        if self.ngrams not in ([1], [1, 2]):
            problems.append((("ngrams",), self.ngrams, "ngrams must be [1] (words) or [1, 2] (words and bigrams)"))
        elif self.ngrams != [1] and self.kind != "multi_hot":
            problems.append((("ngrams",), self.ngrams, f"n-grams apply to kind multi_hot, not {self.kind}"))
        if self.kfold == 1:
            problems.append((("kfold",), 1, "kfold must be 0 (a validation split) or at least 2"))
        if self.kind == "pca" and self.n_components is None:
            problems.append(
                (
                    ("n_components",),
                    None,
                    "pca needs `n_components`: a count (e.g. 20) or a variance fraction (e.g. 0.95)",
                )
            )
        if self.val_fraction + self.test_fraction >= 1:
            problems.append(
                (
                    ("val_fraction",),
                    self.val_fraction,
                    f"val_fraction + test_fraction ({self.test_fraction:g}) must be below 1, leaving rows to train on",
                )
            )
        if problems:
            raise Problems(problems)
        return self

    @model_serializer(mode="wrap")
    def _drop_default_ngrams(self, handler):
        """Leave `ngrams` out while it is the default [1], so today's study names and files stay the same."""
        out = handler(self)
        if out.get("ngrams") == [1]:
            out.pop("ngrams")
        return out


def _source_kind(v: Any) -> str:
    return "builtin" if isinstance(v, str) else "custom"


Source = Annotated[
    Annotated[Literal["builtin"], Tag("builtin")] | Annotated[CustomSource, Tag("custom")],
    Discriminator(_source_kind),
]


class DatasetConfig(Strict):
    """One dataset: its source (`builtin` from the catalog, or a custom file) and preprocessing."""

    source: Source = "builtin"
    catalog: str | None = None  # the built-in dataset read (default: the key), for a second preprocessing of it
    options: dict[str, Any] = {}
    preprocess: PreprocessConfig
