"""Hyperparameters as pydantic models: one per model family, selected by the benchmark's `model`.

Each family's model (`KerasMLPHParams`, `KerasCNNHParams`, `NumpyMLPHParams`, `LinearHParams`,
`MajorityHParams`, `ReplayHParams`) declares the keys the family reads, each with its type, domain
and default; `HParamsUnion` is their union discriminated by `model`. Unknown keys are refused,
values are not coerced (a whole number is accepted for a float), and None (`null`) always means
"the family's default". `pipeline.config` validates a benchmark's `hparams` (and the values of its
`space`) with them when `params.yaml` is loaded (`problems`); `resolve_hparams` gives the values one
training run uses, validated for the task: the family's defaults (`TASK_DEFAULTS` where they differ
by task), then the benchmark's fixed values, then a trial's sampled ones. The search resolves them
once per trial and records them with the trial; `train_best` trains the search result's recorded
values. This module imports nothing heavy (no NumPy, no TensorFlow).

Keys (families that read them):
    `lr` learning rate (keras_*, numpy_mlp); `regularizer` l2 (default) | l1 | l1_l2: which penalty
    on kernels (biases are never penalized) uses the strengths `l2` (keras: `l2*sum(W^2)`, numpy_mlp:
    `0.5*l2*sum(W^2)`, linear: C = 1/l2 or Ridge alpha = l2) and `l1` (`l1*sum|W|`; linear: C = 1/l1,
    Lasso alpha = l1; l1_l2: C = 1/(l1+l2) with l1_ratio l1/(l1+l2), ElasticNet alike); a strength
    the regularizer does not use is ignored; `loss` the training loss, None for the task's
    (`TASK_LOSSES`: binary binary_crossentropy | hinge, regression mse | mae | huber, multiclass
    categorical_crossentropy; keras_* and numpy_mlp); `dropout` drop rate;
    `units` int or list per hidden layer; `depth` hidden layers when `units` is an int;
    `activation` relu|tanh; `optimizer` rmsprop|adam|sgd; `momentum`, `nesterov` for sgd;
    `batch_size`; `lr_schedule` none|step|plateau with `lr_step_epochs` (halve every k epochs)
    and `lr_patience` (halve after k epochs without a better validation loss); `lr_decay`
    (multiply the learning rate by it after every epoch); `early_stopping` patience in epochs
    on the validation metric (best weights restored) or None; keras_cnn: `filters`,
    `kernel_size`, `augment`, `preset` (`PRESETS`); numpy_mlp: `use_batchnorm`; linear: `max_iter`;
    replay (a benchmarking family answering from recorded curves, `pipeline.models.replay`): `curves`.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, model_validator

# The domains, each declared once and shared by every family reading the key.
Rate = Annotated[float, Field(gt=0)]
Strength = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Decay = Annotated[float, Field(gt=0, le=1)]
Count = Annotated[int, Field(ge=1)]
Widths = Count | Annotated[list[Count], Field(min_length=1)]  # one for every layer, or one per layer
Blocks = Annotated[list[Widths], Field(min_length=1)]  # conv blocks, each one or more convs
Regularizer = Literal["l2", "l1", "l1_l2"]
Loss = Literal["binary_crossentropy", "hinge", "categorical_crossentropy", "mse", "mae", "huber"]
Optimizer = Literal["rmsprop", "adam", "sgd"]
Schedule = Literal["none", "step", "plateau"]

# task -> the losses a family reading `loss` can train with (the first is the default, None).
TASK_LOSSES: dict[str, tuple[str, ...]] = {
    "binary": ("binary_crossentropy", "hinge"),
    "multiclass": ("categorical_crossentropy",),
    "regression": ("mse", "mae", "huber"),
}
# regularizer -> the strengths it uses.
REGULARIZER_STRENGTHS: dict[str, tuple[str, ...]] = {"l2": ("l2",), "l1": ("l1",), "l1_l2": ("l1", "l2")}

# keras_cnn presets: `preset: notes` is the MNIST CNN of the lecture notes (`pipeline.models.keras_cnn`).
PRESETS: dict[str, dict] = {
    "notes": {
        "filters": [[4, 8], [16]],
        "kernel_size": [5, 3, 3],
        "activation": "tanh",
        "units": 128,
        "depth": 1,
        "dropout": 0.0,
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "batch_size": 100,
    },
}


class HParams(BaseModel):
    """A family's hyperparameters. Validated with `context={"task": ...}`, the task's defaults fill what is
    not given and `loss` and the regularizer's strengths are checked: a complete training configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    TASK_DEFAULTS: ClassVar[dict[str, dict]] = {}  # task -> the defaults that differ for that task
    NEEDS_STRENGTH: ClassVar[bool] = False  # no penalty of its own: `regularizer: l1 | l1_l2` needs its strengths

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        task = (info.context or {}).get("task")
        values = {**cls.TASK_DEFAULTS.get(task, {}), **{k: v for k, v in data.items() if v is not None}}
        values = cls._expand(values)
        if isinstance(values.get("units"), list) and values["units"]:  # a width per layer sets the depth
            values["depth"] = len(values["units"])
        return values

    @classmethod
    def _expand(cls, values: dict) -> dict:
        """The given values, completed by the family (keras_cnn: its `preset`)."""
        return values

    @model_validator(mode="after")
    def _trainable(self, info: ValidationInfo) -> HParams:
        task = (info.context or {}).get("task")
        if task is not None and (why := loss_problem(task, getattr(self, "loss", None)) or strength_problem(self)):
            raise ValueError(why)
        return self


class NetworkHParams(HParams):
    """What every trained network reads (keras_* and numpy_mlp)."""

    NEEDS_STRENGTH: ClassVar[bool] = True
    units: Widths
    depth: Count
    dropout: Fraction = 0.0
    regularizer: Regularizer = "l2"
    l2: Strength | None = None
    l1: Strength | None = None
    loss: Loss | None = None
    optimizer: Optimizer = "rmsprop"
    lr: Rate = 1e-3
    momentum: Fraction = 0.9
    nesterov: bool = True
    batch_size: Count = 512
    lr_schedule: Schedule = "none"
    lr_step_epochs: Count = 5
    lr_patience: Count = 2
    lr_decay: Decay | None = None
    early_stopping: Count | None = None


class KerasHParams(NetworkHParams):
    """What both Keras families read."""

    activation: Literal["relu", "tanh"] = "relu"


class KerasMLPHParams(KerasHParams):
    """keras_mlp: the networks of Chollet, ch. 3 (16 units for binary, batch 16 for regression)."""

    TASK_DEFAULTS: ClassVar[dict[str, dict]] = {"binary": {"units": 16}, "regression": {"batch_size": 16}}
    model: Literal["keras_mlp"] = Field("keras_mlp", exclude=True)
    units: Widths = 64
    depth: Count = 2


class KerasCNNHParams(KerasHParams):
    """keras_cnn: conv blocks and a dense head; a `preset` sets what the given values do not change."""

    model: Literal["keras_cnn"] = Field("keras_cnn", exclude=True)
    filters: Blocks = [32, 64]
    kernel_size: Widths = 3
    units: Widths = 128
    depth: Count = 1
    dropout: Fraction = 0.5
    batch_size: Count = 128
    augment: bool = False
    preset: Literal[tuple(PRESETS)] | None = None  # type: ignore[valid-type]

    @classmethod
    def _expand(cls, values: dict) -> dict:
        """Defaults, then the named preset, then the given values; a given value equal to the plain default does
        not override the preset, so `{**defaults, "preset": "notes"}` still gives the notes' network."""
        preset = PRESETS.get(values.get("preset"))
        if preset is None:
            return values
        plain = {k: f.default for k, f in cls.model_fields.items()}
        return {**preset, **{k: v for k, v in values.items() if k not in preset or v != plain.get(k)}}


class NumpyMLPHParams(NetworkHParams):
    """numpy_mlp: the from-scratch network (`pipeline.models.numpy_mlp`)."""

    model: Literal["numpy_mlp"] = Field("numpy_mlp", exclude=True)
    units: Widths = [200, 100]
    depth: Count = 2
    use_batchnorm: bool = True
    l2: Strength | None = 0.0
    optimizer: Optimizer = "adam"
    batch_size: Count = 200
    lr_decay: Decay | None = 0.95


class LinearHParams(HParams):
    """linear: scikit-learn's regularized linear models; a strength left None is 1.0."""

    model: Literal["linear"] = Field("linear", exclude=True)
    regularizer: Regularizer = "l2"
    l2: Strength | None = None
    l1: Strength | None = None
    max_iter: Count = 1000


class MajorityHParams(HParams):
    """majority: no hyperparameters."""

    model: Literal["majority"] = Field("majority", exclude=True)


class ReplayHParams(HParams):
    """replay (benchmarking only): the recording `curves` and the grid's axes."""

    model: Literal["replay"] = Field("replay", exclude=True)
    curves: Annotated[str, Field(min_length=1)] | None = None
    lr: Rate | None = None
    l2: Strength | None = None
    dropout: Fraction | None = None


MODELS: dict[str, type[HParams]] = {
    "keras_mlp": KerasMLPHParams,
    "keras_cnn": KerasCNNHParams,
    "numpy_mlp": NumpyMLPHParams,
    "linear": LinearHParams,
    "majority": MajorityHParams,
    "replay": ReplayHParams,
}
FAMILIES: tuple[str, ...] = tuple(MODELS)
KNOWN: frozenset[str] = frozenset(k for m in MODELS.values() for k in m.model_fields if k != "model")  # any family's
HParamsUnion = Annotated[
    KerasMLPHParams | KerasCNNHParams | NumpyMLPHParams | LinearHParams | MajorityHParams | ReplayHParams,
    Field(discriminator="model"),
]
_UNION = TypeAdapter(HParamsUnion)


def validate(family: str, values: dict, task: str | None = None) -> HParams:
    """`values` as `family`'s model (with `task`: a complete training configuration, see `HParams`).

    Raises:
        pydantic.ValidationError: a key the family does not read, or a value outside its domain.
    """
    return _UNION.validate_python({**values, "model": family}, context={"task": task})


def reads(family: str) -> tuple[str, ...]:
    """The hyperparameters `family` reads, sorted."""
    return tuple(sorted(k for k in MODELS[family].model_fields if k != "model"))


def defaults(family: str, task: str | None = None) -> dict:
    """`family`'s defaults (for `task`, when given): every key it reads."""
    return validate(family, {}, task).model_dump()


def problems(family: str, values: dict, task: str | None = None) -> list[tuple[str | None, Any, str]]:
    """What is wrong with `values` for `family` (with `task`: as a complete training configuration), as
    `(key, value, why)`, the key None for a problem of the whole; empty when nothing is."""
    known = set(reads(family))
    listing = f"{family} reads {', '.join(reads(family))}" if known else f"{family} has no hyperparameters"
    out: list = [(k, v, f"{family} does not read `{k}`; {listing}") for k, v in values.items() if k not in known]
    try:
        validate(family, {k: v for k, v in values.items() if k in known}, task)
    except ValidationError as err:
        keys = dict.fromkeys(e["loc"][1] for e in err.errors() if len(e["loc"]) > 1)
        out += [(k, values.get(k), f"{k} must be {allowed(domain(k))}") for k in keys]
        out += [(None, values, str(e["ctx"]["error"])) for e in err.errors() if len(e["loc"]) <= 1]
    return out


def resolve_hparams(family_name: str, task: str, fixed: dict, sampled: dict | None = None) -> dict:
    """The hyperparameters one training run of `family_name` uses for `task`, as the family's model dumps them.

    The family's defaults for the task, then `fixed` (a benchmark's `hparams`), then `sampled`
    (a trial's values); None keeps the default.

    Raises:
        ValueError: an unknown family or task, a key the family does not read, a value outside its domain,
            a `loss` the task cannot train with or a regularizer without its strengths.
    """
    from pipeline.tasks import TASKS  # noqa: PLC0415 - light

    if family_name not in MODELS:
        raise ValueError(f"unknown model family {family_name!r}; expected one of {', '.join(FAMILIES)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    requested = {**fixed, **(sampled or {})}
    if wrong := problems(family_name, requested, task):
        raise ValueError("; ".join(why for _, _, why in wrong))
    return validate(family_name, requested, task).model_dump()


def loss_problem(task: str, loss: Any) -> str | None:
    """None when `loss` (None: the task's default) can train `task`, else what the task allows."""
    allowed_losses = TASK_LOSSES.get(task, ())
    if loss is None or loss in allowed_losses:
        return None
    return f"a {task} task trains with {' or '.join(allowed_losses)}, not {loss}"


def strength_problem(hp: HParams) -> str | None:
    """None when the strengths `hp.regularizer` uses are set (or the family needs none), else why not."""
    if not hp.NEEDS_STRENGTH:
        return None
    regularizer = hp.regularizer
    needed = () if regularizer == "l2" else REGULARIZER_STRENGTHS[regularizer]  # l2 unset: no penalty, as always
    missing = [s for s in needed if getattr(hp, s) is None]
    if not missing:
        return None
    return f"regularizer {regularizer} needs {' and '.join(missing)} (a strength >= 0) in `hparams` or `space`"


# --- a key's domain, read from the models' JSON schema -------------------------------------------------
@functools.cache
def domain(name: str) -> dict:
    """The JSON schema of hyperparameter `name` (the same in every family reading it), without `null`; `{}` for a
    name no family reads."""
    family = next((f for f in FAMILIES if name in reads(f)), None)
    if family is None:
        return {}
    schema = MODELS[family].model_json_schema()["properties"][name]
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    return options[0] if len(options) == 1 else {"anyOf": options}


def numeric(schema: dict) -> str | None:
    """`float` or `int` when a `low`/`high` range of the domain can be searched (`int`: whole numbers), else None."""
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
    return "int" if "integer" in kinds else "float" if "number" in kinds else None


def bounds(schema: dict) -> tuple[float | None, float | None, bool, bool]:
    """The numeric part's `(low, high, low_open, high_open)`; a missing end is None."""
    s = next(s for s in schema.get("anyOf", [schema]) if s.get("type") in ("number", "integer"))
    low, high = s.get("exclusiveMinimum", s.get("minimum")), s.get("exclusiveMaximum", s.get("maximum"))
    return low, high, "exclusiveMinimum" in s, "exclusiveMaximum" in s


def allowed(schema: dict) -> str:
    """What a domain allows, in words."""
    if "anyOf" in schema:  # a whole number or a list of them
        return f"{allowed(schema['anyOf'][0])} or a list of them"
    if "enum" in schema or "const" in schema:
        return f"one of {', '.join(map(str, schema.get('enum', [schema.get('const')])))}"
    kind = schema.get("type")
    if kind == "boolean":
        return "true or false"
    if kind == "string":
        return "a non-empty string"
    if kind == "array":
        return f"a list of blocks, each {allowed(schema['items'])}"
    low, high, low_open, high_open = bounds(schema)
    if low is not None and high is not None:
        where = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        where = f"{'>' if low_open else '>='} {low:g}"
    else:
        where = f"{'<' if high_open else '<='} {high:g}" if high is not None else ""
    return f"{'a number' if kind == 'number' else 'a whole number'} {where}".rstrip()


def hidden_units(hp: dict) -> list[int]:
    """Return the width of every hidden layer: `units` as a list, or `[units] * depth`."""
    units = hp["units"]
    widths = list(units) if isinstance(units, list | tuple) else [int(units)] * int(hp.get("depth", 1))
    return [int(w) for w in widths]
