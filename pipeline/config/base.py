"""What every section of the schema shares: strict models, several problems reported at once, names."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pipeline.paths import NAME_PATTERN

NAME_RULE = (
    "a name: 1 to 100 letters, digits, `_` and `-`, not starting with `-` "
    "(it becomes part of file, folder and study names, and a command-line argument)"
)
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
INT_MAX = 2**31 - 1  # the largest whole number a seed or an integer range may hold (numpy, Optuna, Keras)
Seed = Annotated[int, Field(ge=0, le=INT_MAX)]


class Strict(BaseModel):
    """A schema section: unknown keys refused, values not coerced, frozen, finite numbers only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Problems(ValueError):
    """Problems found by a validator, each `(key path relative to the validated object, value, message)`."""

    def __init__(self, problems: list[tuple[tuple, Any, str]]):
        super().__init__("; ".join(m for _, _, m in problems))
        self.problems = problems
