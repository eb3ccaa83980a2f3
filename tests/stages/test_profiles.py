"""Profiles: `profiles/default.yaml` is the shipped params.yaml; `profiles/full.yaml` validates and names
the full benchmark; `tunebench profile` switches params.yaml (and dvc.yaml's plots) both ways, refuses
to lose local edits, and a shrunken copy of the full profile's offline part runs (fetch and
preprocess of every offline dataset, one benchmark searched, evaluated and reported)."""

from __future__ import annotations

import os
import sys

import pytest
import yaml

from conftest import ROOT, copy_tracked_files, run_cli, sh
from pipeline import profiles, report, stages
from pipeline.config import load_params

OFFLINE = ("fashion_mnist", "fashion_mnist_pca", "boston_housing", "digits", "breast_cancer", "wine", "diabetes")


def test_default_profile_is_the_shipped_params_yaml():
    assert (ROOT / "profiles" / "default.yaml").read_bytes() == (ROOT / "params.yaml").read_bytes(), (
        "profiles/default.yaml differs from params.yaml: copy params.yaml over it (they are one profile)"
    )


def test_full_profile_validates_and_names_the_full_benchmark():
    params = load_params(ROOT / "profiles" / "full.yaml")
    models = {(params.catalog_name(b.dataset), b.model) for b in params.benchmarks.values()}
    assert {("fashion_mnist", "keras_cnn"), ("fashion_mnist", "keras_mlp"), ("fashion_mnist", "numpy_mlp"),
            ("rt_polarity", "keras_mlp"), ("boston_housing", "keras_mlp"), ("imdb", "keras_mlp"),
            ("reuters", "keras_mlp"), ("mnist", "keras_cnn"), ("cifar10", "numpy_mlp")} <= models  # fmt: skip
    for ds in ("digits", "breast_cancer", "wine", "diabetes"):
        assert {m for d, m in models if d == ds} == {"keras_mlp", "numpy_mlp", "linear"}, ds
    assert params.dataset("fashion_mnist_pca").preprocess.kind == "pca"
    assert params.dataset("boston_housing").preprocess.kfold == 4
    assert all(r.timeout for b in params.benchmarks.values() for r in b.rounds if b.model != "linear")
    ngrams = params.dataset("rt_polarity_ngrams")
    assert params.catalog_name("rt_polarity_ngrams") == "rt_polarity" and ngrams.preprocess.ngrams == [1, 2]
    spaces = {k: b.space for k, b in params.benchmarks.items()}
    assert spaces["rt_polarity_ngrams_keras_mlp"]["loss"].choices == ["binary_crossentropy", "hinge"]
    assert spaces["boston_housing_keras_mlp"]["loss"].choices == ["mse", "mae", "huber"]
    assert spaces["digits_linear"]["regularizer"].choices == ["l2", "l1", "l1_l2"]


@pytest.fixture
def copy(tmp_path):
    """The tracked project files in a fresh git repository."""
    copy_tracked_files(tmp_path)
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    sh(["git", "init", "-q"], tmp_path, env)
    sh(["git", "add", "-A"], tmp_path, env)
    sh(["git", "commit", "-qm", "init"], tmp_path, env)
    return tmp_path, env


@pytest.mark.dvc
def test_profile_switches_both_ways_and_keeps_local_edits(copy):
    dest, env = copy
    shipped, dvc_yaml = (dest / "params.yaml").read_bytes(), (dest / "dvc.yaml").read_bytes()
    assert run_cli("profile", cwd=dest).stdout.startswith("params.yaml: profile default")
    out = run_cli("profile", "full", cwd=dest)
    full = yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text())
    counts = f"{len(full['datasets'])} datasets, {len(full['benchmarks'])} benchmarks"
    assert out.returncode == 0 and f"profile full ({counts}; was default)" in out.stdout, out
    assert (dest / "params.yaml").read_bytes() == (dest / "profiles" / "full.yaml").read_bytes()
    sh([sys.executable, "-m", "pipeline.dvc_plots", "--check"], dest, env)
    stages_listed = sh(["dvc", "stage", "list"], dest, env).stdout
    assert "search@fashion_mnist_keras_cnn" in stages_listed and "evaluate@cifar10_numpy_mlp" in stages_listed
    assert "fashion_mnist_pca_keras_mlp: search history" in (dest / "dvc.yaml").read_text()

    with (dest / "params.yaml").open("a") as fh:
        fh.write("# my edit\n")
    refused = run_cli("profile", "default", cwd=dest)
    assert refused.returncode == 2 and refused.stderr.startswith("error: params.yaml: has local edits"), refused
    assert (dest / "params.yaml").read_text().endswith("# my edit\n") and not (dest / "params.yaml.bak").exists()
    assert run_cli("profile", cwd=dest).stdout.startswith("params.yaml: local edits")
    forced = run_cli("profile", "default", "--force", cwd=dest)
    assert forced.returncode == 0 and "edits kept in params.yaml.bak" in forced.stdout, forced
    assert (dest / "params.yaml.bak").read_text().endswith("# my edit\n")
    assert (dest / "params.yaml").read_bytes() == shipped and (dest / "dvc.yaml").read_bytes() == dvc_yaml
    bad = run_cli("profile", "huge", cwd=dest)
    assert bad.returncode == 2 and "profiles/huge.yaml: no such profile; profiles here: default, full" in bad.stderr


def test_invalid_profile_is_refused_before_anything_is_written(copy):
    dest, _ = copy
    text = (dest / "profiles" / "full.yaml").read_text().replace("pruner: median", "pruner: medium", 1)
    (dest / "profiles" / "broken.yaml").write_text(text)
    before = (dest / "params.yaml").read_bytes()
    out = run_cli("profile", "broken", cwd=dest)
    assert out.returncode == 2 and "error: profiles/broken.yaml: benchmarks." in out.stderr and "medium" in out.stderr
    assert (dest / "params.yaml").read_bytes() == before


@pytest.mark.slow  # every offline dataset of the full profile, and a search: over 10 s
def test_shrunken_full_profile_runs_its_offline_part(tmp_path, monkeypatch):
    """Every offline dataset of the full profile is fetched and preprocessed (300 rows); the
    from-scratch network on Fashion-MNIST's PCA features is searched (2 x 2 trials), retrained,
    evaluated and reported next to Zalando's MLP figure; imdb is reported as not run here."""
    data = yaml.safe_load((ROOT / "profiles" / "full.yaml").read_text())
    for name in OFFLINE:
        data["datasets"][name]["preprocess"]["max_rows"] = 300
    data["datasets"]["fashion_mnist_pca"]["preprocess"]["n_components"] = 20
    keep = ("fashion_mnist_pca_numpy_mlp", "imdb_keras_mlp")
    data["benchmarks"] = {k: v for k, v in data["benchmarks"].items() if k in keep}
    data["datasets"] = {k: v for k, v in data["datasets"].items() if k in (*OFFLINE, "imdb")}
    data["search"]["workers"] = 1
    for rnd in data["benchmarks"]["fashion_mnist_pca_numpy_mlp"]["rounds"].values():
        rnd.update(n_trials=2, epochs=2)
    for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    params = load_params("params.yaml")
    for name in OFFLINE:
        stages.fetch(params, name)
        stages.preprocess(params, name)
    key = "fashion_mnist_pca_numpy_mlp"
    stages.search(params, key)
    stages.train_best(params, key)
    stages.evaluate(params, key)
    rows = {r["benchmark"]: r for r in report.collect(params)}
    assert rows[key]["status"] == "run" and rows[key]["reference"] == 0.90 and rows[key]["trials"] == 4
    assert 0 <= rows[key]["test"] <= 1 and rows[key]["vs_reference"] == rows[key]["test"] - 0.90  # tiny: no quality
    assert rows["imdb_keras_mlp"]["status"] == "not run here"
    assert profiles.current("params.yaml") is None  # a shrunken copy is no profile
