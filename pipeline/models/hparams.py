"""Every hyperparameter in one table: its type and domain, the families that read it, and resolution.

`HPARAMS` declares each name once (type, domain, meaning); `DEFAULTS` gives each family's
defaults, whose keys are exactly the hyperparameters that family reads (`reads(family)`);
`TASK_DEFAULTS` the values that differ by task; `FAMILIES` is the one list of model families.
`pipeline.config` checks `hparams` and `space` of every benchmark against these tables when
`params.yaml` is loaded; `resolve_hparams` gives the values one training run uses (defaults,
then the benchmark's fixed values, then a trial's sampled ones; the search, `train_best` and
everything that logs hyperparameters call it), and `resolve` checks values passed to
`ModelFamily.train` directly. This module imports nothing heavy (no NumPy, no TensorFlow).
None (`null`) always means "the family's default".

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
    `kernel_size`, `augment`, `preset`; numpy_mlp: `use_batchnorm`; linear: `max_iter`; replay (a
    benchmarking family answering from recorded curves, `pipeline.models.replay`): `curves`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HParam:
    """The type and domain of one hyperparameter.

    `kind`: `float` (a finite number; ints accepted), `int` (a whole number), `bool`,
    `choice` (one of `choices`), `text` (a non-empty string), `widths` (a whole number or a non-empty list of them),
    `blocks` (a non-empty list of `widths`: conv blocks). Numbers lie in the interval from
    `low` to `high`, excluding an end whose `*_open` is set; a missing end is unbounded.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()

    @property
    def numeric(self) -> bool:
        """True when a `low`/`high` range can be searched (False: search it with `choices`)."""
        return self.kind in ("float", "int", "widths")

    @property
    def integer(self) -> bool:
        """True when the values are whole numbers (a searched range needs `int: true`)."""
        return self.kind in ("int", "widths")

    def allowed(self) -> str:
        """What the domain allows, in words."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return f"one of {', '.join(map(str, self.choices))}"
        if self.kind == "text":
            return "a non-empty string"
        bounds = self._bounds()
        if self.kind == "float":
            return f"a number {bounds}"
        if self.kind == "int":
            return f"a whole number {bounds}"
        if self.kind == "widths":
            return f"a whole number {bounds} or a list of them"
        return f"a list of blocks, each a whole number {bounds} or a list of them"

    def _bounds(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}" if self.high is not None else ""

    def _in_bounds(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def _whole(self, v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and self._in_bounds(v)

    def _widths(self, v: Any) -> bool:
        if isinstance(v, list | tuple):
            return len(v) > 0 and all(self._whole(w) for w in v)
        return self._whole(v)

    def accepts(self, value: Any) -> bool:
        """True when `value` lies in the domain (None, the family default, always does)."""
        if value is None:
            return True
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "text":
            return isinstance(value, str) and value != ""
        if self.kind == "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return ok and math.isfinite(value) and self._in_bounds(value)
        if self.kind == "int":
            return self._whole(value)
        if self.kind == "widths":
            return self._widths(value)
        return isinstance(value, list | tuple) and len(value) > 0 and all(self._widths(b) for b in value)


HPARAMS: dict[str, HParam] = {
    "lr": HParam("float", low=0, low_open=True),
    "l2": HParam("float", low=0),
    "l1": HParam("float", low=0),
    "regularizer": HParam("choice", choices=("l2", "l1", "l1_l2")),
    "loss": HParam(
        "choice", choices=("binary_crossentropy", "hinge", "categorical_crossentropy", "mse", "mae", "huber")
    ),
    "dropout": HParam("float", low=0, high=1, high_open=True),
    "units": HParam("widths", low=1),
    "depth": HParam("int", low=1),
    "activation": HParam("choice", choices=("relu", "tanh")),
    "optimizer": HParam("choice", choices=("rmsprop", "adam", "sgd")),
    "momentum": HParam("float", low=0, high=1, high_open=True),
    "nesterov": HParam("bool"),
    "batch_size": HParam("int", low=1),
    "lr_schedule": HParam("choice", choices=("none", "step", "plateau")),
    "lr_step_epochs": HParam("int", low=1),
    "lr_patience": HParam("int", low=1),
    "lr_decay": HParam("float", low=0, high=1, low_open=True),
    "early_stopping": HParam("int", low=1),
    "filters": HParam("blocks", low=1),
    "kernel_size": HParam("widths", low=1),
    "augment": HParam("bool"),
    "preset": HParam("choice", choices=("notes",)),  # the presets of pipeline.models.keras_cnn.PRESETS
    "use_batchnorm": HParam("bool"),
    "max_iter": HParam("int", low=1),
    "curves": HParam("text"),  # replay: the recording (`pipeline.models.replay`)
}

# task -> the losses a family reading `loss` can train with (the first is the default, None).
TASK_LOSSES: dict[str, tuple[str, ...]] = {
    "binary": ("binary_crossentropy", "hinge"),
    "multiclass": ("categorical_crossentropy",),
    "regression": ("mse", "mae", "huber"),
}
# regularizer -> the strengths it uses.
REGULARIZER_STRENGTHS: dict[str, tuple[str, ...]] = {"l2": ("l2",), "l1": ("l1",), "l1_l2": ("l1", "l2")}
# Families with no penalty of their own: `regularizer: l1 | l1_l2` needs its strengths given
# (linear falls back to scikit-learn's default strength 1.0, as it does for l2).
NEEDS_STRENGTH: tuple[str, ...] = ("keras_mlp", "keras_cnn", "numpy_mlp")

# Keys every Keras family reads, with their defaults.
KERAS_DEFAULTS: dict = {
    "activation": "relu",
    "dropout": 0.0,
    "regularizer": "l2",
    "l2": None,
    "l1": None,
    "loss": None,
    "optimizer": "rmsprop",
    "lr": 1e-3,
    "momentum": 0.9,
    "nesterov": True,
    "batch_size": 512,
    "lr_schedule": "none",
    "lr_step_epochs": 5,
    "lr_patience": 2,
    "lr_decay": None,
    "early_stopping": None,
}

# family -> its defaults; the keys are what the family reads. A family's `default_hparams(task)`
# starts from these and may change values for a task, never keys.
DEFAULTS: dict[str, dict] = {
    "keras_mlp": {**KERAS_DEFAULTS, "units": 64, "depth": 2},
    "keras_cnn": {
        **KERAS_DEFAULTS,
        "filters": [32, 64],
        "kernel_size": 3,
        "units": 128,
        "depth": 1,
        "dropout": 0.5,
        "batch_size": 128,
        "augment": False,
        "preset": None,
    },
    "numpy_mlp": {
        "units": [200, 100],
        "depth": 2,
        "use_batchnorm": True,
        "dropout": 0.0,
        "regularizer": "l2",
        "l2": 0.0,
        "l1": None,
        "loss": None,
        "optimizer": "adam",
        "lr": 1e-3,
        "momentum": 0.9,
        "nesterov": True,
        "batch_size": 200,
        "lr_decay": 0.95,
        "lr_schedule": "none",
        "lr_step_epochs": 5,
        "lr_patience": 2,
        "early_stopping": None,
    },
    "linear": {"regularizer": "l2", "l2": None, "l1": None, "max_iter": 1000},
    "majority": {},
    "replay": {"curves": None, "lr": None, "l2": None, "dropout": None},  # benchmarking only: recorded curves
}

# family -> task -> the defaults that differ for that task (keras_mlp: the networks of Chollet, ch. 3).
TASK_DEFAULTS: dict[str, dict[str, dict]] = {
    "keras_mlp": {"binary": {"units": 16}, "regression": {"batch_size": 16}},
}

FAMILIES: tuple[str, ...] = tuple(DEFAULTS)


def defaults(family: str, task: str | None = None) -> dict:
    """A fresh copy of `family`'s defaults: `DEFAULTS`, with `TASK_DEFAULTS` of `task` when given."""
    values = {**DEFAULTS[family], **TASK_DEFAULTS.get(family, {}).get(task, {})}
    return {k: list(v) if isinstance(v, list) else v for k, v in values.items()}


def reads(family: str) -> tuple[str, ...]:
    """The hyperparameters `family` reads, sorted."""
    return tuple(sorted(DEFAULTS[family]))


def problem(name: str, value: Any) -> str | None:
    """None when `value` is allowed for hyperparameter `name`, else what is allowed, in words."""
    spec = HPARAMS.get(name)
    if spec is None:
        return f"unknown hyperparameter; known: {', '.join(sorted(HPARAMS))}"
    return None if spec.accepts(value) else f"{name} must be {spec.allowed()}"


def loss_problem(task: str, loss: Any) -> str | None:
    """None when `loss` (None: the task's default) can train `task`, else what the task allows."""
    allowed = TASK_LOSSES.get(task, ())
    if loss is None or loss in allowed:
        return None
    return f"a {task} task trains with {' or '.join(allowed)}, not {loss}"


def strength_problem(hp: dict, family: str | None = None) -> str | None:
    """None when the strengths `hp["regularizer"]` uses are set (or `family` needs none), else why not."""
    if family is not None and family not in NEEDS_STRENGTH:
        return None
    regularizer = hp.get("regularizer") or "l2"
    needed = () if regularizer == "l2" else REGULARIZER_STRENGTHS[regularizer]  # l2 unset: no penalty, as always
    missing = [s for s in needed if hp.get(s) is None]
    if not missing:
        return None
    return f"regularizer {regularizer} needs {' and '.join(missing)} (a strength >= 0) in `hparams` or `space`"


def resolve(defaults: dict, hparams: dict | None) -> dict:
    """Merge `hparams` into a family's `defaults`.

    Args:
        `defaults`: the family's defaults; its keys are the keys the family reads.
        `hparams`: requested values; None values and keys missing from `defaults` are ignored.

    Returns:
        A new dict with exactly the keys of `defaults`; a list of `units` sets `depth`.

    Raises:
        ValueError: for a key no family knows, or a value outside its domain in `HPARAMS`.
    """
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - set(HPARAMS))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; known: {sorted(HPARAMS)}")
    out = dict(defaults)
    out.update({k: v for k, v in hparams.items() if v is not None and k in defaults})
    for key in hparams:
        if key in out and (why := problem(key, out[key])):
            raise ValueError(f"hyperparameter {key}={out[key]!r}: {why}")
    if isinstance(out.get("units"), list | tuple):
        out["units"] = [int(u) for u in out["units"]]
        out["depth"] = len(out["units"])
    return out


def resolve_hparams(family_name: str, task: str, fixed: dict, sampled: dict | None = None) -> dict:
    """The hyperparameters one training run of `family_name` uses for `task`.

    The family's defaults for the task, then `fixed` (a benchmark's `hparams`), then `sampled`
    (a trial's values, or the best trial's); None keeps the default (see `resolve`).

    Raises:
        ValueError: an unknown family or task, a key the family does not read, or a value outside its domain.
    """
    from pipeline.tasks import TASKS  # noqa: PLC0415 - light

    if family_name not in DEFAULTS:
        raise ValueError(f"unknown model family {family_name!r}; expected one of {', '.join(FAMILIES)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    requested = {**fixed, **(sampled or {})}
    foreign = sorted(set(requested) & set(HPARAMS) - set(DEFAULTS[family_name]))
    if foreign:
        raise ValueError(f"{family_name} does not read {', '.join(foreign)}; it reads {', '.join(reads(family_name))}")
    out = resolve(defaults(family_name, task), requested)
    if why := loss_problem(task, out.get("loss")) or strength_problem(out, family_name):
        raise ValueError(why)
    return out


def hidden_units(hp: dict) -> list[int]:
    """Return the width of every hidden layer: `units` as a list, or `[units] * depth`."""
    units = hp["units"]
    widths = list(units) if isinstance(units, list | tuple) else [int(units)] * int(hp.get("depth", 1))
    return [int(w) for w in widths]
