"""The whole stage chain of the full profile's four online benchmarks, on small files built in their real formats.

imdb, reuters, mnist and cifar10 need the internet (issue 15), so each test builds a few hundred
documents or images in the exact Keras / CIFAR file formats, puts them in the Keras cache folder
(`$KERAS_HOME/datasets`, where the built-in spec looks), re-pins that catalog entry to them for the
test only, and runs fetch, preprocess, search, train_best, evaluate, promote and report in-process
with `profiles/full.yaml`'s dataset and benchmark entries: the same preprocess protocol (only
`num_words` below the tiny vocabulary), two rounds of 2 trials x 1 epoch. Search workers read only
the processed data: the cifar10 search runs in 2 spawned worker processes, which never see the
re-pinned catalog.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from conftest import ROOT, rounds_list
from fixtures_datasets import cifar_tar, dead_url, descr_corpus, imdb_like, reuters_like, sha256, with_files

from pipeline import fileio, paths, stages
from pipeline.config import load_params
from pipeline.datasets.catalog import CATALOG, mlxtend_data_dir
from pipeline.features import ProcessedData
from pipeline.reference import reference_for
from pipeline.report import collect
from pipeline.search.storage import open_storage

pytestmark = pytest.mark.slow  # a whole stage chain per dataset, minutes in all

NUM_WORDS = 1000  # the profile's 10,000 exceeds these files' vocabulary (1,459 words): the top 1,000 instead


def _text_files(dataset: str) -> dict[str, bytes]:
    """imdb: scikit-learn's dataset descriptions, 162 paragraphs (60 as the test split), binary labels;
    reuters: the same paragraphs as one x/y file, 4 topics (the reader splits off 20% as Keras does)."""
    docs, labels = descr_corpus()
    if dataset == "imdb":
        data, index_json, _ = imdb_like(docs, [k % 2 for k in labels], n_test=60)
    else:
        data, index_json, _ = reuters_like(docs, [k % 4 for k in labels])
    return {f"{dataset}.npz": data, f"{dataset}_word_index.json": index_json}


def _mnist_files() -> dict[str, bytes]:
    """`mnist.npz` as Keras ships it (compressed, uint8 images and labels): 300 train / 100 test real
    MNIST digits, 40 of each class, taken from mlxtend's 5,000-image subset."""
    with gzip.open(mlxtend_data_dir() / "mnist_5k.csv.gz", "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    pick = np.concatenate([np.flatnonzero(table[:, -1] == c)[:40] for c in range(10)])
    pick = pick[np.random.default_rng(0).permutation(len(pick))]
    x, y = table[pick, :-1].reshape(-1, 28, 28), table[pick, -1]
    buf = BytesIO()
    np.savez_compressed(buf, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    return {"mnist.npz": buf.getvalue()}


def _cifar_files() -> dict[str, bytes]:
    """The CIFAR-10 python tarball, under the name Keras 3 caches it (`<fname>_archive`): five data batches
    of 40 and a test batch of 40 images, 4 of each class, each class a noisy tint of its own."""
    rng = np.random.default_rng(0)
    tints = rng.integers(40, 216, (10, 3))
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in rng.permutation(np.repeat(np.arange(10), 4))]
        planes = tints[labels][:, :, None] + rng.normal(0, 40, (len(labels), 3, 1024))
        batches[name] = (planes.clip(0, 255).astype(np.uint8).reshape(len(labels), 3072), labels)
    return {"cifar-10-batches-py-target_archive": cifar_tar(batches)}


def _build(dataset: str) -> dict[str, bytes]:
    """The dataset's files by name, in the order of the catalog entry's files."""
    if dataset in ("imdb", "reuters"):
        return _text_files(dataset)
    return _mnist_files() if dataset == "mnist" else _cifar_files()


def _repin(monkeypatch, dataset: str, files: dict[str, bytes]) -> None:
    """Point the built-in spec's pins at the built files (for this test only); no URL answers."""
    fs = CATALOG[dataset].filesets[0]
    pinned = []
    for f, data in zip(fs.files, files.values(), strict=True):
        digest = sha256(data) if f.algorithm == "sha256" else hashlib.new(f.algorithm, data).hexdigest()
        pinned.append(replace(f, digest=digest, url=dead_url(f.name)))
    monkeypatch.setitem(CATALOG, dataset, with_files(CATALOG[dataset], *pinned))


def _project(tmp_path: Path, benchmark: str) -> Path:
    """params.yaml of the full profile, only `benchmark` and its dataset, rounds shrunk to 2 trials x 1 epoch."""
    full = yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text())
    bench = full["benchmarks"][benchmark]
    ds = full["datasets"][bench["dataset"]]
    if "num_words" in ds["preprocess"]:
        ds["options"]["num_words"] = ds["preprocess"]["num_words"] = NUM_WORDS
    bench["rounds"] = [{**r, "n_trials": 2, "epochs": 1} for r in rounds_list(bench)]
    params = {k: full[k] for k in ("mirrors", "tracking", "search", "promote")}
    params |= {"datasets": {bench["dataset"]: ds}, "benchmarks": {benchmark: bench}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path / "params.yaml"


def _trial_pids(benchmark: str, result: dict) -> set[int]:
    """The process ids that ran the search's trials (their `worker` user attr)."""
    storage = open_storage(None, benchmark)
    studies = [optuna.load_study(study_name=r["study"], storage=storage) for r in result["rounds"]]
    return {t.user_attrs["worker"]["pid"] for s in studies for t in s.get_trials(deepcopy=False)}


@pytest.mark.parametrize(
    ("benchmark", "dataset", "shape", "n_classes", "reference", "workers"),
    [
        pytest.param("imdb_keras_mlp", "imdb", (NUM_WORDS,), 2, 0.8836, None, id="imdb"),
        pytest.param("reuters_keras_mlp", "reuters", (NUM_WORDS,), 46, 0.791, None, id="reuters"),
        pytest.param("mnist_keras_cnn", "mnist", (28, 28, 1), 10, 0.9925, None, id="mnist"),
        pytest.param("cifar10_numpy_mlp", "cifar10", (100,), 10, 0.50, 2, id="cifar10"),
    ],
)
def test_full_chain_on_files_in_the_keras_formats(tmp_path, monkeypatch, benchmark, dataset, shape, n_classes,
                                                  reference, workers):  # fmt: skip
    keras_cache = tmp_path / "keras-home" / "datasets"
    keras_cache.mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(keras_cache.parent))
    monkeypatch.delenv("TUNEBENCH_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    files = _build(dataset)
    for name, data in files.items():
        (keras_cache / name).write_bytes(data)
    _repin(monkeypatch, dataset, files)
    params = load_params(_project(tmp_path, benchmark))

    fetched = stages.fetch(params, dataset)
    assert fetched["fileset"] == "keras"
    assert [(e["source"]["kind"], e["source"]["location"]) for e in fetched["files"]] == [
        ("mirror", str(keras_cache / name)) for name in files
    ]
    assert [e["sha256"] for e in fetched["files"]] == [sha256(b) for b in files.values()]
    assert [e["pin"] for e in fetched["files"]] == [f.pin() for f in CATALOG[dataset].filesets[0].files]

    stages.preprocess(params, dataset)
    data = ProcessedData.load(paths.processed_dir(dataset))
    assert data.X_train.shape[1:] == shape and data.X_val.shape[1:] == shape and data.X_test.shape[1:] == shape
    assert data.n_classes == n_classes and data.task == CATALOG[dataset].task
    assert len(data.y_val) == pytest.approx(params.dataset(dataset).preprocess.val_fraction * (
        len(data.y_train) + len(data.y_val)), abs=1)  # fmt: skip
    if dataset in ("imdb", "reuters"):  # Chollet's multi-hot of Keras indices: start mark 1, OOV 2, words from 4
        dense = data.X_train.toarray() if hasattr(data.X_train, "toarray") else np.asarray(data.X_train)
        assert set(np.unique(dense)) == {0, 1} and dense[:, 1].all() and not dense[:, [0, 3]].any()
        assert dense[:, 2].any()  # words ranked past num_words became OOV
    if dataset == "imdb":
        assert len(data.y_test) == 60  # the file's own test split, untouched
    if dataset == "mnist":
        assert len(data.y_test) == 100 and len(data.y_train) + len(data.y_val) == 300

    result = stages.search(params, benchmark, workers=workers)
    assert result["best"] is not None and len(result["rounds"]) == 2
    if workers:  # the trials ran in spawned workers, which read only the processed data (not the catalog)
        assert os.getpid() not in _trial_pids(benchmark, result)
    stages.train_best(params, benchmark)
    evaluated = stages.evaluate(params, benchmark)
    metrics = fileio.read_json(paths.metrics_file(benchmark))
    assert evaluated["metric"] == "accuracy" and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert evaluated["n_test"] == len(data.y_test)
    promoted = stages.promote(params, benchmark)
    assert promoted["promote"] and str(promoted["version"]) == "1"
    assert stages.report(params).is_file() and benchmark in paths.LEADERBOARD_MD.read_text()
    assert (tmp_path / "mlflow.db").is_file()

    (row,) = collect(params)
    assert (row["benchmark"], row["status"], row["test"]) == (benchmark, "run", metrics["test"]["accuracy"])
    assert row["reference"] == reference and row["reference_source"] == reference_for(dataset).source
    assert (row["registry_version"], row["aliases"], row["champion_version"]) == ("1", "challenger,champion", "1")
    assert row["data_source"] == "keras"  # mnist: Keras's file, though mlxtend's subset is a fallback of the spec
    if dataset == "mnist":
        assert [fs.label for fs in CATALOG["mnist"].filesets] == ["keras", "mlxtend"]
