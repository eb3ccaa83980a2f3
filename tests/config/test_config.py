"""params.yaml validation: the shipped file is valid, and every kind of mistake is named precisely."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.config import BenchmarkConfig, ConfigError, load_params, parse_params
from conftest import ROOT, run_cli


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
    (f"{B}.rounds.coarse.n_trials", "many", ["rounds.coarse.n_trials", "many", "integer"]),
    (f"{B}.rounds.coarse.n_trials", 0, ["rounds.coarse.n_trials", "greater than 0"]),
    (f"{B}.rounds.coarse.pruner", "medain", ["rounds.coarse.pruner", "medain", "median"]),
    (f"{B}.rounds.coarse.epocs", 3, ["rounds.coarse.epocs", "unknown key"]),
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


def test_rounds_by_name_name_the_same_studies_as_the_list_of_rounds(shipped_params, tmp_path, monkeypatch):
    """The shipped profiles give `rounds` as a mapping from name to settings (`dvc exp run -S
    benchmarks.b.rounds.coarse.n_trials=6`); the list of named rounds is read the same, to the study names."""
    from pipeline import data_identity, fileio, paths  # noqa: PLC0415
    from pipeline.search.rounds import study_name  # noqa: PLC0415

    assert all(isinstance(b["rounds"], dict) for b in shipped_params["benchmarks"].values())
    listed = copy.deepcopy(shipped_params)
    for bench in listed["benchmarks"].values():
        bench["rounds"] = [{"name": name, **rnd} for name, rnd in bench["rounds"].items()]
    by_name, by_list = parse_params(shipped_params), parse_params(listed)
    assert by_name.model_dump() == by_list.model_dump()
    monkeypatch.chdir(tmp_path)
    for ds in by_name.datasets:  # the processed data's identity, as `preprocess` records it
        fileio.write_json_atomic(paths.processed_manifest(ds), {"input_hashes": {
            "dataset_config": data_identity.dataset_fingerprint(by_name, ds), "raw_manifest": "0" * 64}})  # fmt: skip
    for key, bench in by_name.benchmarks.items():
        names = [study_name(by_name, key, k) for k in range(len(bench.rounds))]
        assert names == [study_name(by_list, key, k) for k in range(len(bench.rounds))]
        assert [n.split(".")[1] for n in names] == ["1-coarse", "2-fine"]


# The study names of the shipped params.yaml (with a zero raw-data hash): what a change of the schema must not
# change, or every existing study would start over and the committed results would not be reproduced.
SHIPPED_STUDIES = {
    "rt_polarity_keras_mlp": ["rt_polarity_keras_mlp.1-coarse.4caa718d", "rt_polarity_keras_mlp.2-fine.1baaf3f8"],
    "boston_housing_keras_mlp": ["boston_housing_keras_mlp.1-coarse.05fcf1e4",
                                 "boston_housing_keras_mlp.2-fine.ff96b0d1"],
    "digits_keras_mlp": ["digits_keras_mlp.1-coarse.a5fae185", "digits_keras_mlp.2-fine.dc06ec27"],
    "digits_numpy_mlp": ["digits_numpy_mlp.1-coarse.8290239f", "digits_numpy_mlp.2-fine.699c133f"],
    "digits_linear": ["digits_linear.1-coarse.c196cbc9", "digits_linear.2-fine.fda0d0e8"],
}  # fmt: skip


def test_shipped_study_names_are_pinned(tmp_path, monkeypatch):
    from pipeline import data_identity, fileio, paths  # noqa: PLC0415
    from pipeline.search.rounds import study_name  # noqa: PLC0415

    params = load_params(ROOT / "params.yaml")
    monkeypatch.chdir(tmp_path)
    for ds in params.datasets:
        fileio.write_json_atomic(paths.processed_manifest(ds), {"input_hashes": {
            "dataset_config": data_identity.dataset_fingerprint(params, ds), "raw_manifest": "0" * 64}})  # fmt: skip
    names = {key: [study_name(params, key, k) for k in range(len(b.rounds))] for key, b in params.benchmarks.items()}
    assert names == SHIPPED_STUDIES


@pytest.mark.parametrize("name", [None, "coarse"])
def test_a_round_by_name_may_repeat_its_name_but_not_another(shipped_params, name):
    data = copy.deepcopy(shipped_params)
    data["benchmarks"]["digits_linear"]["rounds"]["coarse"]["name"] = name or "fine"
    if name:
        assert [r.name for r in parse_params(data).benchmarks["digits_linear"].rounds] == ["coarse", "fine"]
        return
    with pytest.raises(ConfigError, match=r"digits_linear\.rounds\.coarse\.name: bad value 'fine'.*its key"):
        parse_params(data)


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


def test_custom_source_error_has_no_union_noise(shipped_params):
    data = copy.deepcopy(shipped_params)
    data["datasets"]["mine"] = {
        "source": {"path": "x.csv", "sha256": "abc", "format": "csv", "task": "regression", "target": "y"},
        "preprocess": {"kind": "standardize"},
    }
    with pytest.raises(ConfigError) as info:
        parse_params(data)
    assert str(info.value).count("\n") == 0, str(info.value)
    assert "'builtin'" not in str(info.value)


def test_duplicate_keys_name_line_and_path(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("  seed: 0\n", "  seed: 0\n  seed: 1\n", 1)
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"p\.yaml: search\.seed: duplicate key at line 13 \(first at line 12\)"):
        load_params(tmp_path / "p.yaml")


def test_every_family_declares_its_hyperparameters_once():
    """A family reads exactly the fields of its pydantic model, for every task, with defaults in domain."""
    from pipeline.models import FAMILIES, get_family
    from pipeline.models import hparams as hp
    from pipeline.tasks import TASKS

    assert FAMILIES is hp.FAMILIES
    assert BenchmarkConfig.model_fields["model"].annotation.__args__ == FAMILIES
    for family in FAMILIES:
        assert hp.MODELS[family].model_fields["model"].default == family, "the union's tag is the family"
        for task in TASKS:
            defaults = get_family(family).default_hparams(task)
            assert tuple(sorted(defaults)) == hp.reads(family), (family, task)
            assert hp.problems(family, defaults, task) == [], (family, task)
    for preset in hp.PRESETS.values():
        assert hp.problems("keras_cnn", preset) == [], preset


def test_resolution_checks_values_with_the_same_models():
    from pipeline.models.hparams import resolve_hparams

    with pytest.raises(ValueError, match=r"dropout.*\[0, 1\)"):
        resolve_hparams("keras_mlp", "binary", {"dropout": 1.5})
    with pytest.raises(ValueError, match="batch_size"):
        resolve_hparams("numpy_mlp", "binary", {"batch_size": 0})
    with pytest.raises(ValueError, match="linear does not read `dropout`"):
        resolve_hparams("linear", "binary", {"dropout": 0.5})
    assert resolve_hparams("linear", "binary", {"l2": None}) == {
        "regularizer": "l2",
        "l2": None,
        "l1": None,
        "max_iter": 1000,
    }


def test_validate_does_not_import_tensorflow(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "--params", str(ROOT / "params.yaml"), "validate"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    heavy = {m for m in imported if m.split(".")[0] in ("tensorflow", "keras", "scipy", "sklearn", "optuna", "mlflow")}
    assert not heavy, sorted(heavy)[:10]


def test_every_built_path_stays_under_the_project(tmp_path, monkeypatch):
    from pipeline import paths

    monkeypatch.chdir(tmp_path)
    assert paths.raw_dir("digits") == Path("data/raw/digits")
    assert paths.metrics_file("digits_linear") == Path("metrics/digits_linear.json")
    for build in (paths.raw_dir, paths.processed_dir, paths.study_dir, paths.journal_file, paths.search_result,
                  paths.model_dir, paths.metrics_file, paths.plots_dir, paths.promotion_file):  # fmt: skip
        for bad in ("../../../x", "/tmp/x", "a/b", "..", ""):
            with pytest.raises(ConfigError, match="letters, digits"):
                build(bad)
    with pytest.raises(ConfigError, match="leaves the project folder"):
        paths.inside_root(tmp_path.parent / "elsewhere")
    assert paths.inside_root(Path("data") / "raw" / "x") == Path("data/raw/x")


def test_environment_urls_are_checked(shipped_params, monkeypatch):
    params = parse_params(shipped_params)
    monkeypatch.setenv("TUNEBENCH_STORAGE", "foo://u:pw@bar")
    with pytest.raises(ConfigError, match=r"TUNEBENCH_STORAGE.*'foo://\*\*\*@bar'.*not a storage URL") as info:
        params.storage_url()
    assert "pw" not in str(info.value)
    monkeypatch.setenv("TUNEBENCH_STORAGE", "postgresql://u:pw@db/optuna")  # a password belongs here
    assert params.storage_url() == "postgresql://u:pw@db/optuna"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://bar")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        params.tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert params.tracking_uri() == "http://127.0.0.1:5000"


def test_every_stage_depends_on_the_code_that_shapes_its_outputs():
    """Each DVC stage lists the stage shell (CLI config, paths, atomic I/O, stages.py) and its core's code,
    and every code dependency exists, so changing that code reruns the stage."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    shell = {"pipeline/config", "pipeline/fileio.py", "pipeline/paths.py", "pipeline/stages.py"}
    core = {"fetch": {"pipeline/datasets"}, "preprocess": {"pipeline/datasets", "pipeline/features"},
            "search": {"pipeline/search", "pipeline/models", "pipeline/features", "pipeline/tracking"},
            "train_best": {"pipeline/models", "pipeline/features", "pipeline/serving.py", "pipeline/tracking"},
            "evaluate": {"pipeline/evaluation.py", "pipeline/models", "pipeline/features"},
            "promote": {"pipeline/registry.py", "pipeline/tracking"}, "report": {"pipeline/report.py"}}  # fmt: skip
    for name, stage in dvc["stages"].items():
        deps = set((stage.get("do") or stage)["deps"])
        expected = core[name] | (shell if name != "report" else shell - {"pipeline/config"})
        assert expected <= deps, f"stage {name} misses {sorted(expected - deps)}"
        for dep in deps:
            if dep.startswith("pipeline"):
                assert (ROOT / dep).exists(), f"stage {name}: {dep} does not exist"


def _project(root: Path, shipped: dict, **sections) -> Path:
    """A project folder `root` whose params.yaml is the shipped one with `sections` updated."""
    data = copy.deepcopy(shipped)
    for section, values in sections.items():
        data[section].update(values)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "params.yaml"


def test_storage_and_tracking_stay_in_the_project_unless_allowed(tmp_path, shipped_params, monkeypatch):
    """Outside the folder holding params.yaml once symbolic links are resolved: refused, naming the setting
    that allows it; inside (relative to that folder, wherever the command runs): accepted."""
    monkeypatch.delenv("TUNEBENCH_ALLOW_OUTSIDE", raising=False)
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    elsewhere.mkdir()
    proj.mkdir()
    (proj / "studies").symlink_to(elsewhere)
    (proj / "db").symlink_to(elsewhere)
    monkeypatch.chdir(tmp_path)  # relative paths are the project's, not the working folder's
    for section, key, value in (("search", "storage", "journal:studies/optuna.log"),
                                ("tracking", "uri", "sqlite:///db/mlflow.db"),
                                ("tracking", "uri", "db/mlruns")):  # fmt: skip
        path = _project(proj, shipped_params, **{section: {key: value}})
        with pytest.raises(ConfigError) as info:
            load_params(path)
        line = str(info.value)
        assert f"params.yaml: {section}.{key}: bad value {value!r}" in line, line
        assert f"symbolic link to {elsewhere.resolve()}" in line and "TUNEBENCH_ALLOW_OUTSIDE=1" in line, line
        monkeypatch.setenv("TUNEBENCH_ALLOW_OUTSIDE", "1")
        assert getattr(getattr(load_params(path), section), key) == value
        monkeypatch.delenv("TUNEBENCH_ALLOW_OUTSIDE")
    inside = (f"sqlite:///{proj.resolve()}/mlflow.db", "journal:studies/../optuna.log", "sqlite:///./mlflow.db")
    for value in inside:
        load_params(_project(proj, shipped_params, search={"storage": value}))
    load_params(_project(proj, shipped_params, tracking={"uri": f"file://{proj.resolve()}/mlruns"}))


def test_fetch_refuses_raw_data_linked_outside_the_project(tmp_path, shipped_params, monkeypatch, capsys):
    """`data/raw` (or `data/raw/<d>`) leading outside the project: fetch writes nothing there unless allowed."""
    from pipeline.__main__ import main

    monkeypatch.delenv("TUNEBENCH_ALLOW_OUTSIDE", raising=False)
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    _project(proj, shipped_params)
    elsewhere.mkdir()
    monkeypatch.chdir(proj)
    (proj / "data" / "raw").mkdir(parents=True)
    for link in (proj / "data" / "raw" / "digits", proj / "data" / "raw"):
        if link.is_dir() and not link.is_symlink():
            link.rmdir()
        link.symlink_to(elsewhere)
        assert main(["fetch", "--dataset", "digits"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: data/raw/digits leads through a symbolic link to ") and err.count("\n") == 1
        assert "TUNEBENCH_ALLOW_OUTSIDE=1" in err
        assert list(elsewhere.iterdir()) == [], "nothing written outside the project"
        link.unlink()
    (proj / "data" / "raw").symlink_to(elsewhere)
    monkeypatch.setenv("TUNEBENCH_ALLOW_OUTSIDE", "1")
    assert main(["fetch", "--dataset", "digits"]) == 0, capsys.readouterr().err
    assert (elsewhere / "digits" / "manifest.json").is_file()


def test_params_that_is_not_a_regular_file_is_refused_at_once(tmp_path):
    """A pipe, /dev/urandom and /dev/zero used to hang or run out of memory; each is one line, exit 2."""
    fifo = tmp_path / "params.fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/urandom", "/dev/zero"):
        proc = run_cli("--params", path, "validate", cwd=tmp_path, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [f"error: {path}: not a regular file (a device, pipe or socket); pass the "
                                            "params file with --params"]  # fmt: skip


def test_a_bad_value_is_shown_in_bounded_time(shipped_params):
    """An unknown hyperparameter holding 9**9 values (shared lists, as YAML aliases build them) is named at once:
    the message used to build the value's whole repr before shortening it."""
    bomb: list = ["lol"] * 9
    for _ in range(8):
        bomb = [bomb] * 9
    data = copy.deepcopy(shipped_params)
    data["benchmarks"]["digits_linear"]["hparams"] = {"lol": bomb}
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"digits_linear\.hparams\.lol: bad value \[\.\.\.\]: linear does not read"):
        parse_params(data)
    assert time.monotonic() - start < 5
