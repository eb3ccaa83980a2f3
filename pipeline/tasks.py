"""Task kinds and the metric that judges each one."""

from __future__ import annotations

TASKS = ("binary", "multiclass", "regression")


def task_metric(task: str) -> tuple[str, str]:
    """Return the readable metric of a task and its Optuna direction.

    Args:
        `task`: one of `binary`, `multiclass`, `regression`.

    Returns:
        `("accuracy", "maximize")` for classification, `("mae", "minimize")` for regression.

    Raises:
        ValueError: for an unknown task.
    """
    if task in ("binary", "multiclass"):
        return "accuracy", "maximize"
    if task == "regression":
        return "mae", "minimize"
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def is_better(candidate: float, reference: float, direction: str, margin: float = 0.0) -> bool:
    """True when `candidate` beats `reference` by at least `margin` in `direction`."""
    if direction == "maximize":
        return candidate >= reference + margin and candidate > reference
    return candidate <= reference - margin and candidate < reference
