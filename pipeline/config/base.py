"""What every section of the schema shares: strict models, several problems reported at once, names."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
NAME_RULE = "a name: letters, digits, `_` and `-` only (it becomes part of file, folder and study names)"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class Strict(BaseModel):
    """A schema section: unknown keys refused, values not coerced, frozen, finite numbers only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Problems(ValueError):
    """Problems found by a validator, each `(key path relative to the validated object, value, message)`."""

    def __init__(self, problems: list[tuple[tuple, Any, str]]):
        super().__init__("; ".join(m for _, _, m in problems))
        self.problems = problems
