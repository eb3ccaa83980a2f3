"""Bad data is refused where it enters, in one `error:` line: CSV cells no model can use, settings the data's
size cannot give, local files with the wrong hash, and file names the raw folder reserves.

Real files throughout: CSV tables written to disk, fetched by path and read back; the CLI runs as a subprocess.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml
from fixtures_datasets import sha256, write_params

from conftest import run_cli
import pipeline.datasets as ds
from pipeline.datasets import FormatError, RawData
from pipeline.errors import ConfigError
from pipeline.features import SizeError, preprocess


def _csv(tmp_path, text: str, name: str = "table.csv"):
    """Fetch `text` as a custom CSV dataset `mine` (target column `y`); return (custom, raw folder)."""
    src = tmp_path / "src" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(text)
    custom = {"path": str(src), "sha256": sha256(src.read_bytes()), "format": "csv", "task": "regression",
              "target": "y"}  # fmt: skip
    dest = tmp_path / "raw" / "mine"
    ds.fetch("mine", dest, custom=custom)
    return custom, dest


def _table(n: int = 30, seed: int = 0) -> list[str]:
    """The lines of a clean numeric table `a,b,y` of `n` rows."""
    rng = np.random.default_rng(seed)
    return ["a,b,y"] + [",".join(f"{v:.4f}" for v in rng.normal(size=3)) for _ in range(n)]


# -- CSV cells no model can use: named by file line and column ---------------------------------------------------
@pytest.mark.parametrize(
    ("line", "cell", "column", "why"),
    [
        (6, "1e308,0.5,0.1", "'a'", "'1e308' is infinite or beyond float32's range"),  # became inf when standardized
        (4, "0.2,-1e309,0.1", "'b'", "'-1e309' is infinite or beyond float32's range"),
        (9, "0.2,0.5,1e39", "'y'", "'1e39' is infinite or beyond float32's range"),  # a float32 target overflows
        (3, "nan,0.5,0.1", "'a'", "'nan' is not a number (NaN)"),
        (12, "0.2,0.5,NaN", "'y'", "'NaN' is not a number (NaN)"),  # read as a class 'nan' before
        (5, "0.2,0.5,", "'y'", "empty cell"),
        (7, "0.2,,0.1", "'b'", "empty cell"),
        (8, "0.2,inf,0.1", "'b'", "'inf' is infinite"),
    ],
)
def test_unusable_cells_are_refused_naming_line_and_column(tmp_path, line, cell, column, why):
    lines = _table()
    lines.insert(2, "")  # a blank line: line numbers are the file's, not the data rows'
    lines[line - 1] = cell
    custom, dest = _csv(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=re.escape(f"table.csv: line {line}, column {column}: {why}")) as info:
        ds.load("mine", dest, custom=custom)
    assert str(info.value).endswith("; fix or remove the row")


def test_class_labels_and_a_header_without_duplicates_still_read(tmp_path):
    lines = ["a,b,y"] + [f"{i},{i % 3},{['cat', 'dog'][i % 2]}" for i in range(20)]
    custom, dest = _csv(tmp_path, "\n".join(lines) + "\n")
    raw = ds.load("mine", dest, custom={**custom, "task": "binary"})
    assert raw.meta["label_names"] == ["cat", "dog"] and raw.x_train.shape == (20, 2)


def test_a_column_named_twice_is_refused(tmp_path):
    lines = _table()
    lines[0] = "y,b,y"  # the target was the first `y`; the labels then were the features' values
    custom, dest = _csv(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"table\.csv: line 1: column name 'y' is given twice; rename one"):
        ds.load("mine", dest, custom=custom)


def test_cli_refuses_a_csv_overflow_in_one_line(tmp_path):
    lines = _table(40)
    lines[5] = "1e308,0.5,0.1"
    src = tmp_path / "table.csv"
    src.write_text("\n".join(lines) + "\n")
    custom = {"path": str(src), "sha256": sha256(src.read_bytes()), "format": "csv", "task": "regression",
              "target": "y"}  # fmt: skip
    project = write_params(tmp_path / "p", custom)
    assert run_cli("fetch", "--dataset", "mine", cwd=project, timeout=120).returncode == 0
    proc = run_cli("preprocess", "--dataset", "mine", cwd=project, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert "error: data/raw/mine/table.csv: line 6, column 'a': '1e308' is infinite" in proc.stderr
    assert not (project / "data" / "processed" / "mine").exists()


# -- settings the data's size cannot give: refused at preprocess, naming dataset, key, value and sizes ----------
def _raw(n: int, task: str = "regression", width: int = 3) -> RawData:
    rng = np.random.default_rng(0)
    y = rng.normal(size=n) if task == "regression" else np.arange(n) % 2
    return RawData("mine", task, "tabular", rng.normal(size=(n, width)), y, n_classes=2 if task == "binary" else None)


@pytest.mark.parametrize(
    ("n", "task", "cfg", "message"),
    [
        (12, "regression", {"kfold": 20},
         "dataset 'mine' (12 rows, 3 held out for test): preprocess.kfold=20 needs at least 20 training rows, "
         "there are 9; use at most 9 folds"),
        (12, "binary", {"kfold": 10, "max_rows": 11},
         "dataset 'mine' (12 rows, 3 held out for test): preprocess.kfold=10 needs at least 10 training rows, "
         "there are 9"),
        (40, "regression", {"kind": "pca", "n_components": 5},
         "dataset 'mine' (40 rows, 8 held out for test): preprocess.n_components=5 exceeds the 3 features or the "
         "25 training rows; use at most 3"),
        (5, "regression", {"kind": "pca", "n_components": 3, "kfold": 2},  # 3 features, but a fold trains on 2 rows
         "preprocess.n_components=3 exceeds the 3 features or the 2 training rows of a fold; use at most 2"),
        (2, "regression", {"test_fraction": 0.5},
         "dataset 'mine' (2 rows, 1 held out for test): preprocess.val_fraction=0.2 leaves no row to train on"),
        (1, "regression", {},
         "dataset 'mine' (1 rows, 1 held out for test): preprocess.test_fraction=0.2 leaves no row to train on"),
        (100, "binary", {"max_rows": 11, "val_fraction": 0.95, "test_fraction": 0.02},
         "(100 rows, 2 held out for test, 11 kept by max_rows): preprocess.max_rows=11 leaves no row to train on: "
         "val_fraction=0.95 holds out 11 of its 11 rows; raise max_rows or lower val_fraction"),
        (100, "binary", {"max_rows": 11, "kfold": 20},
         "(100 rows, 20 held out for test, 11 kept by max_rows): preprocess.kfold=20 needs at least 20 training rows, "
         "there are 11"),
    ],
)  # fmt: skip
def test_sizes_the_data_cannot_give_are_refused(n, task, cfg, message):
    with pytest.raises(SizeError, match=re.escape(message)) as info:
        preprocess(_raw(n, task), {"kind": "standardize", **cfg})
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_n_components_that_fit_pass():
    data = preprocess(_raw(40), {"kind": "pca", "n_components": 3})
    assert data.input_shape == (3,)


def test_a_class_too_rare_for_the_split_names_the_dataset():
    raw = RawData("mine", "multiclass", "tabular", np.zeros((41, 2)), np.array([0] * 20 + [1] * 20 + [2]), n_classes=3)
    with pytest.raises(SizeError, match=r"dataset 'mine' \(41 rows, 9 held out for test\): preprocess: .*class 2"):
        preprocess(raw, {"kind": "standardize"})


def test_cli_refuses_too_many_folds_in_one_line(tmp_path):
    src = tmp_path / "table.csv"
    src.write_text("\n".join(_table(12)) + "\n")
    custom = {"path": str(src), "sha256": sha256(src.read_bytes()), "format": "csv", "task": "regression",
              "target": "y"}  # fmt: skip
    project = write_params(tmp_path / "p", custom)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["datasets"]["mine"]["preprocess"].update(kfold=20, max_rows=None)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run_cli("validate", cwd=project, timeout=120).returncode == 0  # it only shows against the data
    assert run_cli("fetch", "--dataset", "mine", cwd=project, timeout=120).returncode == 0
    proc = run_cli("preprocess", "--dataset", "mine", cwd=project, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unexpected" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: dataset 'mine' (12 rows, 3 held out for test): preprocess.kfold=20 needs at least 20 training "
        "rows, there are 9; use at most 9 folds (or 0 for a validation split)"
    )


# -- local files with the wrong hash, and names the raw folder reserves -----------------------------------------
def test_a_wrong_local_file_is_named_never_copied(tmp_path):
    secret = tmp_path / "elsewhere" / "shadow"  # a stand-in for a root-only file such as /etc/shadow
    secret.parent.mkdir()
    secret.write_bytes(b"root:$6$not-a-dataset:19000:0:99999:7:::\n")
    secret.chmod(0o640)
    custom = {"path": str(secret), "sha256": "0" * 64, "format": "csv", "task": "regression", "target": "y"}
    dest = tmp_path / "raw" / "mine"
    with pytest.raises(ds.HashMismatchError) as info:
        ds.fetch("mine", dest, custom=custom)
    err = info.value
    assert err.quarantined is None and err.source == str(secret) and err.actual == sha256(secret.read_bytes())
    assert f"path {secret}: SHA256 {err.actual} != pinned {'0' * 64} (left where it is, not copied)" in str(err)
    assert not dest.exists() or not [p for p in dest.rglob("*") if p.is_file()]  # no copy of it anywhere
    assert secret.stat().st_mode & 0o777 == 0o640  # the source is left alone


def test_a_wrong_download_is_still_quarantined(tmp_path, server):
    url = server.add("table.csv", b"a,y\n1,2\n")
    custom = {"url": url, "sha256": "0" * 64, "format": "csv", "task": "regression", "target": "y"}
    with pytest.raises(ds.HashMismatchError) as info:
        ds.fetch("mine", tmp_path / "raw" / "mine", custom=custom, progress=False)
    assert info.value.quarantined and open(info.value.quarantined, "rb").read() == b"a,y\n1,2\n"


@pytest.mark.parametrize("name", ["manifest.json", ".table.csv.part", ".quarantine"])
def test_a_file_name_the_raw_folder_reserves_is_refused(tmp_path, name):
    src = tmp_path / "src" / name
    src.parent.mkdir()
    src.write_text("a,y\n1,2\n")
    custom = {"path": str(src), "sha256": sha256(src.read_bytes()), "format": "csv", "task": "regression",
              "target": "y"}  # fmt: skip
    dest = tmp_path / "raw" / "mine"
    with pytest.raises(ConfigError, match=re.escape(f"its file name {name!r} cannot be used in {dest}/")) as info:
        ds.fetch("mine", dest, custom=custom)
    assert "`datasets.mine.source.path`" in str(info.value) and "rename the file" in str(info.value)
    assert not dest.exists()


def test_cli_refuses_a_custom_manifest_json(tmp_path):
    src = tmp_path / "manifest.json"
    src.write_text("a,y\n1,2\n")
    custom = {"path": str(src), "sha256": sha256(src.read_bytes()), "format": "csv", "task": "regression",
              "target": "y"}  # fmt: skip
    project = write_params(tmp_path / "p", custom)
    proc = run_cli("fetch", "--dataset", "mine", cwd=project, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert "its file name 'manifest.json' cannot be used in data/raw/mine/" in proc.stderr
    assert not (project / "data" / "raw" / "mine").exists()
