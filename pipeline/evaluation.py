"""Test-split evaluation: the task metric and loss, against the trivial baseline, with plots.

Classification writes a confusion matrix (PNG, and CSV rows for
`dvc plots` with the confusion template) and a per-class report (CSV);
regression writes predicted-vs-actual rows and a residual plot.
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


def evaluate(model, baseline, data, out: Path) -> dict:
    """Score `model` and `baseline` on the test split; write plots and tables to `out`.

    Returns:
        `{"test": {...}, "baseline": {...}, "n_test": int}` with the task metric and loss.
    """
    metric, _ = task_metric(data.task)
    test = {k: float(v) for k, v in model.evaluate(data.X_test, data.y_test).items()}
    base = {k: float(v) for k, v in baseline.evaluate(data.X_test, data.y_test).items()}
    pred = np.asarray(model.predict(data.X_test))
    y = np.asarray(data.y_test)
    if data.task == "regression":
        _regression_plots(y, pred.reshape(-1), out)
    else:
        _classification_plots(y, predicted_labels(pred, data.task), data.n_classes or 2, out)
    return {"test": test, "baseline": base, "n_test": int(len(y))}


def _classification_plots(y: np.ndarray, labels: np.ndarray, n_classes: int, out: Path) -> None:
    from sklearn.metrics import classification_report, confusion_matrix  # noqa: PLC0415

    pd.DataFrame({"actual": y.astype(int), "predicted": labels.astype(int)}).to_csv(
        out / "confusion.csv", index=False
    )
    rep = classification_report(y, labels, labels=list(range(n_classes)), output_dict=True, zero_division=0)
    pd.DataFrame(rep).transpose().to_csv(out / "per_class_report.csv")
    cm = confusion_matrix(y, labels, labels=list(range(n_classes)))
    plt = _plt()
    size = min(12, 3 + 0.3 * n_classes)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    if n_classes <= 20:
        for i in range(n_classes):
            for j in range(n_classes):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=80)
    plt.close(fig)


def _regression_plots(y: np.ndarray, pred: np.ndarray, out: Path) -> None:
    pd.DataFrame({"actual": y, "predicted": pred, "residual": y - pred}).to_csv(out / "predictions.csv", index=False)
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
    fig.savefig(out / "residuals.png", dpi=80)
    plt.close(fig)
