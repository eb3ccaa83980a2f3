"""Layers, losses and update rules of the from-scratch NumPy network.

Every layer has a `*_forward` returning `(out, cache)` and a `*_backward(dout, cache)`
returning the gradients, so each can be gradient-checked on its own. Update rules take
the parameter, its gradient and their state, and return new arrays (no in-place edits).
"""

from __future__ import annotations

import numpy as np

BN_EPS = 1e-5
BN_MOMENTUM = 0.9


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray):
    """Return `(x @ w + b, cache)` for `x` (N, D), `w` (D, M), `b` (M,)."""
    return x @ w + b, (x, w)


def affine_backward(dout: np.ndarray, cache):
    """Return `(dx, dw, db)` of the affine layer."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def relu_forward(x: np.ndarray):
    """Return `(max(0, x), cache)`."""
    return np.maximum(x, 0), x


def relu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Return `dx` of the ReLU."""
    return dout * (cache > 0)


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, state: dict, *, train: bool):
    """Batch normalization of `x` (N, D) per feature.

    Args:
        `gamma`, `beta`: scale and shift (D,).
        `state`: `{"running_mean", "running_var"}`; in training they are updated in place
            with momentum `BN_MOMENTUM` (0.9); in test mode they normalize instead of the batch.
        `train`: training (batch statistics) or test mode (running statistics).

    Returns:
        `(out, cache)`, `out = gamma * (x - mean) / sqrt(var + 1e-5) + beta`.
    """
    if train:
        mean, var = x.mean(axis=0), x.var(axis=0)
        state["running_mean"] = BN_MOMENTUM * state["running_mean"] + (1 - BN_MOMENTUM) * mean
        state["running_var"] = BN_MOMENTUM * state["running_var"] + (1 - BN_MOMENTUM) * var
    else:
        mean, var = state["running_mean"], state["running_var"]
    inv_std = 1.0 / np.sqrt(var + BN_EPS)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std)


def batchnorm_backward(dout: np.ndarray, cache):
    """Return `(dx, dgamma, dbeta)` of training-mode batch normalization."""
    x_hat, gamma, inv_std = cache
    n = dout.shape[0]
    dgamma = (dout * x_hat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    dx_hat = dout * gamma
    dx = inv_std / n * (n * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0))
    return dx, dgamma, dbeta


def dropout_forward(x: np.ndarray, rate: float, *, train: bool, rng=None, mask: np.ndarray | None = None):
    """Inverted dropout: in training multiply by `mask = (rand < keep) / keep`, identity at test.

    Args:
        `rate`: fraction dropped (keep = 1 - rate).
        `rng`: `np.random.Generator` drawing the mask (unless `mask` is given).
        `mask`: a fixed mask to apply instead (tests).

    Returns:
        `(out, cache)`; the cache is the mask, or None when nothing was dropped.
    """
    if not train or (rate == 0 and mask is None):
        return x, None
    if mask is None:
        keep = 1.0 - rate
        mask = ((rng.random(x.shape) < keep) / keep).astype(x.dtype)
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Return `dx` of dropout."""
    return dout if cache is None else dout * cache


def softmax_loss(scores: np.ndarray, y: np.ndarray):
    """Softmax cross-entropy, mean over the batch; scores are shifted by their row max.

    Returns:
        `(loss, dscores)`.
    """
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(scores.shape[0])
    loss = -log_probs[rows, y].mean()
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    return loss, dscores / scores.shape[0]


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax (row-max shifted)."""
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def mse_loss(pred: np.ndarray, y: np.ndarray):
    """Mean squared error of predictions (N,) against targets (N,).

    Returns:
        `(loss, dpred)`.
    """
    diff = pred - y
    return (diff**2).mean(), 2.0 * diff / diff.shape[0]


def mae_loss(pred: np.ndarray, y: np.ndarray):
    """Mean absolute error; its subgradient takes sign(0) = 0. Returns `(loss, dpred)`."""
    diff = pred - y
    return np.abs(diff).mean(), np.sign(diff) / diff.shape[0]


def huber_loss(pred: np.ndarray, y: np.ndarray, delta: float = 1.0):
    """Huber loss (Keras's): `0.5*d^2` where `|d| <= delta`, else `delta*|d| - 0.5*delta^2`, mean.

    Returns:
        `(loss, dpred)`.
    """
    diff = pred - y
    a = np.abs(diff)
    loss = np.where(a <= delta, 0.5 * diff**2, delta * a - 0.5 * delta**2).mean()
    return loss, np.clip(diff, -delta, delta) / diff.shape[0]


def binary_hinge_loss(scores: np.ndarray, y: np.ndarray):
    """Hinge loss of a two-class network on the margin `m = s1 - s0` with labels mapped to t = 2y - 1 (±1).

    `mean(max(0, 1 - t*m))`; softmax of the two scores is sigmoid(m), the probability `predict` gives.

    Returns:
        `(loss, dscores)` for scores (N, 2).
    """
    t = 2.0 * y - 1.0
    margin = scores[:, 1] - scores[:, 0]
    slack = 1.0 - t * margin
    dm = np.where(slack > 0, -t, 0.0) / scores.shape[0]
    dscores = np.stack([-dm, dm], axis=1).astype(scores.dtype)
    return np.maximum(slack, 0.0).mean(), dscores


def l2_penalty(weights, reg: float) -> float:
    """Return `0.5 * reg * sum(W^2)` over the weight matrices (biases are not regularized)."""
    return 0.5 * reg * sum(float((w * w).sum()) for w in weights)


def l1_penalty(weights, reg: float) -> float:
    """Return `reg * sum|W|` over the weight matrices; its subgradient is `reg * sign(W)` (0 at 0)."""
    return reg * sum(float(np.abs(w).sum()) for w in weights)


def sgd_update(x: np.ndarray, dx: np.ndarray, *, lr: float) -> np.ndarray:
    """Vanilla SGD: `x - lr * dx`."""
    return x - lr * dx


def momentum_update(x, dx, v, *, lr: float, mu: float):
    """Classical momentum: `v = mu * v - lr * dx; x += v`. Returns `(x, v)`."""
    v = mu * v - lr * dx
    return x + v, v


def nesterov_update(x, dx, v, *, lr: float, mu: float):
    """SGD with Nesterov momentum: `v_prev = v; v = mu*v - lr*dx; x += -mu*v_prev + (1+mu)*v`.

    Returns:
        `(x, v)`.
    """
    v_prev = v
    v = mu * v - lr * dx
    return x - mu * v_prev + (1 + mu) * v, v


def rmsprop_update(x, dx, cache, *, lr: float, decay: float = 0.9, eps: float = 1e-7):
    """RMSprop: `cache = decay*cache + (1-decay)*dx^2; x -= lr * dx / (sqrt(cache) + eps)`.

    Returns:
        `(x, cache)`.
    """
    cache = decay * cache + (1 - decay) * dx * dx
    return x - lr * dx / (np.sqrt(cache) + eps), cache


def adam_update(x, dx, m, v, t: int, *, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
    """Adam with bias correction; `t` is the 1-based step number.

    `m = b1*m + (1-b1)*dx; v = b2*v + (1-b2)*dx^2; m_hat = m/(1-b1^t); v_hat = v/(1-b2^t);
    x -= lr * m_hat / (sqrt(v_hat) + eps)`.

    Returns:
        `(x, m, v)`.
    """
    m = beta1 * m + (1 - beta1) * dx
    v = beta2 * v + (1 - beta2) * dx * dx
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return x - lr * m_hat / (np.sqrt(v_hat) + eps), m, v
