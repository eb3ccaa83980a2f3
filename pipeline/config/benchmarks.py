"""The `benchmarks` section: a dataset searched by one model family in coarse-to-fine rounds.

`hparams` and `space` are checked against `pipeline.models.hparams` (what the family reads,
each value's domain) when the file is loaded.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.config.base import Name, Problems, Strict
from pipeline.models import hparams as hp

PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp")


class ParamRange(Strict):
    """One search dimension: a numeric range (optionally log-uniform or integer) or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either `choices` or `low`/`high`, not both")
            if self.log or self.int:
                raise ValueError("`log` and `int` apply to `low`/`high` ranges, not to `choices`")
            if not self.choices:
                raise ValueError("`choices` must not be empty")
            if any(isinstance(c, float) and not math.isfinite(c) for c in self.choices):
                raise ValueError("choices must be finite numbers (no .nan or .inf)")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both `low` and `high` (or a `choices` list)")
        if self.int and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"an `int: true` range needs whole-number bounds, got [{self.low:g}, {self.high:g}]")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low:g}; use e.g. 1e-7")
        return self

    @property
    def is_numeric(self) -> bool:
        """True for a `low`/`high` range, False for `choices`."""
        return self.choices is None


class RoundConfig(Strict):
    """One coarse-to-fine round: its own Optuna study, budget, epochs and pruner."""

    name: Name
    n_trials: int = Field(gt=0)
    timeout: float | None = Field(None, gt=0)
    epochs: int = Field(gt=0)
    pruner: Literal[PRUNERS] = "median"  # type: ignore[valid-type]
    sampler: Literal[SAMPLERS] | None = None  # type: ignore[valid-type]
    top_quantile: float = Field(0.25, gt=0, le=1)
    pad: float = Field(0.1, ge=0)
    widen_at_edge: bool = True
    enqueue_best: int = Field(1, ge=0)


class BenchmarkConfig(Strict):
    """A dataset searched with one model family; `hparams` and `space` name only what the family reads."""

    dataset: str
    model: Literal[hp.FAMILIES]  # type: ignore[valid-type]
    hparams: dict[str, Any] = {}
    space: dict[str, ParamRange] = {}
    rounds: list[RoundConfig] = Field(min_length=1)
    final_epochs: int | None = Field(None, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> BenchmarkConfig:
        problems = []
        seen: dict[str, int] = {}
        for i, r in enumerate(self.rounds):
            if r.name in seen:
                problems.append(
                    (("rounds", i, "name"), r.name, f"round names must be unique (rounds.{seen[r.name]} has it too)")
                )
            seen.setdefault(r.name, i)
        for name in sorted(set(self.space) & set(self.hparams)):
            problems.append(
                (
                    ("space", name),
                    _shown_range(self.space[name]),
                    f"`{name}` is both fixed in `hparams` and searched in `space`; keep one",
                )
            )
        problems += _family_problems(self.model, self.hparams, self.space)
        if problems:
            raise Problems(problems)
        return self


def _shown_range(r: ParamRange) -> dict:
    return r.model_dump(exclude_defaults=True)


def _family_problems(family: str, fixed: dict[str, Any], space: dict[str, ParamRange]) -> list:
    """Check fixed `hparams` and `space` against what `family` reads and each hyperparameter's domain."""
    reads = hp.reads(family)
    listing = f"{family} reads {', '.join(reads)}" if reads else f"{family} has no hyperparameters"
    problems = []
    for name, value in fixed.items():
        if name not in reads:
            problems.append((("hparams", name), value, f"{family} does not read `{name}`; {listing}"))
        elif why := hp.problem(name, value):
            hint = "; a range belongs under `space`" if isinstance(value, dict) else ""
            problems.append((("hparams", name), value, why + hint))
    for name, r in space.items():
        loc = ("space", name)
        if name not in reads:
            problems.append(
                (
                    loc,
                    _shown_range(r),
                    f"{family} does not read `{name}`, so searching it would change nothing; {listing}",
                )
            )
            continue
        spec = hp.HPARAMS[name]
        if not r.is_numeric:
            for i, choice in enumerate(r.choices):
                if why := hp.problem(name, choice):
                    problems.append(((*loc, "choices", i), choice, why))
        elif not spec.numeric:
            problems.append(
                (loc, _shown_range(r), f"{name} is not a number: search it with `choices` ({spec.allowed()})")
            )
        elif spec.integer and not r.int:
            problems.append((loc, _shown_range(r), f"{name} takes whole numbers: add `int: true` to the range"))
        else:
            for bound in ("low", "high"):
                value = getattr(r, bound)
                value = int(value) if spec.integer else value
                if why := hp.problem(name, value):
                    problems.append(((*loc, bound), value, why))
    return problems
