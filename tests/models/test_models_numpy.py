"""The from-scratch network and the family plumbing, without TensorFlow: gradient checks of
every layer in float64, batch-norm modes, update rules, hyperparameter resolution, epoch loop."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.models import FAMILIES, DivergedError, get_family
from pipeline.models import numpy_layers as L
from pipeline.models.epoch_loop import EpochLoop
from pipeline.models.hparams import hidden_units, resolve_hparams
from pipeline.models.numpy_mlp import Network, Optimizer

H = 1e-5
TOL = 1e-6


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central-difference gradient of scalar `f()` with respect to array `x` (perturbed in place)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + H
        plus = f()
        x[i] = old - H
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * H)
    return grad


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest elementwise relative error, with the usual 1e-8 floor on the denominator."""
    return float(np.max(np.abs(analytic - numeric) / np.maximum(1e-8, np.abs(analytic) + np.abs(numeric))))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def check_layer(forward, inputs: dict, grads: dict, dout: np.ndarray) -> None:
    """Compare analytic `grads` with numeric gradients of `sum(forward() * dout)` for each input."""
    for name, x in inputs.items():
        num = numeric_grad(lambda: float((forward() * dout).sum()), x)
        assert rel_error(grads[name], num) < TOL, name


def test_affine_gradient(rng):
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    dout = rng.standard_normal((4, 3))
    _, cache = L.affine_forward(x, w, b)
    dx, dw, db = L.affine_backward(dout, cache)
    check_layer(lambda: L.affine_forward(x, w, b)[0], {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db}, dout)


def test_relu_gradient(rng):
    x = rng.standard_normal((5, 6))
    x[np.abs(x) < 0.01] = 0.5  # keep clear of the kink
    dout = rng.standard_normal(x.shape)
    dx = L.relu_backward(dout, L.relu_forward(x)[1])
    check_layer(lambda: L.relu_forward(x)[0], {"x": x}, {"x": dx}, dout)


def test_batchnorm_gradient(rng):
    x = 3 * rng.standard_normal((6, 4)) + 2
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal(x.shape)

    def forward():
        state = {"running_mean": np.zeros(4), "running_var": np.ones(4)}
        return L.batchnorm_forward(x, gamma, beta, state, train=True)

    dx, dgamma, dbeta = L.batchnorm_backward(dout, forward()[1])
    grads = {"x": dx, "gamma": dgamma, "beta": dbeta}
    check_layer(lambda: forward()[0], {"x": x, "gamma": gamma, "beta": beta}, grads, dout)


def test_dropout_gradient_with_fixed_mask(rng):
    x = rng.standard_normal((5, 6))
    mask = (rng.random(x.shape) < 0.7) / 0.7
    dout = rng.standard_normal(x.shape)
    out, cache = L.dropout_forward(x, 0.3, train=True, mask=mask)
    np.testing.assert_allclose(out, x * mask)
    dx = L.dropout_backward(dout, cache)
    check_layer(lambda: L.dropout_forward(x, 0.3, train=True, mask=mask)[0], {"x": x}, {"x": dx}, dout)


def test_dropout_is_inverted_and_identity_at_test(rng):
    x = np.ones((2000, 50))
    out, mask = L.dropout_forward(x, 0.4, train=True, rng=rng)
    assert set(np.unique(mask)) == {0.0, 1 / 0.6}
    assert abs(out.mean() - 1.0) < 0.02  # inverted: the expectation is unchanged
    assert L.dropout_forward(x, 0.4, train=False, rng=rng)[0] is x


def test_softmax_loss_gradient_and_shift(rng):
    scores, y = rng.standard_normal((5, 4)), np.array([0, 3, 1, 2, 3])
    loss, dscores = L.softmax_loss(scores, y)
    num = numeric_grad(lambda: L.softmax_loss(scores, y)[0], scores)
    assert rel_error(dscores, num) < TOL
    assert np.isclose(loss, -np.mean(np.log(L.softmax(scores)[np.arange(5), y])))
    huge, _ = L.softmax_loss(scores + 1e4, y)  # row-max shift: no overflow
    assert np.isclose(huge, loss)


def test_mse_loss_gradient(rng):
    pred, y = rng.standard_normal(7), rng.standard_normal(7)
    loss, dpred = L.mse_loss(pred, y)
    assert np.isclose(loss, np.mean((pred - y) ** 2))
    assert rel_error(dpred, numeric_grad(lambda: L.mse_loss(pred, y)[0], pred)) < TOL


@pytest.mark.parametrize(("task", "use_batchnorm", "dropout"), [
    ("multiclass", True, 0.25), ("multiclass", False, 0.0), ("regression", True, 0.0),
])  # fmt: skip
def test_full_network_gradient_with_l2(task, use_batchnorm, dropout):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, 8) if task == "multiclass" else rng.standard_normal(8)
    n_out = 3 if task == "multiclass" else 1
    net = Network.create(
        [5, 6, 4, n_out], task=task, use_batchnorm=use_batchnorm, dropout=dropout, l2=0.3, rng=rng, dtype=np.float64
    )
    for key in net.params:  # non-trivial biases and batch-norm parameters
        if not key.startswith("W"):
            net.params[key] += 0.1 * rng.standard_normal(net.params[key].shape)

    def loss():  # the same dropout masks on every call
        return net.loss(x, y, train=True, rng=np.random.default_rng(7))[0]

    _, grads, _ = net.loss(x, y, train=True, rng=np.random.default_rng(7))
    assert set(grads) == set(net.params)
    for key, param in net.params.items():
        num = numeric_grad(loss, param)
        if use_batchnorm and key in ("b1", "b2"):
            # a bias in front of batch norm has no effect: both gradients are zero
            assert np.abs(grads[key]).max() < 1e-12 and np.abs(num).max() < 1e-8, key
        else:
            assert rel_error(grads[key], num) < TOL, key
    penalty = 0.5 * 0.3 * sum((net.params[f"W{i}"] ** 2).sum() for i in (1, 2, 3))
    assert np.isclose(net.penalty(), penalty)


def test_batchnorm_running_stats_and_test_mode(rng):
    state = {"running_mean": np.zeros(3), "running_var": np.ones(3)}
    gamma, beta = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, -1.0])
    x = 4 + 2 * rng.standard_normal((50, 3))
    L.batchnorm_forward(x, gamma, beta, state, train=True)
    np.testing.assert_allclose(state["running_mean"], 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(state["running_var"], 0.9 + 0.1 * x.var(axis=0))
    for _ in range(200):
        L.batchnorm_forward(x, gamma, beta, state, train=True)
    np.testing.assert_allclose(state["running_mean"], x.mean(axis=0), rtol=1e-6)
    frozen = {k: v.copy() for k, v in state.items()}
    single = x[:1]  # one example: batch statistics would be useless, running ones are not
    out, _ = L.batchnorm_forward(single, gamma, beta, state, train=False)
    expected = gamma * (single - frozen["running_mean"]) / np.sqrt(frozen["running_var"] + 1e-5) + beta
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(state["running_mean"], frozen["running_mean"])  # test mode: untouched


def test_nesterov_update_matches_reference():
    x, dx, v = np.array([1.0, -2.0]), np.array([0.5, 0.1]), np.array([0.2, -0.4])
    new_x, new_v = L.nesterov_update(x, dx, v, lr=0.1, mu=0.9)
    # v_prev = v; v = mu*v - lr*dx; x += -mu*v_prev + (1+mu)*v
    np.testing.assert_allclose(new_v, [0.9 * 0.2 - 0.05, 0.9 * -0.4 - 0.01])
    np.testing.assert_allclose(new_x, [1.0 - 0.9 * 0.2 + 1.9 * 0.13, -2.0 + 0.9 * 0.4 + 1.9 * -0.37])


def test_adam_update_matches_reference_with_bias_correction():
    x, dx = np.array([1.0, -1.0]), np.array([0.2, -0.4])
    m, v = np.zeros(2), np.zeros(2)
    x1, m, v = L.adam_update(x, dx, m, v, 1, lr=0.01)
    # first step: m_hat = dx, v_hat = dx^2, so every coordinate moves by lr
    np.testing.assert_allclose(x1, x - 0.01 * np.sign(dx), rtol=1e-6)
    dx2 = np.array([0.1, 0.3])
    x2, m2, v2 = L.adam_update(x1, dx2, m, v, 2, lr=0.01)
    m_ref = 0.9 * (0.1 * dx) + 0.1 * dx2
    v_ref = 0.999 * (0.001 * dx**2) + 0.001 * dx2**2
    np.testing.assert_allclose(m2, m_ref)
    np.testing.assert_allclose(v2, v_ref)
    step = 0.01 * (m_ref / (1 - 0.9**2)) / (np.sqrt(v_ref / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(x2, x1 - step)


def test_optimizer_updates_every_layer_including_the_output():
    rng = np.random.default_rng(0)
    net = Network.create([4, 5, 3], task="multiclass", use_batchnorm=True, rng=rng, dtype=np.float64)
    before = {k: v.copy() for k, v in net.params.items()}
    _, grads, _ = net.loss(rng.standard_normal((10, 4)), rng.integers(0, 3, 10), rng=rng)
    for rule in ("sgd", "adam", "rmsprop"):
        Optimizer({"optimizer": rule, "momentum": 0.9}).step(net.params, grads, lr=0.1)
    assert all(not np.array_equal(before[k], net.params[k]) for k in before)
    assert {"W2", "b2"} <= set(before)


def test_he_initialization_scale():
    net = Network.create([400, 300, 2], task="binary", use_batchnorm=False, rng=np.random.default_rng(0))
    assert abs(net.params["W1"].std() - np.sqrt(2 / 400)) < 0.002
    assert abs(net.params["W2"].std() - np.sqrt(2 / 300)) < 0.02


def test_hparams_resolution():
    hp = resolve_hparams("keras_mlp", "multiclass", {"lr": None, "units": [8, 4, 2]})  # None: the default
    assert (hp["lr"], hp["units"], hp["depth"], hp["activation"]) == (1e-3, [8, 4, 2], 3, "relu")
    assert hidden_units(resolve_hparams("keras_mlp", "multiclass", {"units": 16, "depth": 3})) == [16, 16, 16]
    with pytest.raises(ValueError, match="learning_rate"):
        resolve_hparams("keras_mlp", "multiclass", {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="filters"):  # another family's key
        resolve_hparams("keras_mlp", "multiclass", {"filters": [3]})
    with pytest.raises(ValueError, match="relu"):
        resolve_hparams("keras_mlp", "multiclass", {"activation": "sigmoid"})


def test_get_family_names():
    assert FAMILIES == ("keras_mlp", "keras_cnn", "numpy_mlp", "linear", "majority", "replay")
    assert [get_family(name).name for name in FAMILIES] == list(FAMILIES)
    with pytest.raises(ValueError, match="keras_mlp, keras_cnn, numpy_mlp, linear, majority, replay"):
        get_family("xgboost")


def test_epoch_loop_best_epoch_early_stopping_and_schedules():
    calls = []
    loop = EpochLoop(
        "regression", {"lr": 1.0, "lr_schedule": "step", "lr_step_epochs": 2, "early_stopping": 2},
        has_val=True, on_epoch=lambda e, logs: calls.append((e, logs)),
    )  # fmt: skip
    for epoch, val_mae in enumerate([5.0, 3.0, 4.0, 3.5]):
        loop.end_epoch(epoch, {"loss": 1.0, "mae": 1.0, "val_loss": 2.0, "val_mae": val_mae, "extra": 0})
    assert loop.best_epoch == 2 and loop.stop
    assert loop.lr == 0.25  # halved after epochs 2 and 4
    assert calls[0] == (0, {"loss": 1.0, "mae": 1.0, "val_loss": 2.0, "val_mae": 5.0})
    assert loop.history["val_mae"] == [5.0, 3.0, 4.0, 3.5]

    plateau = EpochLoop("binary", {"lr": 1.0, "lr_schedule": "plateau", "lr_patience": 2, "lr_decay": 0.5},
                        has_val=False)  # fmt: skip
    for epoch, loss in enumerate([1.0, 1.0, 1.0]):
        plateau.end_epoch(epoch, {"loss": loss, "accuracy": 0.5})
    assert plateau.lr == 0.5**3 * 0.5  # decay every epoch, halved after two epochs without progress
    assert plateau.best_epoch == 3 and "val_loss" not in plateau.history


def test_epoch_loop_raises_diverged_before_calling_on_epoch():
    loop = EpochLoop("binary", {}, has_val=True, on_epoch=lambda e, logs: pytest.fail("called"))
    with pytest.raises(DivergedError, match="val_loss = nan at epoch 3") as info:
        loop.end_epoch(2, {"loss": 0.1, "accuracy": 1.0, "val_loss": float("nan"), "val_accuracy": 1.0})
    assert info.value.epoch == 3


def test_non_keras_families_do_not_import_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from pipeline.models import get_family, TrainedModel\n"
        "X = np.random.default_rng(0).standard_normal((40, 3)).astype('float32'); y = (X[:, 0] > 0).astype(int)\n"
        "for name in ('numpy_mlp', 'linear', 'majority', 'keras_mlp', 'keras_cnn'):\n"
        "    family = get_family(name)\n"
        "    if not name.startswith('keras'):\n"
        "        family.train({}, X, y, X, y, task='binary', n_classes=2, epochs=1)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
