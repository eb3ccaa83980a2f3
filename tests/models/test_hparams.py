"""pipeline.models.hparams: a pydantic model per family; `resolve_hparams`: defaults, then fixed, then sampled."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.models import FAMILIES, get_family
from pipeline.models import hparams as hp
from pipeline.models.hparams import resolve_hparams


def test_defaults_then_fixed_then_sampled():
    out = resolve_hparams("keras_mlp", "binary", {"units": 32, "lr": 0.1}, {"lr": 0.01})
    assert out == {**get_family("keras_mlp").default_hparams("binary"), "units": 32, "lr": 0.01}
    assert resolve_hparams("keras_mlp", "regression", {})["batch_size"] == 16  # a task default
    assert resolve_hparams("numpy_mlp", "multiclass", {"l2": None})["l2"] == 0.0  # None keeps the default


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_resolves_to_what_it_reads(family):
    for task in ("binary", "multiclass", "regression"):
        out = resolve_hparams(family, task, {})
        assert out == get_family(family).default_hparams(task)
        assert tuple(sorted(out)) == hp.reads(family)
        assert resolve_hparams(family, task, out) == out, "resolving resolved values changes nothing"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("keras_mlp", "binary", {"lr": -1.0}), "lr must be a number > 0"),
        (("keras_mlp", "binary", {}, {"use_batchnorm": True}), "keras_mlp does not read `use_batchnorm`"),
        (("keras_mlp", "binary", {"learning_rate": 0.1}), "does not read `learning_rate`; keras_mlp reads"),
        (("keras_mlp", "binary", {"batch_size": 64.0}), "batch_size must be a whole number >= 1"),
        (("keras_mlp", "binary", {"nesterov": 1}), "nesterov must be true or false"),
        (("resnet", "binary", {}), "unknown model family"),
        (("linear", "ranking", {}), "unknown task"),
    ],
)
def test_refuses_what_the_family_cannot_use(args, match):
    with pytest.raises(ValueError, match=match):
        resolve_hparams(*args)


def test_the_union_is_selected_by_model():
    assert type(hp.validate("numpy_mlp", {"lr": 0.1})) is hp.NumpyMLPHParams
    assert hp.validate("keras_cnn", {}).model_dump()["filters"] == [32, 64]
    assert "model" not in hp.validate("linear", {}).model_dump(), "the discriminator is no hyperparameter"
    with pytest.raises(ValidationError):
        hp.validate("linear", {"dropout": 0.5})
    assert hp.problems("majority", {"model": "linear"})[0][2].startswith("majority does not read `model`")


def test_a_key_has_one_domain_in_every_family():
    for name in {k for f in FAMILIES for k in hp.reads(f)}:
        schemas = []
        for family in FAMILIES:
            if name in hp.reads(family):
                schema = hp.MODELS[family].model_json_schema()["properties"][name]
                options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]  # None: the default
                schemas.append([{k: v for k, v in s.items() if k not in ("default", "title")} for s in options])
        assert all(s == schemas[0] for s in schemas), name
    assert hp.allowed(hp.domain("dropout")) == "a number in [0, 1)"
    assert hp.allowed(hp.domain("filters")) == "a list of blocks, each a whole number >= 1 or a list of them"
    assert hp.bounds(hp.domain("lr")) == (0, None, True, False)
    assert (hp.numeric(hp.domain("units")), hp.numeric(hp.domain("optimizer"))) == ("int", None)
