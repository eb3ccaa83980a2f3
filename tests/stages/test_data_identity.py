"""A search knows its data: new data (another custom CSV) means new studies, and processed data made
from other settings (a preprocess that failed after a change) is refused by every later stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import main_ok, run_main
from fixtures_datasets import CSV_BENCH as BENCH
from fixtures_datasets import csv_bytes as _csv
from fixtures_datasets import csv_project as _params
from sklearn.datasets import load_breast_cancer


pytestmark = pytest.mark.slow  # the CLI's stages (its main, in-process) again after each change of data: over 10 s


def _stages(capsys) -> dict:
    for stage in ("fetch", "preprocess"):
        main_ok(capsys, stage, "--dataset", "mine")
    stderr = main_ok(capsys, "search", "--benchmark", BENCH)
    return json.loads((Path("results") / "search" / f"{BENCH}.json").read_text()) | {"stderr": stderr}


@pytest.fixture(scope="module")
def cancer():
    d = load_breast_cancer()
    return d.data[:240], d.target[:240]


def test_a_changed_dataset_gets_new_studies_and_a_failed_preprocess_is_never_read(tmp_path, cancer, monkeypatch,
                                                                                   capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    x, y = cancer
    first = _csv(x, y)
    _params(tmp_path, "a.csv", first)
    old = _stages(capsys)
    assert old["best"]["value"] > 0.85  # a learnable problem

    shuffled = _csv(x, np.random.default_rng(0).permutation(y))  # new data: the labels no longer follow
    _params(tmp_path, "b.csv", shuffled)
    new = _stages(capsys)
    assert "already met" not in new["stderr"]
    old_names = {r["study"] for r in old["rounds"]}
    assert not old_names & {r["study"] for r in new["rounds"]}  # other studies, run afresh
    assert new["best"]["value"] < 0.8  # the new data's own best, not the old one's 0.9+

    # the same file moved elsewhere is the same data: same studies, nothing to run
    (tmp_path / "data_in").mkdir()
    (tmp_path / "data_in" / "b.csv").write_bytes(shuffled)
    _params(tmp_path, "data_in/b.csv", shuffled)
    again = _stages(capsys)
    assert [r["study"] for r in again["rounds"]] == [r["study"] for r in new["rounds"]]
    assert "already met" in again["stderr"]

    # settings changed, preprocess fails: every stage that reads processed data refuses the old folder
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["datasets"]["mine"]["preprocess"]["kfold"] = 500  # more folds than rows: preprocess fails
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run_main(capsys, "preprocess", "--dataset", "mine")[0] != 0
    for stage in ("search", "train_best", "evaluate"):
        code, stderr = run_main(capsys, stage, "--benchmark", BENCH)
        assert code == 1, (stage, stderr[-2000:])
        err = stderr.strip().splitlines()[-1]
        assert err.startswith("error: ") and "made from other settings of datasets.mine" in err, err
        assert "tunebench preprocess --dataset mine" in err
