"""pipeline.models.hparams.resolve_hparams: family defaults, then fixed, then sampled, checked against the table."""

from __future__ import annotations

import pytest

from pipeline.models import FAMILIES, get_family
from pipeline.models.hparams import resolve_hparams


def test_defaults_then_fixed_then_sampled():
    hp = resolve_hparams("keras_mlp", "binary", {"units": 32, "lr": 0.1}, {"lr": 0.01})
    assert hp == {**get_family("keras_mlp").default_hparams("binary"), "units": 32, "lr": 0.01}
    assert resolve_hparams("keras_mlp", "regression", {})["batch_size"] == 16  # a task default
    assert resolve_hparams("numpy_mlp", "multiclass", {"l2": None})["l2"] == 0.0  # None keeps the default


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_resolves_to_what_it_reads(family):
    for task in ("binary", "multiclass", "regression"):
        assert resolve_hparams(family, task, {}) == get_family(family).default_hparams(task)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("keras_mlp", "binary", {"lr": -1.0}), "lr must be"),
        (("keras_mlp", "binary", {}, {"use_batchnorm": True}), "keras_mlp does not read use_batchnorm"),
        (("keras_mlp", "binary", {"learning_rate": 0.1}), "unknown hyperparameter"),
        (("resnet", "binary", {}), "unknown model family"),
        (("linear", "ranking", {}), "unknown task"),
    ],
)
def test_refuses_what_the_family_cannot_use(args, match):
    with pytest.raises(ValueError, match=match):
        resolve_hparams(*args)
