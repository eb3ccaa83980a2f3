"""The `replay` family: a benchmarking stand-in that answers from recorded learning curves.

Not a model for users. `benchmarks/replay/record.py` trains every point of a dense grid over a
problem's space and saves, per grid point, training seed, fold and epoch, the validation and test
score (`benchmarks/replay/curves/<problem>.npz`). A search of `model: replay` then runs its real
code (rounds, narrowing, pruning, budget, seeds, tracking) in milliseconds a trial: `train` looks
up the grid point nearest to the configuration, axis by axis (in log space on log axes), and
plays its recorded validation curve through `on_epoch` epoch by epoch, so a pruner can stop it;
an epoch that diverged when recorded raises `DivergedError` there. The training seed picks the
recorded run: fold `seed % folds` (a trial trains fold k with seed + k), and a hash of `seed // folds`
one of the recorded training seeds (so seeds far apart, such as robust selection's, differ).
Recordings keep no losses: `loss` and `val_loss` carry the validation error (1 - accuracy, or the MAE).
The trained model predicts nothing; `evaluate` answers the recorded test score at its best epoch.

Hyperparameters: `curves`, the recording (a path, or a problem name under
`benchmarks/replay/curves/`), and the grid's axes among `lr`, `l2`, `dropout`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.models.base import DivergedError, ModelFamily, TrainedModel
from pipeline.models.epoch_loop import EpochLoop
from pipeline.tasks import task_metric

CURVES = Path(__file__).resolve().parents[2] / "benchmarks" / "replay" / "curves"


@dataclass(frozen=True)
class Curves:
    """One problem's recording: `val` and `test` scores shaped (grid point, seed, fold, epoch), NaN once diverged.

    `meta`: problem, task, metric, direction, epochs, seeds, folds, fixed hyperparameters, `grid`
    (axis name -> `values`, `log`; points in row-major order of the axes) and `epoch_s`.
    """

    meta: dict
    val: np.ndarray
    test: np.ndarray

    @property
    def axes(self) -> list[str]:
        """The grid's axis names, in the order of the points."""
        return list(self.meta["grid"])

    @property
    def maximize(self) -> bool:
        """True when a higher score is better."""
        return self.meta["direction"] == "maximize"

    def index(self, config: dict) -> int:
        """The grid point nearest to `config`, axis by axis (log distance on log axes).

        Raises:
            ValueError: `config` lacks one of the axes.
        """
        missing = [a for a in self.axes if config.get(a) is None]
        if missing:
            raise ValueError(f"replay curves of {self.meta['problem']} need {', '.join(missing)} (the grid's axes)")
        nearest = []
        for name, axis in self.meta["grid"].items():
            values = np.asarray(axis["values"], dtype=float)
            x = float(config[name])
            if axis["log"]:
                values, x = np.log(values), np.log(max(x, 1e-300))
            nearest.append(int(np.argmin(np.abs(values - x))))
        return int(np.ravel_multi_index(nearest, [len(a["values"]) for a in self.meta["grid"].values()]))

    def point(self, index: int) -> dict:
        """The configuration of grid point `index`."""
        grid = self.meta["grid"]
        at = np.unravel_index(index, [len(a["values"]) for a in grid.values()])
        return {name: grid[name]["values"][int(i)] for name, i in zip(grid, at, strict=True)}

    def run(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The recorded (validation, test) curves that training seed `seed` replays at grid point `index`."""
        folds = self.meta["folds"]
        s = int(np.random.SeedSequence(seed // folds).generate_state(1)[0]) % self.meta["seeds"]
        f = seed % folds
        return self.val[index, s, f], self.test[index, s, f]

    @functools.cached_property
    def quality(self) -> np.ndarray:
        """Every grid point's expected test score: per training seed, the test score (mean over folds) at the
        best epoch of the validation curve (mean over folds), averaged over seeds; a run that diverged at its
        first epoch scores the grid's worst."""
        worst = -np.inf if self.maximize else np.inf
        val = np.nan_to_num(self.val.mean(axis=2), nan=worst)  # (point, seed, epoch)
        best = np.argmax(val, axis=2) if self.maximize else np.argmin(val, axis=2)
        test = np.take_along_axis(self.test.mean(axis=2), best[..., None], axis=2)[..., 0].mean(axis=1)
        return np.nan_to_num(test, nan=np.nanmin(test) if self.maximize else np.nanmax(test))


def save_curves(path: Path, meta: dict, val: np.ndarray, test: np.ndarray) -> None:
    """Write a recording (`Curves`) as a compressed `.npz`."""
    np.savez_compressed(path, val=val.astype(np.float32), test=test.astype(np.float32), meta=np.array(json.dumps(meta)))


@functools.lru_cache(maxsize=16)
def load_curves(name: str) -> Curves:
    """The recording at path `name`, or of problem `name` under `CURVES` (kept for the next call)."""
    path = Path(name) if name.endswith(".npz") else CURVES / f"{name}.npz"
    if not path.is_file():
        raise ValueError(f"replay curves {name!r}: no file {path}; record it with `python -m benchmarks.replay.record`")
    with np.load(path, allow_pickle=False) as z:
        return Curves(json.loads(str(z["meta"])), z["val"], z["test"])


@dataclass(kw_only=True, eq=False)
class ReplayModel(TrainedModel):
    """A replayed run: its history and its recorded test score at the best epoch (`test_score`)."""

    family = "replay"
    test_score: float | None = None

    def predict(self, X) -> np.ndarray:
        """A replay has no model to predict with.

        Raises:
            TypeError: always.
        """
        raise TypeError("a replay model answers from recorded curves and cannot predict; use it to benchmark searches")

    def evaluate(self, X, y) -> dict[str, float]:
        """The recorded test score at the best epoch (the data passed in is not read)."""
        metric, _ = task_metric(self.task)
        return {metric: self.test_score, "loss": self.test_score if metric == "mae" else 1.0 - self.test_score}

    def _json_state(self) -> dict:
        return {"test_score": self.test_score}

    def _load_state(self, dir: Path, state: dict) -> None:
        self.test_score = state.get("test_score")


class Replay(ModelFamily):
    """Answers `train` from a recording (see the module docstring)."""

    model_class = ReplayModel

    def fit(self, hp, X_train, y_train, X_val, y_val, *, task, n_classes, epochs, seed, on_epoch):
        """Replay the recorded run nearest to `hparams`; see `ModelFamily.train`.

        Raises:
            ValueError: no `curves`, a grid axis missing, another task, or more epochs than were recorded.
            DivergedError: the recorded run diverged at an epoch replayed.
        """
        if not hp["curves"]:
            raise ValueError("the replay family needs `curves`: a recording of `python -m benchmarks.replay.record`")
        curves = load_curves(hp["curves"])
        if curves.meta["task"] != task or epochs > curves.meta["epochs"]:
            raise ValueError(f"replay curves {hp['curves']!r} hold {curves.meta['epochs']} epochs of a "
                             f"{curves.meta['task']} task, not {epochs} of a {task} task")  # fmt: skip
        index = curves.index(hp)
        val, test = curves.run(index, seed)
        metric = curves.meta["metric"]
        loop = EpochLoop(task, {}, has_val=X_val is not None, on_epoch=on_epoch)
        for epoch in range(int(epochs)):
            if not np.isfinite(val[epoch]):
                raise DivergedError(f"training diverged at epoch {epoch + 1} (recorded)", epoch=epoch + 1)
            error = float(val[epoch]) if metric == "mae" else 1.0 - float(val[epoch])
            loop.end_epoch(epoch, {"loss": error, metric: float(val[epoch]), "val_loss": error,
                                   f"val_{metric}": float(val[epoch])})  # fmt: skip
        return ReplayModel(hparams=hp, history=loop.history, best_epoch=loop.best_epoch, task=task,
                           n_classes=n_classes, test_score=float(test[loop.best_epoch - 1]))  # fmt: skip
