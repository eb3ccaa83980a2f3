"""params.yaml validation: the shipped file is valid, and every kind of mistake is named precisely."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, parse_params
from tests.conftest import ROOT, run_cli


def test_shipped_params_are_valid(shipped_params):
    params = parse_params(shipped_params)
    assert params.benchmarks, "the default must define benchmarks"
    for bench in params.benchmarks.values():
        assert bench.dataset in params.datasets
        assert len(bench.rounds) >= 2, "the default runs a coarse and a fine round"
        assert bench.space["l2"].log, "L2 is searched log-uniformly"
        if bench.model != "linear":
            assert bench.space["lr"].log, "the learning rate is searched log-uniformly"


def _set(data: dict, path: str, value):
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


B = "benchmarks.rt_polarity_keras_mlp"
MISTAKES = [
    # (key path to change, bad value, words the message must contain)
    (f"{B}.space.lr.low", -1.0, ["space.lr", "-1", "low > 0"]),
    (f"{B}.space.lr.low", 0.0, ["space.lr", "low > 0"]),
    (f"{B}.space.l2.high", 1e-9, ["space.l2", "must be below high"]),
    (f"{B}.space.dropout", {"low": 0.5, "high": 0.5}, ["space.dropout", "must be below high"]),
    (f"{B}.model", "keras_rnn", ["model", "keras_rnn", "keras_mlp"]),
    (f"{B}.dataset", "no_such_data", ["dataset", "no_such_data", "add it under `datasets`"]),
    (f"{B}.rounds.0.n_trials", "many", ["rounds.0.n_trials", "many", "integer"]),
    (f"{B}.rounds.0.n_trials", 0, ["rounds.0.n_trials", "greater than 0"]),
    (f"{B}.rounds.0.pruner", "medain", ["rounds.0.pruner", "medain", "median"]),
    (f"{B}.rounds.0.epocs", 3, ["rounds.0.epocs", "unknown key"]),
    (f"{B}.hparms", {}, ["hparms", "unknown key"]),
    ("search.sampler", "bayes", ["search.sampler", "bayes", "tpe"]),
    ("search.workers", 0, ["search.workers", "greater than or equal to 1"]),
    ("datasets.rt_polarity.preprocess.kind", "one_hot", ["preprocess.kind", "one_hot", "multi_hot"]),
    ("datasets.rt_polarity.preprocess.val_fraction", 1.5, ["val_fraction", "less than 1"]),
    ("datasets.digits.preprocess.kfold", 1, ["kfold", "at least 2"]),
    ("datasets.imbd", {"source": "builtin", "preprocess": {"kind": "multi_hot"}}, ["datasets.imbd", "unknown dataset"]),
    ("promote.min_improvement", -0.1, ["min_improvement", "greater than or equal to 0"]),
    ("tracking.uri", 5, ["tracking.uri", "string"]),
    ("typo_section", {}, ["typo_section", "unknown key"]),
]


@pytest.mark.parametrize("path,value,words", MISTAKES, ids=[m[0] + "=" + repr(m[1])[:20] for m in MISTAKES])
def test_mistake_is_named(shipped_params, path, value, words):
    data = copy.deepcopy(shipped_params)
    _set(data, path, value)
    with pytest.raises(ConfigError) as info:
        parse_params(data)
    msg = str(info.value)
    assert "params.yaml" in msg
    for w in words:
        assert w in msg, f"{w!r} missing from: {msg}"


def test_custom_source_is_checked(shipped_params):
    data = copy.deepcopy(shipped_params)
    data["datasets"]["mine"] = {
        "source": {"path": "x.csv", "sha256": "abc", "format": "csv", "task": "regression", "target": "y"},
        "preprocess": {"kind": "standardize"},
    }
    with pytest.raises(ConfigError, match=r"datasets\.mine\.source.*sha256"):
        parse_params(data)
    data["datasets"]["mine"]["source"]["sha256"] = "0" * 64
    parse_params(data)  # a well-formed custom dataset is accepted


def test_cli_exits_2_and_writes_nothing(tmp_path: Path, shipped_params):
    bad = copy.deepcopy(shipped_params)
    bad["benchmarks"]["rt_polarity_keras_mlp"]["space"]["lr"]["low"] = -3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli("fetch", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"params\.yaml: benchmarks\.rt_polarity_keras_mlp\.space\.lr: bad value", proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_every_dvc_param_exists_in_params():
    """Every `params:` key named in dvc.yaml resolves in params.yaml for every foreach item."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    checked = 0
    for stage in dvc["stages"].values():
        if "foreach" in stage:
            group = re.fullmatch(r"\$\{(\w+)\}", stage["foreach"]).group(1)
            items = params[group]
            body = stage["do"]
        else:
            items, body = {"_": None}, stage
        for key in items:
            for p in body.get("params", []):
                node = params
                for part in p.replace("${key}", key).split("."):
                    assert part in node, f"dvc.yaml param {p} ({key}) missing from params.yaml"
                    node = node[part]
                checked += 1
    assert checked > 0
