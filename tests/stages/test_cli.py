"""The CLI's error discipline: one `error:` line, exit 2 for usage and configuration, 1 at run time."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from pipeline.__main__ import _error_line, _format_error, build_parser, main, table
from pipeline.errors import ConfigError, MissingInputError, TunebenchError


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_error_text_layout():
    two = _format_error("a.yaml: x: bad\na.yaml: y: bad", config=True)
    assert two == "error: a.yaml: x: bad\nerror: a.yaml: y: bad"
    assert _format_error("not found\n looked in /a\n", config=False) == "error: not found\n  looked in /a"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["search", "--n-trials", "-1"], "--n-trials: '-1' must be a finite number above 0"),
        (["search", "--n-trials", "0"], "--n-trials: '0' must be"),
        (["search", "--n-trials", "many"], "'many' is not a number"),
        (["search", "--workers", "0"], "--workers: '0' must be"),
        (["search", "--timeout", "nan"], "--timeout: 'nan' must be"),
        (["search", "--round", "-2"], "--round: '-2' must be"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["fetch", "--nope"], "unrecognized arguments: --nope"),
    ],
)
def test_usage_mistakes_exit_2_with_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert words in line


def test_params_option_is_accepted_after_the_subcommand(tmp_path: Path, capsys):
    other = tmp_path / "other.yaml"
    shutil.copy(ROOT / "params.yaml", other)
    assert main(["validate", "--params", str(other)]) == 0
    assert f"{other}: valid" in capsys.readouterr().out
    assert main(["--params", str(other), "validate"]) == 0


def test_missing_params_file_is_a_config_error(tmp_path: Path, capsys):
    assert main(["validate", "--params", str(tmp_path / "nope.yaml")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "nope.yaml: not found" in line


def test_traceback_only_with_debug(tmp_path: Path):
    missing = str(tmp_path / "nope.yaml")
    plain = run_cli("validate", "--params", missing, cwd=tmp_path, timeout=120)
    assert plain.returncode == 2
    _one_error_line(plain.stderr)
    for args, env in ((("--debug",), {}), ((), {"TUNEBENCH_DEBUG": "1"})):
        loud = run_cli("validate", "--params", missing, *args, cwd=tmp_path, env=env, timeout=120)
        assert loud.returncode == 2
        assert "Traceback" in loud.stderr and "error: " in loud.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "err, code, words",
    [
        (ConfigError("params.yaml: search.seed: bad value"), 2, "params.yaml: search.seed"),
        (MissingInputError("data/processed/x/manifest.json: missing"), 1, "manifest.json: missing"),
        (TunebenchError("first line\nsecond line"), 1, "first line"),
        (PermissionError(13, "Permission denied", "models/x"), 1, "permission denied models/x"),
        (OSError(30, "Read-only file system", "metrics/x.json"), 1, "read-only file system at metrics/x.json"),
        (OSError(28, "No space left on device"), 1, "no space left on device"),
        (KeyError("boom"), 1, "unexpected KeyError"),
        (
            ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow"),
            1,
            'tensorflow is not installed: pip install -e ".[cpu]"',
        ),
    ],
)
def test_every_failure_maps_to_one_line(err, code, words):
    line, exit_code = _error_line(err)
    assert exit_code == code
    assert words in line


def test_studies_with_a_bad_storage_prints_only_the_error(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["studies", "--params", str(ROOT / "params.yaml"), "--storage", "foo://bar"])
    out, err = capsys.readouterr()
    assert code in (1, 2) and out == ""
    assert "foo://bar" in _one_error_line(err)


def test_fetch_list_resolves_catalog_entries_of_the_full_profile(tmp_path: Path, monkeypatch, capsys):
    """`fetch --list` on the full profile: a `catalog:` entry shows where its catalog dataset comes from
    (not "custom"), and long names keep the columns aligned."""
    monkeypatch.chdir(tmp_path)
    assert main(["fetch", "--list", "--params", str(ROOT / "profiles" / "full.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    column = lines[0].index("availability")
    assert all(line[column - 1] == " " and line[column] != " " for line in lines[1:]), lines
    assert rows["rt_polarity_ngrams"].endswith("(catalog rt_polarity)")
    assert rows["fashion_mnist_pca"].endswith("(catalog fashion_mnist)") and "custom" not in "".join(lines)
    assert "packaged (scikit-learn" in rows["digits"]


def test_help_lists_every_command_with_a_description_and_an_example(capsys):
    """The top-level help lists every sub-command with its line; each command's help has an example."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for name, sub in commands.items():
        assert re.search(rf"^\s+{name}\s+\S", top, re.M), (name, top)
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert sub.description and f"example: tunebench {name}" in text, (name, text)
    assert "`summary`,\n" not in top and top.count("\n\n") >= 2


def test_table_rounds_numbers_and_aligns_columns():
    text = table(["model", "version", "test_accuracy"], [["digits_linear", 2, "0.9527777777777777"], ["b", 10, None]])
    lines = text.splitlines()
    assert lines == [
        "model          version  test_accuracy",
        "digits_linear        2         0.9528",
        "b                   10              -",
    ]


def test_models_and_studies_print_rounded_tables(tmp_path: Path, monkeypatch, capsys):
    """`tunebench models` over a real registry and `tunebench studies` over a real journal: 4 decimals, aligned."""
    import mlflow
    import optuna

    from pipeline import paths
    from pipeline.search.storage import open_storage

    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri()))
    client.create_registered_model("digits-linear")
    client.create_model_version(
        "digits-linear", (tmp_path / "art").as_uri(), run.info.run_id, tags={"test_accuracy": "0.9527777777777777"}
    )
    assert main(["models", "--params", str(params)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["model", "version", "aliases", "test_accuracy"]
    assert out[1].split() == ["digits-linear", "1", "-", "0.9528"]
    assert len(out[0]) == len(out[1])  # aligned: the number ends under its header

    paths.journal_file("digits_linear").parent.mkdir(parents=True)
    study = optuna.create_study(
        study_name="digits_linear.1-coarse.abc", storage=open_storage(None, "digits_linear"), direction="maximize"
    )
    study.optimize(lambda t: 0.123456789 + t.suggest_float("x", 0, 0), n_trials=2)
    assert main(["studies", "--params", str(params), "--benchmark", "digits_linear"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["study", "complete", "pruned", "fail", "running", "best"]
    assert out[1].split() == ["digits_linear.1-coarse.abc", "2", "0", "0", "0", "0.1235"]
