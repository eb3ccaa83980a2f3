"""Hyperparameter names, allowed values and their resolution against a family's defaults.

Every family reads only the keys its `default_hparams` lists; keys that belong to other
families are ignored, None means "use the default", and a name no family knows is an error.

Keys (families that read them):
    `lr` learning rate (keras_*, numpy_mlp); `l2` L2 penalty on kernels (keras: `l2*sum(W^2)`,
    numpy_mlp: `0.5*l2*sum(W^2)`, linear: C = 1/l2 or Ridge alpha = l2); `dropout` drop rate;
    `units` int or list per hidden layer; `depth` hidden layers when `units` is an int;
    `activation` relu|tanh; `optimizer` rmsprop|adam|sgd; `momentum`, `nesterov` for sgd;
    `batch_size`; `lr_schedule` none|step|plateau with `lr_step_epochs` (halve every k epochs)
    and `lr_patience` (halve after k epochs without a better validation loss); `lr_decay`
    (multiply the learning rate by it after every epoch); `early_stopping` patience in epochs
    on the validation metric (best weights restored) or None; keras_cnn: `filters`,
    `kernel_size`, `augment`, `preset`; numpy_mlp: `use_batchnorm`; linear: `max_iter`.
"""

from __future__ import annotations

KNOWN_KEYS = frozenset(
    {
        "lr", "l2", "dropout", "units", "depth", "activation", "optimizer", "momentum", "nesterov",
        "batch_size", "lr_schedule", "lr_step_epochs", "lr_patience", "lr_decay", "early_stopping",
        "filters", "kernel_size", "augment", "preset", "use_batchnorm", "max_iter",
    }
)  # fmt: skip

CHOICES: dict[str, tuple] = {
    "activation": ("relu", "tanh"),
    "optimizer": ("rmsprop", "adam", "sgd"),
    "lr_schedule": ("none", "step", "plateau"),
}


def resolve(defaults: dict, hparams: dict | None) -> dict:
    """Merge `hparams` into a family's `defaults`.

    Args:
        `defaults`: the family's defaults; its keys are the keys the family reads.
        `hparams`: requested values; None values and keys missing from `defaults` are ignored.

    Returns:
        A new dict with exactly the keys of `defaults`; a list of `units` sets `depth`.

    Raises:
        ValueError: for a key no family knows, or a value outside `CHOICES`.
    """
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; known: {sorted(KNOWN_KEYS)}")
    out = dict(defaults)
    out.update({k: v for k, v in hparams.items() if v is not None and k in defaults})
    for key, allowed in CHOICES.items():
        if key in out and out[key] is not None and out[key] not in allowed:
            raise ValueError(f"hyperparameter {key}={out[key]!r}; expected one of {allowed}")
    if isinstance(out.get("units"), list | tuple):
        out["units"] = [int(u) for u in out["units"]]
        out["depth"] = len(out["units"])
    return out


def hidden_units(hp: dict) -> list[int]:
    """Return the width of every hidden layer: `units` as a list, or `[units] * depth`.

    Raises:
        ValueError: when a width is not positive.
    """
    units = hp["units"]
    widths = list(units) if isinstance(units, list | tuple) else [int(units)] * int(hp.get("depth", 1))
    if any(int(w) < 1 for w in widths):
        raise ValueError(f"hyperparameter units={units!r}: every layer needs at least one unit")
    return [int(w) for w in widths]
