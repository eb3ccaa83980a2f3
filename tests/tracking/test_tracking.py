"""MLflow tracking of the search on a real SQLite store: run tree, per-epoch metrics, states, artifacts, redaction.

One real search (scikit-learn's digits through PCA, the Keras MLP, 2 rounds x 2 trials, 2-3
epochs) is run once for the module and inspected by several tests; pruned and failed trials go
through the real objective (`run_trial`) with a real Optuna study and a stand-in model family
whose epochs are instant, so their states are certain and cheap.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from conftest import digits_search_params
import yaml
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient
from PIL import Image

from pipeline import stages, tracking
from pipeline.tracking import trial_run
from pipeline.config import load_params, parse_params
from pipeline.models import TrainedModel, get_family
from pipeline.paths import journal_file
from pipeline.search.objective import TrialContext, run_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
SECRET = "hunter2"
KEY = "digits_keras_mlp"
ROUNDS = [
    {"name": "coarse", "n_trials": 2, "epochs": 2, "pruner": "none"},
    {"name": "fine", "n_trials": 2, "epochs": 3, "pruner": "none", "top_quantile": 0.5},
]
PARAMS = digits_search_params(
    seed=0,
    hparams={"units": 16, "depth": 1, "optimizer": "adam", "batch_size": 64},
    lr=(1.0e-3, 1.0e-2),
    rounds=ROUNDS,
)


def _clean_env(monkeypatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "TUNEBENCH_STORAGE", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A project folder after one real two-round search; returns `(folder, result, client)`."""
    root = tmp_path_factory.mktemp("tracked-search")
    mp = pytest.MonkeyPatch()
    try:
        _clean_env(mp)
        mp.chdir(root)
        (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
        params = load_params(root / "params.yaml")
        stages.fetch(params, "digits")
        stages.preprocess(params, "digits")
        result = stages.search(params, KEY)
    finally:
        mp.undo()
    return root, result, MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def _runs(mlc: MlflowClient) -> list:
    exps = [e.experiment_id for e in mlc.search_experiments()]
    return mlc.search_runs(exps, max_results=1000)


def _steps(mlc: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in mlc.get_metric_history(run_id, key))


# --- the run tree of a real search ------------------------------------------------------------------


def test_one_parent_per_round_and_one_child_per_trial_with_a_point_per_epoch(searched):
    root, result, mlc = searched
    exp = mlc.get_experiment_by_name("digits-keras_mlp")
    assert exp is not None and exp.artifact_location == "mlartifacts/digits-keras_mlp"
    assert mlc.get_experiment("0").artifact_location == "mlruns/0"  # MLflow's own `Default` too
    runs = _runs(mlc)
    parents = [r for r in runs if r.data.tags.get("kind") == "study_round"]
    assert len(parents) == len(ROUNDS)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == sum(r["n_trials"] for r in ROUNDS)
    for k, (rnd, cfg) in enumerate(zip(result["rounds"], ROUNDS), start=1):
        parent = mlc.get_run(rnd["parent_run_id"])
        assert parent.info.run_name == f"{cfg['name']} · r{k}" and parent.info.status == "FINISHED"
        assert parent.data.tags["study_name"] == rnd["study"] and rnd["study"].endswith(parent.data.tags["study_hash"])
        assert {"n_running", "n_waiting", "budget"} <= set(parent.data.tags)  # bookkeeping: tags, not metrics
        assert not {"n_running", "n_waiting", "budget", "budget_used"} & set(parent.data.metrics)
        assert float(parent.data.params["range.lr"].split("'low': ")[1].split(",")[0]) > 0
        assert parent.data.metrics["n_complete"] == cfg["n_trials"]
        mine = sorted((c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id),
                      key=lambda r: int(r.data.tags["trial_number"]))  # fmt: skip
        trials = optuna.load_study(study_name=rnd["study"], storage=_journal(root)).trials
        assert len(mine) == len(trials) == cfg["n_trials"]
        for child, trial in zip(mine, trials):
            tags = child.data.tags
            assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
            lr = tracking_name_value(child.info.run_name, "lr")
            assert child.info.run_name.startswith(f"t{trial.number:02d} lr=")
            assert lr == pytest.approx(trial.params["lr"], rel=0.05)
            assert (tags["state"], child.info.status) == ("COMPLETE", "FINISHED")
            assert tags["study_name"] == rnd["study"] and tags["round"] == str(ROUNDS.index(cfg) + 1)
            assert tags["benchmark"] == KEY and len(tags["dataset_manifest_hash"]) == 64 and tags["git_commit"]
            assert float(child.data.params["lr"]) == pytest.approx(trial.params["lr"])
            assert child.data.params["epochs"] == str(cfg["epochs"])
            for key in ("loss", "val_loss", "accuracy", "val_accuracy"):  # epochs numbered from 1
                assert _steps(mlc, child.info.run_id, key) == list(range(1, cfg["epochs"] + 1)), key
            assert 1 <= int(tags["best_epoch"]) <= cfg["epochs"] and child.data.metrics["pruned"] == 0
            assert tags["mlflow.source.name"] == "tunebench search"
            assert tags["mlflow.note.content"].startswith("complete: best_val_accuracy")
            (ds,) = child.inputs.dataset_inputs
            assert (ds.dataset.name, ds.dataset.digest) == ("digits", tags["dataset_manifest_hash"][:16])
            assert {t.key: t.value for t in ds.tags}["mlflow.data.context"] == "train/validation"
            assert child.data.metrics["best_val_accuracy"] == pytest.approx(trial.value)


def tracking_name_value(name: str, key: str) -> float:
    """The value of `key=` in a trial run's name (`t01 lr=3.2e-3 l2=1e-5`)."""
    return float(next(p for p in name.split() if p.startswith(f"{key}=")).split("=", 1)[1])


def _journal(root: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(root / journal_file(KEY))))


def test_parent_artifacts_open_trials_csv_ranges_and_plots(searched, tmp_path, monkeypatch):
    root, result, mlc = searched
    monkeypatch.chdir(root)  # artifact locations are relative to the project folder
    for rnd in result["rounds"]:
        dst = Path(mlc.download_artifacts(rnd["parent_run_id"], "", str(tmp_path / rnd["study"])))
        table = pd.read_csv(dst / "trials.csv")
        assert len(table) == 2 and set(table["state"]) == {"COMPLETE"}
        assert json.loads((dst / "ranges.json").read_text())["ranges"].keys() == {"lr", "l2"}
        pngs = sorted(dst.glob("*.png"))
        assert pngs, sorted(p.name for p in dst.iterdir())
        for png in pngs:
            with Image.open(png) as img:
                img.verify()


def test_completed_trial_logs_curves_and_a_model_that_reloads_three_ways(searched, tmp_path, monkeypatch):
    root, result, mlc = searched
    monkeypatch.chdir(root)  # artifact locations are relative to the project folder
    best = result["rounds"][-1]["best"]
    run_id = best["run_id"]
    run = mlc.get_run(run_id)
    assert run.data.tags["model_format"] == "keras"
    model_id = run.data.tags["model_id"]
    assert [o.model_id for o in run.outputs.model_outputs] == [model_id]  # the runs table's Models column
    logged = mlc.get_logged_model(model_id)  # an MLflow 3 logged model, READY, with the trial's metrics
    expected = (LoggedModelStatus.READY, run_id, f"fine-r2-t{best['trial']:02d}")
    assert (logged.status, logged.source_run_id, logged.name) == expected
    assert logged.artifact_location == f"mlartifacts/digits-keras_mlp/models/{model_id}/artifacts"
    assert {m.key for m in logged.metrics} >= {"best_val_accuracy", "best_epoch", "pruned"}
    listed = mlc.search_logged_models([run.info.experiment_id])  # the experiment's Models tab
    beat = 0  # `tracking.log_models: true`: the models of the trials that beat their round's best so far
    for rnd in result["rounds"]:
        top = None
        for t in optuna.load_study(study_name=rnd["study"], storage=_journal(root)).trials:  # one worker: in order
            if t.value is not None and (top is None or t.value > top):
                beat, top = beat + 1, t.value
    assert len(listed) == beat and model_id in {m.model_id for m in listed}
    names = {a.path for a in mlc.list_artifacts(run_id)}
    assert "learning_curves.png" in names
    dst = Path(mlc.download_artifacts(run_id, "", str(tmp_path)))
    mlflow.set_tracking_uri(mlc.tracking_uri)
    mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(dst / "model"))
    with Image.open(dst / "learning_curves.png") as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.getextrema() != ((255, 255),) * 3

    from pipeline.features import ProcessedData  # noqa: PLC0415

    x = ProcessedData.load(root / "data" / "processed" / "digits").X_val[:5]
    ours = TrainedModel.load(dst / "model")
    expected = ours.predict(x)
    assert expected.shape == (5, 10) and ours.hparams["lr"] == pytest.approx(best["params"]["lr"])

    uri = f"models:/{model_id}"
    info = mlflow.models.get_model_info(uri)
    assert info.model_id == model_id and info.run_id == run_id
    assert set(info.flavors) == {"keras", "python_function"}
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 16]
    assert info.saved_input_example_info is not None
    example = mlflow.models.Model.load(str(dst / "model")).load_input_example(str(dst / "model"))
    assert np.asarray(example).shape == (1, 16)
    np.testing.assert_allclose(mlflow.keras.load_model(uri).predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mlflow.pyfunc.load_model(uri).predict(x), expected, rtol=1e-5, atol=1e-6)


def test_sqlite_store_keeps_its_journal_and_stays_a_complete_file(searched, tmp_path):
    root, _, mlc = searched
    shutil.copy2(root / "mlflow.db", tmp_path / "copy.db")  # no -wal file to forget: the copy is whole
    copy = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'copy.db'}")
    assert len(_runs(copy)) == len(_runs(mlc))


# --- pruned, failed and unlucky trials through the real objective --------------------------------------


class _History:
    """A trained model as far as `run_trial` and `TrainedModel.save` need one."""

    family = "stand_in"

    def __init__(self, history: dict):
        self.history = history

    def save(self, dest: Path) -> None:
        raise OSError("disk full while saving the model")


class _InstantFamily:
    """A model family whose epochs are instant: accuracy climbs, the loss falls; or it raises `error`."""

    name = "numpy_mlp"  # whose defaults `resolve_hparams` starts from

    def __init__(self, error: Exception | None = None):
        self.error = error

    def default_hparams(self, task: str) -> dict:
        return {"lr": 1e-3}

    def train(self, hparams, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed=0, on_epoch=None):
        if self.error is not None:
            raise self.error
        history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
        for epoch in range(epochs):
            logs = {"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + 0.1 * epoch,
                    "val_loss": 1.2 / (epoch + 1), "val_accuracy": 0.45 + 0.1 * epoch}  # fmt: skip
            for k, v in logs.items():
                history[k].append(v)
            if on_epoch is not None:
                on_epoch(epoch, logs)
        return _History(history)


class _PruneFromStep(optuna.pruners.BasePruner):
    def __init__(self, step: int):
        self.step = step

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.step


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite store in `tmp_path` (the working directory) with an experiment and a parent run."""
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    mlc = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = tracking.ensure_experiment(mlc, "tiny/stand_in")
    parent = tracking.start_run(mlc, exp, "tiny.1-coarse", tags={"kind": "study_round"})
    return SimpleNamespace(mlc=mlc, exp=exp, parent=parent, root=tmp_path)


def _ctx(store, family, epochs: int) -> TrialContext:
    rng = np.random.default_rng(0)
    data = SimpleNamespace(task="multiclass", n_classes=3, folds=None, X_train=rng.random((12, 4), np.float32),
                           y_train=rng.integers(0, 3, 12), X_val=rng.random((6, 4), np.float32),
                           y_val=rng.integers(0, 3, 6))  # fmt: skip
    return TrialContext(
        family=family, data=data, space=dict(parse_params(PARAMS).benchmark(KEY).space), fixed={}, epochs=epochs,
        seed=0, mlc=store.mlc, experiment_id=store.exp, parent_run_id=store.parent, tags={"round": 1},
    )  # fmt: skip


def test_pruned_trial_run_stops_at_the_pruned_epoch_and_is_killed(store):
    study = optuna.create_study(direction="maximize", pruner=_PruneFromStep(1))
    ctx = _ctx(store, _InstantFamily(), epochs=5)
    study.optimize(lambda t: run_trial(t, ctx), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    run = store.mlc.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["state"] == "PRUNED"
    assert run.data.tags["pruned_at_epoch"] == "2" and "pruned at epoch 2" in run.data.tags["reason"]
    for key in ("loss", "val_accuracy"):
        assert _steps(store.mlc, run.info.run_id, key) == [1, 2]  # epochs numbered from 1, like the tag
    assert run.info.run_name.startswith("t00 pruned lr=") and run.data.metrics["pruned"] == 1
    assert run.data.tags["mlflow.note.content"].startswith("pruned: pruned at epoch 2 of 5")
    assert not run.outputs.model_outputs
    assert run.data.tags["mlflow.parentRunId"] == store.parent
    assert "error" not in run.data.tags


def test_failed_trial_run_is_failed_with_its_error_and_no_credentials(store, tmp_path):
    boom = ConnectionError(f"could not reach postgresql://bob:{SECRET}@db.example.com:5432/mlflow?password={SECRET}")
    study = optuna.create_study(direction="maximize")
    ctx = _ctx(store, _InstantFamily(error=boom), epochs=3)
    study.optimize(lambda t: run_trial(t, ctx), n_trials=1, catch=(Exception,))
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    run = store.mlc.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["state"] == "FAIL"
    assert run.info.run_name.startswith("t00 FAILED lr=") and "pruned" not in run.data.metrics
    assert run.data.tags["mlflow.note.content"].startswith("failed: ConnectionError")
    error = run.data.tags["error"]
    assert error.startswith("ConnectionError: could not reach postgresql://***@db.example.com:5432/mlflow")
    assert run.data.tags["reason"] == error
    dst = Path(store.mlc.download_artifacts(run.info.run_id, "error.txt", str(tmp_path / "dl")))
    text = dst.read_text()
    assert "Traceback (most recent call last)" in text and "ConnectionError" in text
    assert SECRET not in text + json.dumps(run.data.tags) + json.dumps(run.data.params)


def test_a_model_that_cannot_be_saved_leaves_the_trial_finished_with_a_tracking_error(store):
    study = optuna.create_study(direction="maximize")
    ctx = _ctx(store, _InstantFamily(), epochs=2)
    with pytest.warns(UserWarning, match="artifacts not logged: disk full"):
        study.optimize(lambda t: run_trial(t, ctx), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    run = store.mlc.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED" and "disk full" in run.data.tags["tracking_error"]
    names = {a.path for a in store.mlc.list_artifacts(run.info.run_id)}
    assert "model" not in names and "learning_curves.png" in names
    (model,) = store.mlc.search_logged_models([store.exp])  # listed, but marked FAILED: no half-written model
    assert model.status == LoggedModelStatus.FAILED and model.model_id == run.data.tags["model_id"]
    folder = store.root / model.artifact_location
    assert not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize("in_place", [True, False], ids=["local-store-in-place", "uploaded-from-temp"])
def test_numpy_model_is_logged_as_a_folder_that_trained_model_loads(store, tmp_path, monkeypatch, in_place):
    if not in_place:  # what a remote artifact store gets: a temporary folder uploaded in one call
        monkeypatch.setattr(trial_run, "local_artifact_dir", lambda uri: None)
    rng = np.random.default_rng(1)
    x, y = rng.random((40, 6), np.float32), rng.integers(0, 3, 40)
    model = get_family("numpy_mlp").train({"units": [8], "batch_size": 16}, x, y, x[:10], y[:10], task="multiclass",
                                          n_classes=3, epochs=2)  # fmt: skip
    trial = optuna.create_study().ask()
    run = tracking.TrialRun(store.mlc, store.exp, store.parent, trial, {"round": 1})
    for epoch in range(2):
        run.log_epoch(epoch, {k: v[epoch] for k, v in model.history.items()})
    run.finish("COMPLETE", history=model.history, final={"best_val_accuracy": 0.5}, model=model, input_example=x)
    got = store.mlc.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.tags["model_format"] == "tunebench"
    assert _steps(store.mlc, run.run_id, "val_loss") == [0, 1]
    mlflow.set_tracking_uri(store.mlc.tracking_uri)
    dst = Path(mlflow.artifacts.download_artifacts(f"models:/{run.model_id}", dst_path=str(tmp_path / "dl")))
    assert store.mlc.get_logged_model(run.model_id).source_run_id == run.run_id
    np.testing.assert_allclose(TrainedModel.load(dst).predict(x), model.predict(x), rtol=1e-6)
    assert set(run.timings) >= {"start", "epochs", "curves", "model", "log", "finish"}


def test_epoch_metrics_reach_the_store_every_flush_period_and_all_at_the_end(store):
    trial = optuna.create_study().ask()
    run = tracking.TrialRun(store.mlc, store.exp, store.parent, trial, {}, flush_seconds=0.0)  # live: at once
    run.log_epoch(0, {"loss": 1.0, "val_loss": float("nan")})  # NaN is skipped, not logged
    assert _steps(store.mlc, run.run_id, "loss") == [0] and _steps(store.mlc, run.run_id, "val_loss") == []
    run.flush_seconds = 3600.0  # buffered: all at the end
    for epoch in range(1, 1901):  # more than one `log_batch` can take
        run.log_epoch(epoch, {"loss": 1.0 / (epoch + 1)})
    assert _steps(store.mlc, run.run_id, "loss") == [0]
    run.finish("COMPLETE", final={"best_loss": 0.1})
    assert _steps(store.mlc, run.run_id, "loss") == list(range(1901))
    assert store.mlc.get_run(run.run_id).data.metrics["best_loss"] == 0.1


# --- helpers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("postgresql://bob:hunter2@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("postgresql://bob:hun@ter2@db/mlflow", "postgresql://***@db/mlflow"),  # unescaped @ in the password
        ("http://bob:hun/ter2@host:5000/x", "http://***@host:5000/x"),  # unescaped / in the password
        ("https://hunter2@example.com/api", "https://***@example.com/api"),  # a token as the user
        ("error: postgresql://u:hunter2@h/db timed out", "error: postgresql://***@h/db timed out"),
        ("postgresql://h/db?user=bob&password=hunter2&sslmode=require",
         "postgresql://h/db?user=bob&password=***&sslmode=require"),
        ("host=db password=hunter2 dbname=mlflow", "host=db password=*** dbname=mlflow"),
        ("s3://b/k?X-Amz-Signature=hunter2&x=1", "s3://b/k?X-Amz-Signature=***&x=1"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("http://127.0.0.1:5000/#/experiments/1", "http://127.0.0.1:5000/#/experiments/1"),
        ("design=2 sig_figs=3", "design=2 sig_figs=3"),
        ("postgresql://u@h/db?sslmode=require&sslpassword=hunter2", "postgresql://***@h/db?sslmode=require&sslpassword=***"),
        ("http://h/#token=hunter2", "http://h/#token=***"),  # a fragment
        ("postgresql://h/db?pass%77ord=hunter2&key=hunter2", "postgresql://h/db?pass%77ord=***&key=***"),
    ],
)  # fmt: skip
def test_redact(text, expected):
    assert tracking.redact(text) == expected


def test_client_moves_server_credentials_out_of_the_uri(monkeypatch, capsys):
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
        monkeypatch.setenv(var, "placeholder")  # recorded, so restored after the test whatever `client` sets
        monkeypatch.delenv(var)
    assert tracking.split_credentials("https://bob:p%40ss@h:1/x") == ("https://h:1/x", "bob", "p@ss")
    assert tracking.split_credentials("sqlite:///a.db") == ("sqlite:///a.db", None, None)
    previous = mlflow.get_tracking_uri()
    try:
        mlc = tracking.client(f"http://bob:{SECRET}@127.0.0.1:9")
        assert mlflow.get_tracking_uri() == "http://127.0.0.1:9"
    finally:
        mlflow.set_tracking_uri(previous)
    assert mlc.tracking_uri == "http://127.0.0.1:9"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "bob" and os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    assert SECRET not in capsys.readouterr().out


def test_relative_sqlite_uris_follow_the_working_directory(tmp_path, monkeypatch):
    _clean_env(monkeypatch)
    names = []
    for project in ("a", "b"):
        (tmp_path / project).mkdir()
        monkeypatch.chdir(tmp_path / project)
        mlc = tracking.client("sqlite:///mlflow.db")
        assert mlc.tracking_uri == f"sqlite:///{tmp_path / project / 'mlflow.db'}"
        tracking.ensure_experiment(mlc, f"project/{project}")
        names.append({e.name for e in mlc.search_experiments()})
    assert names == [{"Default", "project/a"}, {"Default", "project/b"}]  # one database per folder
    assert tracking.absolute_sqlite_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert tracking.absolute_sqlite_uri("sqlite:///m.db?mode=ro") == f"sqlite:///{tmp_path / 'b' / 'm.db'}?mode=ro"
    assert tracking.absolute_sqlite_uri("postgresql://h/db") == "postgresql://h/db"


def test_ui_command_passes_the_store_uri_in_the_environment_only():
    uri = f"postgresql://bob:{SECRET}@db/mlflow"
    argv, env = tracking.ui_command(uri, "127.0.0.1", 5099)
    assert SECRET not in " ".join(argv) and argv[1:4] == ["-m", "mlflow", "ui"] and "5099" in argv
    assert env["MLFLOW_BACKEND_STORE_URI"] == uri
    argv, _ = tracking.ui_command("sqlite:///mlflow.db")
    assert argv[argv.index("--default-artifact-root") + 1].endswith("/mlartifacts")


def test_params_tags_and_uploaded_text_files_are_redacted(store, tmp_path):
    uri = f"postgresql://bob:{SECRET}@db/optuna"
    run_id = tracking.start_run(store.mlc, store.exp, "r", tags={"storage": uri})
    tracking.log_params(store.mlc, run_id, {"storage": uri, "lr": 0.1})
    tracking.set_tags(store.mlc, run_id, {"note": f"resumed from {uri}"})
    table = tmp_path / "trials.csv"
    table.write_text(f"number,user_attrs_fail_reason\n0,OperationalError: {uri} refused\n")
    before = table.read_text()
    tracking.log_figure_files(store.mlc, run_id, [table])
    assert table.read_text() == before  # the caller's file (maybe a DVC output) is left alone
    run = store.mlc.get_run(run_id)
    assert run.data.params["storage"] == run.data.tags["storage"] == "postgresql://***@db/optuna"
    assert run.data.tags["note"] == "resumed from postgresql://***@db/optuna"
    got = Path(store.mlc.download_artifacts(run_id, "trials.csv", str(tmp_path / "dl"))).read_text()
    assert SECRET not in got and "postgresql://***@db/optuna refused" in got


def test_ensure_experiment_is_idempotent_and_survives_a_lost_race(store, monkeypatch):
    first = tracking.ensure_experiment(store.mlc, "race/x")
    assert tracking.ensure_experiment(store.mlc, "race/x") == first
    real = store.mlc.get_experiment_by_name
    calls = iter([None])  # the first look-up misses: another worker creates it before us
    monkeypatch.setattr(store.mlc, "get_experiment_by_name", lambda name: next(calls, real(name)))
    assert tracking.ensure_experiment(store.mlc, "race/x") == first


def test_smooth_curve_is_a_centred_moving_average_that_follows_the_raw_curve():
    points = [1.0, 0.0, 0.0, 10.0, 4.0]
    assert tracking.smooth_curve(points, window=3) == pytest.approx([0.5, 1 / 3, 10 / 3, 14 / 3, 7.0])
    assert tracking.smooth_curve([1.0, float("nan"), 3.0], window=3) == pytest.approx([1.0, 2.0, 3.0])
    assert tracking.smooth_curve([]) == []
    rising = [1 - 0.9**e for e in range(1, 31)]  # an accuracy curve: the old EMA 0.9 lagged far below it
    smooth = tracking.smooth_curve(rising)
    assert all(min(rising) <= v <= max(rising) for v in smooth)
    assert max(abs(s - r) for s, r in zip(smooth[3:], rising[3:])) < 0.02, "after a warm-up it stays on the curve"


@pytest.mark.parametrize(
    "history",
    [
        {"loss": [0.7], "accuracy": [0.5], "val_loss": [0.69], "val_accuracy": [0.52]},
        {"loss": list(np.linspace(3, 1, 40)), "mae": list(np.linspace(2, 0.5, 40)),
         "val_loss": list(np.linspace(3.2, 1.3, 40)), "val_mae": list(np.linspace(2.1, 0.7, 40))},
        {"loss": [0.7, float("nan"), 0.5], "accuracy": [0.5, 0.5, 0.5]},
    ],
    ids=["one-epoch", "forty-epochs", "nan-and-flat"],
)  # fmt: skip
def test_learning_curves_png_has_a_panel_per_metric(tmp_path, history):
    path = tracking.plot_learning_curves(history, tmp_path / "c.png", "trial 7")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (800, 290)
        assert len(img.convert("RGB").getcolors(1 << 16)) > 50  # lines, text and anti-aliasing, not a blank


def test_a_running_twin_of_a_finished_trial_is_closed_and_nothing_else(store):
    """A live (warm) worker's twin run of a trial that ended, left by a tracking outage, is closed at round end;
    the round's other runs (a trial still running, another study's run, the ended trial's own run) are kept."""
    tags = {"study_name": "b.1-coarse.abc"}
    own = tracking.start_run(store.mlc, store.exp, "t03", tags={**tags, "trial_number": 3})
    store.mlc.set_terminated(own, "FINISHED")
    twin = tracking.start_run(store.mlc, store.exp, "t03", tags={**tags, "trial_number": 3})
    running = tracking.start_run(store.mlc, store.exp, "t04", tags={**tags, "trial_number": 4})
    other = tracking.start_run(store.mlc, store.exp, "t03", tags={"study_name": "b.2-fine.abc", "trial_number": 3})
    closed = tracking.close_runs_of_finished_trials(store.mlc, store.exp, "b.1-coarse.abc", {3}, by="search")
    assert closed == [twin]
    status = {r: store.mlc.get_run(r).info.status for r in (own, twin, running, other)}
    assert status == {own: "FINISHED", twin: "FAILED", running: "RUNNING", other: "RUNNING"}
    assert "stray" in store.mlc.get_run(twin).data.tags and store.mlc.get_run(twin).data.tags["state"] == "FAIL"


KILL_MID_CREATION = """
import sys
import mlflow
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from pipeline.tracking import store
print("ready", flush=True)  # imported: what follows is the store's creation (about a second)
sys.stdin.readline()
store.client("sqlite:///mlflow.db").search_experiments()
print("created", flush=True)
"""


@pytest.mark.parametrize("after_s", [0.15, 0.4, 0.7])
def test_a_store_killed_while_its_tables_are_made_is_never_left_half_made(tmp_path, after_s):
    """MLflow makes a new SQLite store's tables over about a second; a kill then must not leave a store
    that every later command fails on ("table ... already exists")."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_MID_CREATION], cwd=tmp_path, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("\n")
    proc.stdin.flush()
    time.sleep(after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    db = tmp_path / "mlflow.db"
    if db.exists():  # created whole before the kill
        assert MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    uri = f"sqlite:///{tmp_path / 'again' / 'mlflow.db'}"
    shutil.copytree(tmp_path, tmp_path / "again", ignore=shutil.ignore_patterns("again"))
    mlc = tracking.client(uri)  # what the next command does in that folder
    exp = mlc.create_experiment("after-a-kill")
    assert mlc.get_experiment(exp).name == "after-a-kill"
    assert not list((tmp_path / "again").glob(".mlflow.db*")), "the killed creation's file is removed"


def test_a_new_store_is_made_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch):
    """Some mounts (FAT, several FUSE and network file systems) refuse `link()`: the store is renamed in."""

    def no_links(src, dst, **kwargs):
        raise PermissionError(1, "Operation not permitted", str(dst))

    monkeypatch.setattr(os, "link", no_links)
    mlc = tracking.client(f"sqlite:///{tmp_path / 'fat' / 'mlflow.db'}")
    assert mlc.get_experiment(mlc.create_experiment("no-hard-links")).name == "no-hard-links"
    assert not list((tmp_path / "fat").glob(".mlflow.db*"))
