"""The `benchmarks` section: a dataset searched by one model family in coarse-to-fine rounds.

`hparams` are validated by the family's pydantic model (`pipeline.models.hparams`, selected by
`model`) and `space` against its keys and domains when the file is loaded, with the strengths a
`regularizer` needs; `task_problems` checks `loss` against the dataset's task once the datasets
are known (`pipeline.config.params`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from pipeline.config.base import INT_MAX, Name, Problems, Seed, Strict
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
        if self.int and max(abs(self.low), abs(self.high)) > INT_MAX:
            raise ValueError(f"an `int: true` range must lie within -{INT_MAX} to {INT_MAX} (2**31 - 1), "
                             f"got [{self.low:g}, {self.high:g}]")  # fmt: skip
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
    pad: float = Field(0.5, ge=0)  # 0.1 until the replay benchmark (docs/results.md) chose 0.5
    widen_at_edge: bool = True
    enqueue_best: int = Field(1, ge=0)
    reinvest_pruned: bool = True  # a pruned trial costs the share of its epochs it trained (`budget.trial_cost`)
    warm_start: bool = False  # a tpe round's sampler learns from the previous round's trials too (`WarmStarted`)
    explore: float = Field(0.0, ge=0, lt=1)  # share of its budget first drawn at random from params.yaml's ranges


def model_name(benchmark: str, dataset: str, model: str) -> str:
    """A benchmark's MLflow experiment and registered model: `<dataset>-<model>` for a benchmark named
    `<dataset>_<model>` (or like its dataset), else `<dataset>-<model>-<benchmark>`, so no two benchmarks
    share a champion (`Params` refuses the rare names that would still collide). No `/`: MLflow's
    breadcrumb shows only what follows the last one."""
    return f"{dataset}-{model}" if benchmark in (f"{dataset}_{model}", dataset) else f"{dataset}-{model}-{benchmark}"


class SelectionConfig(Strict):
    """Robust selection after the last round (`pipeline.search.selection`): its `top_k` best configurations
    trained `repeats` more times with fresh seeds (reshuffled folds on K-fold data); 0 repeats: off."""

    top_k: int = Field(3, ge=1, le=20)
    repeats: int = Field(2, ge=0, le=20)

    @property
    def retrains(self) -> int:
        """Full trials it trains at most (fewer when the last round has fewer than `top_k` configurations)."""
        return self.top_k * self.repeats


class BenchmarkConfig(Strict):
    """A dataset searched with one model family; `hparams` and `space` name only what the family reads."""

    dataset: str
    model: Literal[hp.FAMILIES]  # type: ignore[valid-type]
    hparams: dict[str, Any] = {}
    space: dict[str, ParamRange] = {}
    rounds: list[RoundConfig] = Field(min_length=1)
    final_epochs: int | None = Field(None, gt=0)
    seed: Seed = 0
    selection: SelectionConfig = SelectionConfig()
    final_seeds: int = Field(3, ge=1, le=20)  # train_best: seeds trained; evaluate reports their mean and 95% CI
    serve: Literal["ensemble", "single"] = "ensemble"  # registered and served: the seeds' average or the first seed's

    @field_validator("rounds", mode="wrap")
    @classmethod
    def _rounds_by_name(cls, value: Any, handler) -> list[RoundConfig]:
        """`rounds` as a mapping from name to settings (`dvc exp run -S ...rounds.coarse.n_trials=6`) becomes
        the list of rounds, in order, named by their keys; its errors name the key (`rounds.coarse.epochs`)."""
        if not isinstance(value, dict):
            return handler(value)
        clash = [((k, "name"), r["name"], f"a round's `name` must be its key `{k}` (or left out)")
                 for k, r in value.items() if isinstance(r, dict) and r.get("name", k) != k]  # fmt: skip
        if clash:
            raise Problems(clash)
        try:
            return handler([{"name": k, **r} if isinstance(r, dict) else r for k, r in value.items()])
        except ValidationError as e:
            raise ValidationError.from_exception_data(e.title, [_by_key(d, value) for d in e.errors()]) from None

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
        problems += _hparams_problems(self.model, self.hparams) + _space_problems(self.model, self.space)
        if not problems:
            problems += _regularizer_problems(self.model, self.hparams, self.space)
        if problems:
            raise Problems(problems)
        return self


def _by_key(error: dict, rounds: dict) -> dict:
    """An error of the list made from `rounds` (a mapping) located by the round's key: `coarse.epochs`, and a bad
    name taken from the key at the key itself."""
    out = {k: v for k, v in error.items() if k in ("type", "input", "ctx")}
    if not error["loc"]:
        return out | {"loc": (), "input": rounds}
    key = list(rounds)[error["loc"][0]]
    rest = () if error["loc"][1:] == ("name",) and "name" not in rounds[key] else error["loc"][1:]
    return out | {"loc": (key, *rest)}


def _shown_range(r: ParamRange) -> dict:
    return r.model_dump(exclude_defaults=True)


def _hparams_problems(family: str, fixed: dict[str, Any]) -> list:
    """Fixed `hparams`, validated by the family's model (`pipeline.models.hparams`)."""
    return [(("hparams", name), value, why + ("; a range belongs under `space`" if isinstance(value, dict) else ""))
            for name, value, why in hp.problems(family, fixed)]  # fmt: skip


def _space_problems(family: str, space: dict[str, ParamRange]) -> list:
    """Every `space` entry searches a key the family reads, the way its domain allows: a number by a `low`/`high`
    range (`int: true` for whole numbers) whose bounds lie in the domain, anything else by `choices`."""
    reads = hp.reads(family)
    listing = f"{family} reads {', '.join(reads)}" if reads else f"{family} has no hyperparameters"
    problems = []
    for name, r in space.items():
        loc = ("space", name)
        if name not in reads:
            why = f"{family} does not read `{name}`, so searching it would change nothing; {listing}"
            problems.append((loc, _shown_range(r), why))
            continue
        domain = hp.domain(name)
        kind = hp.numeric(domain)
        if not r.is_numeric:
            tried = {i: hp.problems(family, {name: choice}) for i, choice in enumerate(r.choices)}
            problems += [((*loc, "choices", i), r.choices[i], wrong[0][2]) for i, wrong in tried.items() if wrong]
        elif kind is None:
            why = f"{name} is not a number: search it with `choices` ({hp.allowed(domain)})"
            problems.append((loc, _shown_range(r), why))
        elif kind == "int" and not r.int:
            problems.append((loc, _shown_range(r), f"{name} takes whole numbers: add `int: true` to the range"))
        else:
            for bound in ("low", "high"):
                value = int(getattr(r, bound)) if kind == "int" else getattr(r, bound)
                problems += [((*loc, bound), value, why) for _, _, why in hp.problems(family, {name: value})]
    return problems


def _given(name: str, fixed: dict[str, Any], space: dict[str, ParamRange]) -> tuple | None:
    """Where `name` is set, `(key path, shown value)`: fixed to a value, or searched; None when not set."""
    if name in space:
        return ("space", name), _shown_range(space[name])
    if fixed.get(name) is not None:
        return ("hparams", name), fixed[name]
    return None


def _regularizer_problems(family: str, fixed: dict[str, Any], space: dict[str, ParamRange]) -> list:
    """The strengths `regularizer` (fixed, searched or the default l2) needs are set, and none set is unused."""
    if "regularizer" not in hp.reads(family):
        return []
    where = _given("regularizer", fixed, space)
    if "regularizer" in space:
        regularizers = list(space["regularizer"].choices)
    else:
        regularizers = [fixed.get("regularizer") or "l2"]
    used = {s for r in regularizers for s in hp.REGULARIZER_STRENGTHS[r]}
    problems = []
    if hp.MODELS[family].NEEDS_STRENGTH:
        for r in regularizers:
            missing = [s for s in hp.REGULARIZER_STRENGTHS[r] if r != "l2" and _given(s, fixed, space) is None]
            if missing:
                need = " and ".join(f"`hparams.{s}` or `space.{s}`" for s in missing)
                problems.append((*where, f"regularizer {r} needs its strength: set {need} (e.g. {{low: 1.0e-6, "
                                          "high: 1.0e-2, log: true})"))  # fmt: skip
                break
    for strength in ("l1", "l2"):
        if strength not in used and (at := _given(strength, fixed, space)) is not None:
            shown = " or ".join(regularizers)
            why = f"regularizer {shown} does not use {strength}, so it would change nothing"
            problems.append((*at, f"{why}; add `regularizer: l1_l2` (or one that uses {strength}) or drop {strength}"))
    return problems


def task_problems(bench: BenchmarkConfig, task: str) -> list:
    """`loss` (fixed or each searched choice) is one the dataset's `task` can train with."""
    problems = []
    if "loss" in bench.space and bench.space["loss"].choices:
        for i, choice in enumerate(bench.space["loss"].choices):
            if why := hp.loss_problem(task, choice):
                problems.append((("space", "loss", "choices", i), choice, why))
    elif (loss := bench.hparams.get("loss")) is not None and (why := hp.loss_problem(task, loss)):
        problems.append((("hparams", "loss"), loss, why))
    return problems
