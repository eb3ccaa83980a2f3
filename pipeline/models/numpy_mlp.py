"""`numpy_mlp`: the from-scratch fully connected network of the lecture notes, in NumPy.

Hidden blocks affine -> batch norm -> ReLU -> inverted dropout, then an affine output
layer. Loss: softmax cross-entropy for classification (binary as two classes; `predict`
returns P(class 1)), MSE for regression; `loss: hinge` (binary) trains on the margin s1 - s0
with labels mapped to ±1 (`predict` still answers the softmax, i.e. sigmoid of the margin),
`mae` / `huber` (regression) replace MSE. `regularizer` l2 (default) adds `0.5*l2*sum(W^2)` per
layer, l1 `l1*sum|W|` (subgradient `l1*sign(W)`), l1_l2 both (biases and batch-norm parameters
are not regularized). He init `randn * sqrt(2/fan_in)`, zero biases
(for regression the output bias starts at the mean training target). Every layer,
the output layer included, is updated. An epoch is one pass over a shuffled train set in
minibatches; the learning rate is multiplied by `lr_decay` after every epoch.

Defaults: units [200, 100], batch norm on, no dropout, no L2, adam lr 1e-3, batch 200,
lr_decay 0.95 (1.0 turns it off). Optimizers: `sgd` (Nesterov momentum `momentum` 0.9;
classical momentum with `nesterov: false`; plain SGD with `momentum: 0`), `adam`, `rmsprop`.
Training runs in float32; CSR minibatches are densified as they are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from pipeline.models import numpy_layers as L
from pipeline.models.arrays import as_labels, dense, dense_chunks
from pipeline.models.base import ModelFamily, TrainedModel, evaluate_predictions
from pipeline.models.epoch_loop import EpochLoop
from pipeline.models.hparams import hidden_units

PARAMS_FILE = "params.npz"


class Network:
    """Parameters, batch-norm running statistics and the forward/backward passes.

    Attributes:
        `params`: `W1, b1, gamma1, beta1, ..., WL, bL` (1-based layer numbers).
        `bn_state`: one `{"running_mean", "running_var"}` per hidden layer (batch norm on).
        `n_layers`: affine layers including the output layer.
    """

    def __init__(
        self, params: dict, bn_state: list, *, task: str, use_batchnorm: bool, dropout=0.0, l2=0.0, l1=0.0, loss=None
    ):
        self.params = params
        self.bn_state = bn_state
        self.task = task
        self.use_batchnorm = bool(use_batchnorm)
        self.dropout = float(dropout or 0.0)
        self.l2 = float(l2 or 0.0)
        self.l1 = float(l1 or 0.0)
        self.loss_name = loss
        self.n_layers = sum(1 for k in params if k.startswith("W"))

    @classmethod
    def create(cls, dims: list[int], *, task: str, use_batchnorm: bool, rng, dtype=np.float32, **penalties):
        """He-initialize a network with layer sizes `dims` (input, hidden..., output).

        `penalties`: `dropout`, `l2`, `l1`, `loss`, passed to the constructor.
        """
        params, bn_state = {}, []
        for i, (fan_in, fan_out) in enumerate(pairwise(dims), start=1):
            params[f"W{i}"] = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(dtype)
            params[f"b{i}"] = np.zeros(fan_out, dtype=dtype)
            if use_batchnorm and i < len(dims) - 1:
                params[f"gamma{i}"] = np.ones(fan_out, dtype=dtype)
                params[f"beta{i}"] = np.zeros(fan_out, dtype=dtype)
                bn_state.append({"running_mean": np.zeros(fan_out, dtype), "running_var": np.ones(fan_out, dtype)})
        return cls(params, bn_state, task=task, use_batchnorm=use_batchnorm, **penalties)

    def forward(self, X: np.ndarray, *, train: bool, rng=None):
        """Return `(scores, caches)`; test mode uses running statistics and no dropout."""
        p, caches, h = self.params, [], X
        for i in range(1, self.n_layers):
            h, c_affine = L.affine_forward(h, p[f"W{i}"], p[f"b{i}"])
            c_bn = None
            if self.use_batchnorm:
                h, c_bn = L.batchnorm_forward(h, p[f"gamma{i}"], p[f"beta{i}"], self.bn_state[i - 1], train=train)
            h, c_relu = L.relu_forward(h)
            h, c_drop = L.dropout_forward(h, self.dropout, train=train, rng=rng)
            caches.append((c_affine, c_bn, c_relu, c_drop))
        scores, c_out = L.affine_forward(h, p[f"W{self.n_layers}"], p[f"b{self.n_layers}"])
        caches.append(c_out)
        return scores, caches

    def backward(self, dscores: np.ndarray, caches: list) -> dict[str, np.ndarray]:
        """Return the gradient of every parameter, L2 and L1 (sign) terms included."""
        grads = {}
        n = self.n_layers
        dh, grads[f"W{n}"], grads[f"b{n}"] = L.affine_backward(dscores, caches[-1])
        for i in range(n - 1, 0, -1):
            c_affine, c_bn, c_relu, c_drop = caches[i - 1]
            dh = L.relu_backward(L.dropout_backward(dh, c_drop), c_relu)
            if self.use_batchnorm:
                dh, grads[f"gamma{i}"], grads[f"beta{i}"] = L.batchnorm_backward(dh, c_bn)
            dh, grads[f"W{i}"], grads[f"b{i}"] = L.affine_backward(dh, c_affine)
        for i in range(1, n + 1):
            grads[f"W{i}"] = grads[f"W{i}"] + self.l2 * self.params[f"W{i}"]
            if self.l1:
                grads[f"W{i}"] = grads[f"W{i}"] + self.l1 * np.sign(self.params[f"W{i}"])
        return grads

    def penalty(self) -> float:
        """Return `0.5 * l2 * sum(W^2) + l1 * sum|W|` over all layers."""
        weights = [self.params[f"W{i}"] for i in range(1, self.n_layers + 1)]
        return L.l2_penalty(weights, self.l2) + (L.l1_penalty(weights, self.l1) if self.l1 else 0.0)

    def data_loss(self, scores: np.ndarray, y: np.ndarray):
        """Return `(loss, dscores)` of the training loss (`loss_name`, None: the task's default)."""
        if self.task == "regression":
            fn = {"mae": L.mae_loss, "huber": L.huber_loss}.get(self.loss_name, L.mse_loss)
            value, dpred = fn(scores[:, 0], y)
            return value, dpred[:, None]
        if self.loss_name == "hinge":
            return L.binary_hinge_loss(scores, y)
        return L.softmax_loss(scores, y)

    def loss(self, X: np.ndarray, y: np.ndarray, *, train: bool = True, rng=None):
        """Return `(loss, grads, scores)` for a minibatch; loss includes the penalty."""
        scores, caches = self.forward(X, train=train, rng=rng)
        data_loss, dscores = self.data_loss(scores, y)
        return data_loss + self.penalty(), self.backward(dscores, caches), scores

    def snapshot(self) -> tuple[dict, list]:
        """Return copies of the parameters and running statistics."""
        params = {k: v.copy() for k, v in self.params.items()}
        return params, [{k: v.copy() for k, v in s.items()} for s in self.bn_state]


class Optimizer:
    """Applies the update rule named by `hp["optimizer"]` to every parameter, keeping its state."""

    def __init__(self, hp: dict):
        self.rule = hp["optimizer"]
        self.mu = float(hp.get("momentum") or 0.0)
        self.nesterov = bool(hp.get("nesterov", True))
        self.state: dict[str, tuple] = {}
        self.t = 0

    def step(self, params: dict, grads: dict, lr: float) -> None:
        """Update `params` in place (new arrays per key) with `grads` at learning rate `lr`."""
        self.t += 1
        for key, dx in grads.items():
            x = params[key]
            state = self.state.get(key) or (np.zeros_like(x), np.zeros_like(x))
            if self.rule == "adam":
                params[key], m, v = L.adam_update(x, dx, state[0], state[1], self.t, lr=lr)
                self.state[key] = (m, v)
            elif self.rule == "rmsprop":
                params[key], cache = L.rmsprop_update(x, dx, state[0], lr=lr)
                self.state[key] = (cache,)
            elif self.mu == 0:
                params[key] = L.sgd_update(x, dx, lr=lr)
            else:
                update = L.nesterov_update if self.nesterov else L.momentum_update
                params[key], v = update(x, dx, state[0], lr=lr, mu=self.mu)
                self.state[key] = (v,)


@dataclass(kw_only=True, eq=False)
class NumpyMLPModel(TrainedModel):
    """A trained `numpy_mlp`; saved as `params.npz` (parameters, running statistics) + `meta.json`."""

    family = "numpy_mlp"
    net: Network | None = None

    def predict(self, X) -> np.ndarray:
        """See `TrainedModel.predict` (test mode, in blocks)."""
        dtype = self.net.params["W1"].dtype
        scores = np.concatenate([self.net.forward(b.astype(dtype), train=False)[0] for b in dense_chunks(X)])
        if self.task == "regression":
            return scores[:, 0]
        probs = L.softmax(scores)
        return probs[:, 1] if self.task == "binary" else probs

    def kernel_weights(self) -> list[np.ndarray]:
        """The weight matrices `W1 ... WL`, output layer included."""
        return [self.net.params[f"W{i}"] for i in range(1, self.net.n_layers + 1)]

    def _save_state(self, dir: Path) -> None:
        arrays = dict(self.net.params)
        for i, s in enumerate(self.net.bn_state, start=1):
            arrays[f"running_mean{i}"], arrays[f"running_var{i}"] = s["running_mean"], s["running_var"]
        np.savez(dir / PARAMS_FILE, **arrays)

    def _json_state(self) -> dict:
        return {"use_batchnorm": self.net.use_batchnorm}

    def _load_state(self, dir: Path, state: dict) -> None:
        with np.load(dir / PARAMS_FILE, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        params = {k: v for k, v in arrays.items() if not k.startswith("running_")}
        n_bn = sum(1 for k in arrays if k.startswith("running_mean"))
        bn_state = [
            {"running_mean": arrays[f"running_mean{i}"], "running_var": arrays[f"running_var{i}"]}
            for i in range(1, n_bn + 1)
        ]
        self.net = Network(params, bn_state, task=self.task, use_batchnorm=state["use_batchnorm"])


class NumpyMLP(ModelFamily):
    """The from-scratch network (see the module docstring)."""

    model_class = NumpyMLPModel

    def fit(self, hp, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed, on_epoch):
        """Train with minibatch updates; see `ModelFamily.train`."""
        rng = np.random.default_rng(seed)
        n_out = 1 if task == "regression" else 2 if task == "binary" else int(n_classes)
        dims = [X_train.shape[1], *hidden_units(hp), n_out]
        regularizer = hp["regularizer"]
        net = Network.create(
            dims,
            task=task,
            use_batchnorm=hp["use_batchnorm"],
            dropout=hp["dropout"],
            l2=hp["l2"] if regularizer != "l1" else 0.0,
            l1=hp["l1"] if regularizer != "l2" else 0.0,
            loss=hp["loss"],
            rng=rng,
        )
        y_train = as_labels(task, y_train)
        if task == "regression":  # start from the mean target, so the first steps fit the shape, not the offset
            net.params[f"b{net.n_layers}"][:] = y_train.mean()
        has_val = X_val is not None
        loop = EpochLoop(task, hp, has_val=has_val, on_epoch=on_epoch)
        model = NumpyMLPModel(net=net, hparams=hp, history=loop.history, best_epoch=0, task=task, n_classes=n_classes)
        optimizer, best, bs = Optimizer(hp), None, int(hp["batch_size"])
        keep_best = has_val and hp["early_stopping"] is not None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(int(epochs)):
                logs = self._epoch(net, optimizer, X_train, y_train, bs, loop.lr, rng)
                if has_val:
                    scores = evaluate_predictions(task, model.predict(X_val), y_val)
                    logs["val_loss"] = self._val_loss(net, X_val, y_val, scores["loss"]) + net.penalty()
                    logs[f"val_{loop.metric}"] = scores[loop.metric]
                loop.end_epoch(epoch, logs)
                if keep_best and loop.improved:
                    best = net.snapshot()
                if loop.stop:
                    break
        if best is not None:
            net.params, net.bn_state = best
        model.best_epoch = loop.best_epoch
        return model

    @staticmethod
    def _val_loss(net: Network, X_val, y_val: np.ndarray, default: float) -> float:
        """The validation data loss: `default` (log loss / mse) for the task's loss, else the training loss."""
        if net.loss_name in (None, "binary_crossentropy", "categorical_crossentropy", "mse"):
            return default
        dtype = net.params["W1"].dtype
        scores = np.concatenate([net.forward(b.astype(dtype), train=False)[0] for b in dense_chunks(X_val)])
        return float(net.data_loss(scores, as_labels(net.task, y_val))[0])

    @staticmethod
    def _epoch(net: Network, optimizer: Optimizer, X, y, batch_size: int, lr: float, rng) -> dict:
        """Run one pass over shuffled minibatches; return the mean train `loss` and metric."""
        n = X.shape[0]
        total_loss = total_metric = 0.0
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = dense(X[idx]), y[idx]
            loss, grads, scores = net.loss(xb, yb, train=True, rng=rng)
            optimizer.step(net.params, grads, lr)
            total_loss += float(loss) * len(idx)
            if net.task == "regression":
                total_metric += float(np.abs(scores[:, 0] - yb).sum())
            else:
                total_metric += float((scores.argmax(axis=1) == yb).sum())
        metric = "mae" if net.task == "regression" else "accuracy"
        return {"loss": total_loss / n, metric: total_metric / n}
