"""Every model family on tiny real data (scikit-learn's digits, breast_cancer, diabetes):
learning beats the majority/mean floor, the book's networks have the book's shapes, save/load
round trips, callbacks, divergence, CSR input, determinism and early stopping."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

from pipeline.models import DivergedError, TrainedModel, get_family
from pipeline.models.keras_common import make_optimizer

N_TRAIN, N_VAL = 300, 200


def _standardize(X: np.ndarray) -> np.ndarray:
    mean, std = X[:N_TRAIN].mean(axis=0), X[:N_TRAIN].std(axis=0) + 1e-8
    return ((X - mean) / std).astype(np.float32)


def _split(X, y, task, n_classes=None) -> dict:
    return {
        "X_train": X[:N_TRAIN], "y_train": y[:N_TRAIN], "X_val": X[N_TRAIN : N_TRAIN + N_VAL],
        "y_val": y[N_TRAIN : N_TRAIN + N_VAL], "task": task, "n_classes": n_classes,
    }  # fmt: skip


@pytest.fixture(scope="module")
def data() -> dict[str, dict]:
    """binary: breast_cancer (standardized); multiclass: digits (pixels/16); regression: diabetes;
    images: digits as 8x8x1; multihot: digits pixels > 0.5 as CSR, label digit >= 5."""
    digits, cancer, diabetes = load_digits(), load_breast_cancer(), load_diabetes()
    pixels = (digits.data / 16).astype(np.float32)
    multihot = sp.csr_matrix((pixels > 0.5).astype(np.float32))
    return {
        "binary": _split(_standardize(cancer.data), cancer.target, "binary"),
        "multiclass": _split(pixels, digits.target, "multiclass", 10),
        "regression": _split(_standardize(diabetes.data), diabetes.target.astype(np.float32), "regression"),
        "images": _split(pixels.reshape(-1, 8, 8, 1), digits.target, "multiclass", 10),
        "multihot": _split(multihot, (digits.target >= 5).astype(np.int64), "binary"),
    }


def train(family: str, d: dict, hparams=None, *, epochs=20, val=True, **kwargs) -> TrainedModel:
    return get_family(family).train(
        hparams or {}, d["X_train"], d["y_train"], d["X_val"] if val else None, d["y_val"] if val else None,
        task=d["task"], n_classes=d["n_classes"], epochs=epochs, **kwargs,
    )  # fmt: skip


# (family, dataset, hparams, epochs): each trained once per module, reused by several tests
CASES = [
    ("keras_mlp", "binary", {}, 20),
    ("keras_mlp", "multiclass", {}, 20),
    ("keras_mlp", "regression", {"lr": 1e-2}, 20),
    ("keras_cnn", "images", {}, 10),
    ("numpy_mlp", "binary", {}, 20),
    ("numpy_mlp", "multiclass", {}, 20),
    ("numpy_mlp", "regression", {"lr": 1e-2}, 20),
    ("linear", "binary", {}, 1),
    ("linear", "multiclass", {}, 1),
    ("linear", "regression", {}, 1),
    ("majority", "binary", {}, 1),
    ("majority", "multiclass", {}, 1),
    ("majority", "regression", {}, 1),
]
IDS = [f"{family}-{ds}" for family, ds, _, _ in CASES]


@pytest.fixture(scope="module")
def trained(data):
    cache: dict = {}

    def get(case):
        family, ds, hparams, epochs = case
        if (family, ds) not in cache:
            cache[family, ds] = train(family, data[ds], hparams, epochs=epochs)
        return cache[family, ds]

    return get


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "majority"], ids=IDS[:10])
def test_family_beats_the_majority_floor(case, data, trained):
    family, ds, _, epochs = case
    d = data[ds]
    model, floor = trained(case), trained(("majority", d["task"] if ds != "images" else "multiclass", {}, 1))
    scores, base = model.evaluate(d["X_val"], d["y_val"]), floor.evaluate(d["X_val"], d["y_val"])
    if d["task"] == "regression":
        assert scores["mae"] < 0.9 * base["mae"] and set(scores) == {"loss", "mae", "mse"}
    else:
        assert scores["accuracy"] > base["accuracy"] + 0.1 and set(scores) == {"loss", "accuracy"}
    metric = "mae" if d["task"] == "regression" else "accuracy"
    assert list(model.history) == ["loss", metric, "val_loss", f"val_{metric}"]
    assert all(len(v) == epochs for v in model.history.values())
    assert all(isinstance(x, float) for v in model.history.values() for x in v)
    best = (np.argmin if metric == "mae" else np.argmax)(model.history[f"val_{metric}"]) + 1
    assert model.best_epoch == best


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_save_load_gives_identical_predictions(case, data, trained, tmp_path):
    model = trained(case)
    X = data[case[1]]["X_val"]
    model.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert "meta.json" in files and all(f.endswith((".json", ".npz", ".keras")) for f in files)
    loaded = TrainedModel.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.family == case[0]
    assert (loaded.hparams, loaded.history, loaded.best_epoch) == (model.hparams, model.history, model.best_epoch)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    n = X.shape[0]
    shape = {"binary": (n,), "regression": (n,), "multiclass": (n, 10)}[model.task]
    assert loaded.predict(X).shape == shape
    if model.task != "regression":
        probs = loaded.predict(X)
        assert probs.min() >= 0 and probs.max() <= 1
        if model.task == "multiclass":
            np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_book_default_networks_have_the_book_shapes():
    family = get_family("keras_mlp")
    nets = {
        "imdb": ("binary", None, (10000,), [16, 16, 1], 160_305),
        "reuters": ("multiclass", 46, (10000,), [64, 64, 46], 647_214),
        "boston": ("regression", None, (13,), [64, 64, 1], 5_121),
    }
    for name, (task, n_classes, shape, widths, n_params) in nets.items():
        hp = family.resolve_hparams(task, {})
        assert (hp["optimizer"], hp["lr"]) == ("rmsprop", 1e-3)
        model = family.build_model(hp, shape, task, n_classes)
        dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
        assert [layer.units for layer in dense] == widths, name
        activations = [layer.get_config()["activation"] for layer in dense]
        head = {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}[task]
        assert activations == ["relu", "relu", head], name
        assert model.count_params() == n_params, name
    assert family.default_hparams("binary")["batch_size"] == 512


def test_notes_cnn_preset():
    family = get_family("keras_cnn")
    hp = family.resolve_hparams("multiclass", {"preset": "notes"})
    model = family.build_model(hp, (28, 28, 1), "multiclass", 10)
    convs = [(c["filters"], c["kernel_size"], c["activation"]) for c in
             (layer.get_config() for layer in model.layers if layer.__class__.__name__ == "Conv2D")]  # fmt: skip
    assert convs == [(4, (5, 5), "tanh"), (8, (3, 3), "tanh"), (16, (3, 3), "tanh")]
    kinds = [layer.__class__.__name__ for layer in model.layers[1:]]
    assert kinds == ["Conv2D", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert [layer.units for layer in model.layers[-2:]] == [128, 10]
    # 104 + 296 + 1168 conv, 7*7*16*128 + 128 dense, 1290 output
    assert model.count_params() == 104 + 296 + 1_168 + 100_480 + 1_290
    opt = make_optimizer(hp).get_config()
    assert (opt["name"], opt["momentum"], opt["nesterov"]) == ("sgd", 0.9, True)
    assert np.isclose(opt["learning_rate"], 0.05)
    assert hp["batch_size"] == 100
    assert family.resolve_hparams("multiclass", {"preset": "notes", "lr": 0.01})["lr"] == 0.01
    spelled_out = {**family.default_hparams("multiclass"), "preset": "notes"}  # as the search passes them
    assert family.resolve_hparams("multiclass", spelled_out) == hp
    with pytest.raises(ValueError, match="preset"):
        family.resolve_hparams("multiclass", {"preset": "vgg"})


def test_cnn_augmentation_on_tiny_images_is_training_only(data, tmp_path):
    d = dict(data["images"], X_train=data["images"]["X_train"][:, :, :, 0])  # (N, H, W) gets a channel axis
    model = train("keras_cnn", d, {"augment": True, "filters": [8, [8, 8], 8, 8]}, epochs=1)
    kinds = [layer.__class__.__name__ for layer in model.model.layers]
    assert kinds[1:3] == ["RandomRotation", "RandomTranslation"]
    assert kinds.count("MaxPooling2D") == 3  # 8 -> 4 -> 2 -> 1, then no more pooling
    first = model.predict(d["X_val"])
    np.testing.assert_array_equal(first, model.predict(d["X_val"]))  # inactive at inference
    model.save(tmp_path / "cnn")
    np.testing.assert_array_equal(TrainedModel.load(tmp_path / "cnn").predict(d["X_val"]), first)


class Stop(Exception):
    pass


@pytest.mark.parametrize(("family", "error"), [
    ("keras_mlp", Stop), ("keras_mlp", optuna.TrialPruned), ("numpy_mlp", Stop), ("linear", Stop),
])  # fmt: skip
def test_on_epoch_exception_stops_training_and_propagates(family, error, data):
    calls = []
    last = 0 if family == "linear" else 2

    def on_epoch(epoch, logs):
        calls.append((epoch, logs))
        if epoch == last:
            raise error("stop here")

    with pytest.raises(error, match="stop here"):
        train(family, data["binary"], epochs=10, on_epoch=on_epoch)
    assert [e for e, _ in calls] == list(range(last + 1))
    assert set(calls[0][1]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(isinstance(v, float) for v in calls[0][1].values())


@pytest.mark.parametrize("family", ["keras_mlp", "numpy_mlp"])
def test_absurd_learning_rate_raises_diverged(family, data):
    with pytest.raises(DivergedError, match=r"(loss|val_loss) = (nan|inf) at epoch \d+") as info:
        train(family, data["regression"], {"optimizer": "sgd", "lr": 1e6}, epochs=5)
    assert info.value.epoch <= 5


@pytest.mark.parametrize("family", ["keras_mlp", "numpy_mlp", "linear"])
def test_csr_input(family, data):
    d = data["multihot"]
    model = train(family, d, epochs=10)
    floor = train("majority", d)
    X_val = d["X_val"]
    assert model.evaluate(X_val, d["y_val"])["accuracy"] > floor.evaluate(X_val, d["y_val"])["accuracy"] + 0.1
    np.testing.assert_allclose(model.predict(X_val), model.predict(X_val.toarray()), rtol=1e-5, atol=1e-6)
    if family == "numpy_mlp":  # the same minibatches, densified: the same network as from dense input
        dense = train(family, dict(d, X_train=d["X_train"].toarray(), X_val=X_val.toarray()), epochs=10)
        np.testing.assert_allclose(dense.predict(X_val), model.predict(X_val), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["keras_mlp", "numpy_mlp", "linear", "majority"])
def test_training_without_validation(family, data):
    hp = {"lr_schedule": "step", "lr_step_epochs": 1, "early_stopping": 1} if family != "majority" else {}
    model = train(family, data["binary"], hp, epochs=3, val=False)
    assert list(model.history) == ["loss", "accuracy"]
    epochs = 3 if family.endswith("mlp") else 1
    assert model.best_epoch == epochs and len(model.history["loss"]) == epochs  # no early stopping without val
    if family == "keras_mlp":
        assert np.isclose(float(model.model.optimizer.learning_rate), 1e-3 / 8)


@pytest.mark.parametrize("family", ["keras_mlp", "numpy_mlp"])
def test_same_seed_same_model(family, data):
    d = data["binary"]
    a, b = (train(family, d, {"dropout": 0.2}, epochs=3, seed=5) for _ in range(2))
    assert a.history == b.history
    np.testing.assert_array_equal(a.predict(d["X_val"]), b.predict(d["X_val"]))
    c = train(family, d, {"dropout": 0.2}, epochs=3, seed=6)
    assert not np.array_equal(a.predict(d["X_val"]), c.predict(d["X_val"]))


@pytest.mark.parametrize("family", ["keras_mlp", "numpy_mlp"])
def test_early_stopping_restores_the_best_epoch(family, data):
    d = data["binary"]
    flipped = dict(d, y_val=1 - d["y_val"])  # validation gets worse as training gets better
    model = train(family, flipped, {"early_stopping": 2, "lr": 1e-2}, epochs=30)
    n = len(model.history["loss"])
    assert n == model.best_epoch + 2 < 30
    restored = model.evaluate(flipped["X_val"], flipped["y_val"])["accuracy"]
    assert np.isclose(restored, model.history["val_accuracy"][model.best_epoch - 1], atol=1e-6)


def test_unknown_hyperparameter_is_rejected(data):
    with pytest.raises(ValueError, match="learning_rate"):
        train("numpy_mlp", data["binary"], {"learning_rate": 0.1}, epochs=1)
    model = train("linear", data["binary"], {"l2": 10.0, "dropout": 0.5, "lr": None})  # dropout: ignored
    assert model.hparams == {"regularizer": "l2", "l2": 10.0, "l1": None, "max_iter": 1000}
    meta = json.dumps(model.hparams)
    assert "dropout" not in meta
