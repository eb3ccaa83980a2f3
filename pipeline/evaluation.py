"""Test-split evaluation: the task metric and loss, against the trivial baseline, with plots.

Classification writes a confusion matrix (PNG with class names, and CSV rows of class names for
`dvc plots` with the confusion template) and a per-class report (CSV); regression writes
predicted-vs-actual rows (`dvc plots`' scatter) and a residual plot. Both write the learning curve
of the retrained model (`learning_curve.csv`: epoch from 1, loss and the task metric on its
training data). `pipeline.dvc_plots` declares how `dvc plots` draws each file.

A model trained with `regularizer: l1` or `l1_l2` also gets its weight sparsity (`weight_sparsity`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.tasks import task_metric


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def predicted_labels(pred: np.ndarray, task: str) -> np.ndarray:
    """Class labels from predicted probabilities."""
    return (pred >= 0.5).astype(int) if task == "binary" else np.asarray(pred).argmax(axis=1)


SPARSE_BELOW = 1e-3  # a network weight this small counts as zero; linear models count exact zeros


def weight_sparsity(model) -> float | None:
    """The fraction of kernel weights that are zero, for a model trained with an L1 penalty, else None.

    Networks (keras_*, numpy_mlp): entries of every weight matrix (output layer included) with
    |w| < `SPARSE_BELOW` (gradient steps leave L1-driven weights near, not at, zero); `linear`:
    coefficients exactly 0 (its solvers reach exact zeros). Biases are not counted.
    """
    if model.hparams.get("regularizer") not in ("l1", "l1_l2") or not hasattr(model, "kernel_weights"):
        return None
    kernels = [np.asarray(w) for w in model.kernel_weights()]
    total = sum(w.size for w in kernels)
    if not total:
        return None
    if model.family == "linear":
        zero = sum(int((w == 0).sum()) for w in kernels)
    else:
        zero = sum(int((np.abs(w) < SPARSE_BELOW).sum()) for w in kernels)
    return zero / total


CONFUSION, PREDICTIONS, LEARNING_CURVE = "confusion.csv", "predictions.csv", "learning_curve.csv"
CONFUSION_PNG, RESIDUALS_PNG = "confusion_matrix.png", "residuals.png"


def evaluate(model, baseline, data, out: Path, class_names: list[str] | None = None) -> dict:
    """Score `model` and `baseline` on the test split; write plots and tables to `out`.

    Args:
        `class_names`: the name of each class index (classification); the index itself where missing.

    Returns:
        `{"test": {...}, "baseline": {...}, "n_test": int}` with the task metric and loss, and
        `"weights": {"sparsity": float}` for a model trained with an L1 penalty.
    """
    metric, _ = task_metric(data.task)
    test = {k: float(v) for k, v in model.evaluate(data.X_test, data.y_test).items()}
    base = {k: float(v) for k, v in baseline.evaluate(data.X_test, data.y_test).items()}
    pred = np.asarray(model.predict(data.X_test))
    y = np.asarray(data.y_test)
    if data.task == "regression":
        _regression_plots(y, pred.reshape(-1), out)
    else:
        n_classes = data.n_classes or 2
        names = [str(n) for n in (class_names or [])][:n_classes]
        names += [str(i) for i in range(len(names), n_classes)]
        _classification_plots(y, predicted_labels(pred, data.task), names, out)
    write_learning_curve(model.history, out / LEARNING_CURVE)
    out_dict = {"test": test, "baseline": base, "n_test": int(len(y))}
    if (sparsity := weight_sparsity(model)) is not None:
        out_dict["weights"] = {"sparsity": float(sparsity)}
    return out_dict


def seed_scores(ensemble, data) -> dict:
    """The test metrics of every final seed's model, their mean, spread and interval, and the seeds' average.

    Returns:
        `{"seeds": {metric: seed_summary}, "per_seed": [{"seed", metric...}], "ensemble": {...}, "single": {...}}`:
        `single` is the first seed's model (what `serve: single` serves), `ensemble` the average of all.
    """
    from pipeline.stats import seed_summary  # noqa: PLC0415

    per_seed = [{k: float(v) for k, v in m.evaluate(data.X_test, data.y_test).items()} for m in ensemble.members]
    return {
        "seeds": {k: seed_summary([s[k] for s in per_seed]) for k in per_seed[0]},
        "per_seed": [{"seed": seed, **s} for seed, s in zip(ensemble.seeds, per_seed)],
        "ensemble": {k: float(v) for k, v in ensemble.evaluate(data.X_test, data.y_test).items()},
        "single": per_seed[0],
    }


TEST_PREDICTIONS = "test_predictions.npz"  # the served model's test predictions, the paired test's input


def write_test_predictions(path: Path, task: str, pred: np.ndarray, y: np.ndarray) -> None:
    """Save the served model's predictions of the test split with the labels (npz: `task`, `pred`, `y`)."""
    from pipeline import fileio  # noqa: PLC0415

    with fileio.atomic_file(path) as f:
        np.savez(f, task=np.array(task), pred=np.asarray(pred), y=np.asarray(y))


def read_test_predictions(path: Path) -> dict:
    """What `write_test_predictions` saved (no pickle): `{"task": str, "pred": array, "y": array}`."""
    with np.load(path, allow_pickle=False) as z:
        return {"task": str(z["task"]), "pred": z["pred"], "y": z["y"]}


def write_learning_curve(history: dict[str, list[float]], path: Path) -> None:
    """Write the per-epoch history as rows (`epoch` from 1, one column per logged value) for `dvc plots`."""
    n = min((len(v) for v in history.values()), default=0)
    rows = {"epoch": list(range(1, n + 1))} | {k: [float(x) for x in v[:n]] for k, v in sorted(history.items())}
    pd.DataFrame(rows).to_csv(path, index=False)


def _classification_plots(y: np.ndarray, labels: np.ndarray, names: list[str], out: Path) -> None:
    from sklearn.metrics import classification_report, confusion_matrix  # noqa: PLC0415

    n_classes = len(names)
    named = np.asarray(names, dtype=object)
    pd.DataFrame({"actual": named[y.astype(int)], "predicted": named[labels.astype(int)]}).to_csv(
        out / CONFUSION, index=False
    )
    rep = classification_report(y, labels, labels=list(range(n_classes)), target_names=names, output_dict=True,
                                zero_division=0)  # fmt: skip
    pd.DataFrame(rep).transpose().to_csv(out / "per_class_report.csv")
    cm = confusion_matrix(y, labels, labels=list(range(n_classes)))
    plt = _plt()
    size = min(12, 3.5 + 0.35 * n_classes)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.grid(False)
    if n_classes <= 20:
        for i in range(n_classes):
            for j in range(n_classes):
                dark = cm[i, j] > cm.max() / 2
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ticks = list(range(n_classes))  # one tick per class, at its integer position, named
    rotate = 45 if max(len(n) for n in names) > 3 else 0
    ax.set_xticks(ticks, labels=names, rotation=rotate, ha="right" if rotate else "center")
    ax.set_yticks(ticks, labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(out / CONFUSION_PNG, dpi=80)
    plt.close(fig)


def _regression_plots(y: np.ndarray, pred: np.ndarray, out: Path) -> None:
    pd.DataFrame({"actual": y, "predicted": pred, "residual": y - pred}).to_csv(out / PREDICTIONS, index=False)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].scatter(y, pred, s=10)
    lims = [float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))]
    axes[0].plot(lims, lims, "k--", lw=1)
    axes[0].set_xlabel("actual")
    axes[0].set_ylabel("predicted")
    axes[1].scatter(pred, y - pred, s=10)
    axes[1].axhline(0, color="k", lw=1)
    axes[1].set_xlabel("predicted")
    axes[1].set_ylabel("residual")
    fig.suptitle("test predictions")
    fig.tight_layout()
    fig.savefig(out / RESIDUALS_PNG, dpi=80)
    plt.close(fig)
