"""Record the learning curves the replay benchmark answers from (`pipeline.models.replay`).

For every problem, every point of a dense grid over its space is trained with the problem's
model family for the epochs of a full trial, with `--seeds` training seeds (and, on K-fold data,
on every fold), and its validation and test score is kept after every epoch. The test score is
that of the epoch's model on the untouched test split (on K-fold data, the fold's model). A run
that diverges keeps NaN from the epoch it diverged at. Each problem is saved to
`benchmarks/replay/curves/<problem>.npz` (float16 curves, a few hundred KB) with its grid,
task, metric and the measured seconds of one training epoch.

    python -m benchmarks.replay.record --project /tmp/rp               # every problem (~45 min of one core)
    python -m benchmarks.replay.record --project /tmp/rp --problems digits_numpy_mlp --seeds 1

`--project` is a tunebench project whose `data/processed/<dataset>` exist (`tunebench fetch` and
`tunebench preprocess` of the datasets below, with this repository's `params.yaml`).
"""

from __future__ import annotations

import itertools
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.runner import parser
from pipeline.models.replay import CURVES, save_curves

# problem -> dataset, family, fixed hyperparameters, grid (name -> values, log), epochs of a full trial
PROBLEMS: dict[str, dict] = {
    "digits_numpy_mlp": {
        "dataset": "digits",
        "model": "numpy_mlp",
        "fixed": {"units": [100, 50], "optimizer": "adam", "batch_size": 100, "lr_decay": 0.95},
        "grid": {
            "lr": {"values": np.geomspace(1e-4, 1e-1, 8).tolist(), "log": True},
            "l2": {"values": np.geomspace(1e-6, 1e-1, 7).tolist(), "log": True},
            "dropout": {"values": [0.0, 0.125, 0.25, 0.375, 0.5], "log": False},
        },
        "epochs": 10,
    },
    "digits_keras_mlp": {
        "dataset": "digits",
        "model": "keras_mlp",
        "fixed": {"units": 64, "depth": 2, "optimizer": "adam", "batch_size": 64},
        "grid": {
            "lr": {"values": np.geomspace(1e-4, 1e-1, 7).tolist(), "log": True},
            "l2": {"values": np.geomspace(1e-7, 1e-2, 6).tolist(), "log": True},
            "dropout": {"values": [0.0, 0.25, 0.5], "log": False},
        },
        "epochs": 10,
    },
    "rt_polarity_keras_mlp": {
        "dataset": "rt_polarity",
        "model": "keras_mlp",
        "fixed": {"units": 16, "depth": 2, "optimizer": "rmsprop", "batch_size": 512},
        "grid": {
            "lr": {"values": np.geomspace(1e-4, 1e-1, 5).tolist(), "log": True},
            "l2": {"values": np.geomspace(1e-7, 1e-2, 4).tolist(), "log": True},
            "dropout": {"values": [0.0, 0.25, 0.5], "log": False},
        },
        "epochs": 6,
    },
    "boston_keras_mlp": {
        "dataset": "boston_housing",
        "model": "keras_mlp",
        "fixed": {"units": 64, "depth": 2, "optimizer": "rmsprop", "batch_size": 16},
        "grid": {
            "lr": {"values": np.geomspace(1e-4, 3e-2, 5).tolist(), "log": True},
            "l2": {"values": np.geomspace(1e-7, 1e-1, 5).tolist(), "log": True},
        },
        "epochs": 20,
    },
}


def _test_hook(family, data):
    """A family like `family` that also scores the test split after every epoch (`scores` collects them)."""
    from pipeline.models.base import evaluate_predictions  # noqa: PLC0415

    metric_of = {"regression": "mae"}.get(data.task, "accuracy")
    scores: list[float] = []
    model_class = family.model_class

    def score(model) -> None:
        scores.append(evaluate_predictions(data.task, model.predict(data.X_test), data.y_test)[metric_of])

    if family.name == "numpy_mlp":

        class Hooked(type(family)):
            @staticmethod
            def _val_loss(net, X_val, y_val, default):  # called once per epoch, with the network being trained
                score(model_class(net=net, hparams={}, history={}, best_epoch=0, task=data.task,
                                  n_classes=data.n_classes))  # fmt: skip
                return type(family)._val_loss(net, X_val, y_val, default)

    else:

        class Hooked(type(family)):
            def build_model(self, hp, input_shape, task, n_classes):
                self.model = super().build_model(hp, input_shape, task, n_classes)
                return self.model

        hooked = Hooked()
        hooked.score_now = lambda: score(model_class(model=hooked.model, hparams={}, history={}, best_epoch=0,
                                                     task=data.task, n_classes=data.n_classes))  # fmt: skip
        return hooked, scores
    hooked = Hooked()
    hooked.score_now = None
    return hooked, scores


def record(name: str, spec: dict, project: Path, seeds: int, out: Path) -> Path:
    """Train every grid point of problem `name` and save its curves; returns the file."""
    from pipeline.features import ProcessedData, holdout_or_folds  # noqa: PLC0415
    from pipeline.models import DivergedError, get_family  # noqa: PLC0415
    from pipeline.models.hparams import resolve_hparams  # noqa: PLC0415
    from pipeline.tasks import task_metric  # noqa: PLC0415

    data = ProcessedData.load(project / "data" / "processed" / spec["dataset"])
    metric, direction = task_metric(data.task)
    splits = list(holdout_or_folds(data))
    names = list(spec["grid"])
    points = list(itertools.product(*(spec["grid"][n]["values"] for n in names)))
    epochs = spec["epochs"]
    shape = (len(points), seeds, len(splits), epochs)
    val, test = np.full(shape, np.nan, np.float32), np.full(shape, np.nan, np.float32)
    family, test_scores = _test_hook(get_family(spec["model"]), data)
    started, trained_epochs = time.perf_counter(), 0
    for p, values in enumerate(points):
        hp = resolve_hparams(spec["model"], data.task, spec["fixed"], dict(zip(names, values, strict=True)))
        for s, (f, (x_tr, y_tr, x_va, y_va)) in itertools.product(range(seeds), enumerate(splits)):
            curve: list[float] = []
            test_scores.clear()

            def on_epoch(epoch, logs, curve=curve):
                curve.append(logs[f"val_{metric}"])
                if family.score_now is not None:
                    family.score_now()

            try:
                family.train(hp, x_tr, y_tr, x_va, y_va, task=data.task, n_classes=data.n_classes, epochs=epochs,
                             seed=s * len(splits) + f, on_epoch=on_epoch)  # fmt: skip
            except DivergedError:
                pass  # NaN from the epoch it diverged at
            n = len(curve)
            val[p, s, f, :n], test[p, s, f, :n] = curve, test_scores[:n]
            trained_epochs += n
        if p % 10 == 9 or p == len(points) - 1:
            took = time.perf_counter() - started
            print(f"{name}: {p + 1}/{len(points)} points, {took:.0f} s", flush=True)
    meta = {
        "problem": name, "dataset": spec["dataset"], "model": spec["model"], "task": data.task, "metric": metric,
        "direction": direction, "epochs": epochs, "seeds": seeds, "folds": len(splits), "fixed": spec["fixed"],
        "grid": spec["grid"], "epoch_s": round((time.perf_counter() - started) / max(trained_epochs, 1), 5),
        "command": shlex.join(["python", "-m", "benchmarks.replay.record", *sys.argv[1:]]),
    }  # fmt: skip
    path = out / f"{name}.npz"
    save_curves(path, meta, val, test)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, None)  # its output is the curves, not a result
    ap.add_argument("--project", type=Path, required=True, help="a project with the datasets' processed data")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--seeds", type=int, default=2, help="training seeds per grid point")
    ap.add_argument("--out", type=Path, default=CURVES)
    args = ap.parse_args(argv)
    from pipeline.models.runtime import configure_tensorflow  # noqa: PLC0415

    configure_tensorflow(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.problems:
        t0 = time.perf_counter()
        path = record(name, PROBLEMS[name], args.project.resolve(), args.seeds, args.out)
        print(f"saved {path} ({path.stat().st_size / 1024:.0f} KB, {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
