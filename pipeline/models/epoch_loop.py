"""Per-epoch bookkeeping shared by every family: history, divergence, callbacks, schedules.

`EpochLoop.end_epoch` is called once per epoch with that epoch's logs; it records the
history, raises `DivergedError` for a non-finite loss, calls the user's `on_epoch`, tracks
the best epoch, and works out the next learning rate and whether to stop early.
"""

from __future__ import annotations

from pipeline.models.base import OnEpoch, check_finite
from pipeline.tasks import task_metric


class EpochLoop:
    """State of one training run across epochs.

    Attributes:
        `history`: per-epoch values of `keys`.
        `keys`: `loss`, the task metric, and with validation `val_loss`, `val_<metric>`.
        `best_epoch`: 1-based epoch with the best validation metric (the last one without validation).
        `improved`: True when the latest epoch became the best one.
        `lr`: learning rate for the next epoch (None when the family has none).
        `stop`: True when early stopping asks to end training.
    """

    def __init__(self, task: str, hp: dict, *, has_val: bool, on_epoch: OnEpoch | None = None):
        """Set up the loop.

        Args:
            `task`: the task (decides the metric and its direction).
            `hp`: resolved hyperparameters; reads `lr`, `lr_decay`, `lr_schedule`,
                `lr_step_epochs`, `lr_patience`, `early_stopping` when present.
            `has_val`: whether logs carry validation values.
            `on_epoch`: the user's per-epoch callback.
        """
        self.metric, self.direction = task_metric(task)
        self.keys = ["loss", self.metric] + (["val_loss", f"val_{self.metric}"] if has_val else [])
        self.history: dict[str, list[float]] = {k: [] for k in self.keys}
        self.has_val = has_val
        self.on_epoch = on_epoch
        self.base_lr = hp.get("lr")
        self.lr = self.base_lr
        self.decay = hp.get("lr_decay") or 1.0
        self.schedule = hp.get("lr_schedule") or "none"
        self.step_epochs = int(hp.get("lr_step_epochs") or 5)
        self.lr_patience = int(hp.get("lr_patience") or 2)
        self.patience = hp.get("early_stopping") if has_val else None
        self.best_epoch = 0
        self.improved = False
        self.stop = False
        self._best = None
        self._plateau_best = float("inf")
        self._plateau_wait = 0
        self._plateau_factor = 1.0

    def end_epoch(self, epoch: int, logs: dict) -> None:
        """Record epoch `epoch` (0-based) and decide what comes next.

        Raises:
            DivergedError: when `loss` or `val_loss` is NaN or infinite.
            Exception: whatever `on_epoch` raises, unchanged.
        """
        logs = {k: float(logs[k]) for k in self.keys}
        for k in self.keys:
            self.history[k].append(logs[k])
        check_finite(epoch, logs)
        if self.on_epoch is not None:
            self.on_epoch(epoch, dict(logs))
        self._track_best(epoch, logs)
        self._next_lr(epoch, logs)

    def _track_best(self, epoch: int, logs: dict) -> None:
        if not self.has_val:
            self.best_epoch, self.improved = epoch + 1, True
            return
        value = logs[f"val_{self.metric}"]
        if self._best is None:
            self.improved = True
        else:
            self.improved = value > self._best if self.direction == "maximize" else value < self._best
        if self.improved:
            self._best, self.best_epoch = value, epoch + 1
        if self.patience is not None and epoch + 1 - self.best_epoch >= int(self.patience):
            self.stop = True

    def _next_lr(self, epoch: int, logs: dict) -> None:
        if self.base_lr is None:
            return
        factor = self.decay ** (epoch + 1)
        if self.schedule == "step":
            factor *= 0.5 ** ((epoch + 1) // self.step_epochs)
        elif self.schedule == "plateau":
            watched = logs["val_loss" if self.has_val else "loss"]
            if watched < self._plateau_best:
                self._plateau_best, self._plateau_wait = watched, 0
            else:
                self._plateau_wait += 1
                if self._plateau_wait >= self.lr_patience:
                    self._plateau_factor *= 0.5
                    self._plateau_wait = 0
            factor *= self._plateau_factor
        self.lr = self.base_lr * factor
