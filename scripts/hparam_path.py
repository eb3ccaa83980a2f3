"""Which files of `pipeline/` one hyperparameter's value passes through, traced on a tiny real run.

    PYTHONPATH=. python scripts/hparam_path.py [NAME] [--why]      # NAME defaults to lr

It builds a throwaway project in a temporary folder (scikit-learn's digits, offline), with two benchmarks
(`keras_mlp` and `numpy_mlp`) that search NAME over two rounds (the second narrowed from the first, enqueuing
the first's best) with robust selection, and runs parsing params.yaml, fetch, preprocess, search (one worker:
the trials run in this process), train_best, evaluate and report under `sys.setprofile`.

A file holds the value when one of its functions has, as an argument, a local variable or its return value:
at depth 0, the value itself (a sampled number seen under the key NAME, or that number as text: MLflow's
params), a dict mapping NAME to it (a hyperparameter dict, a trial's params, logged params) or a pydantic
model with a field NAME (validated hyperparameters); at depth n, JSON-like data (dicts, lists, tuples)
holding one of those n levels down (a search result, a trial's user attrs, a file's contents). A space
(NAME -> its range) names the key but holds no value. Objects that merely contain such data (the parsed
params.yaml, a trial, a trial context) are not looked into: the functions that take the dict out of them
count. It prints each file with its depth (`--why`: the first function seen holding it there, and what held
it), then how many files hold it at each depth; depth 0 is the count of the files the value crosses.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = str(ROOT / "pipeline") + os.sep
DEEPEST = 4  # containers looked into around the value
RANGES = {"lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True}, "l2": {"low": 1.0e-7, "high": 1.0e-2, "log": True}}


def project(name: str) -> dict:
    """The throwaway params.yaml: digits (PCA), a Keras and a NumPy MLP searching `name` (and l2) in two rounds."""
    space = {k: RANGES.get(k, RANGES["lr"]) for k in (name, "l2")}
    rounds = {
        "coarse": {"n_trials": 3, "epochs": 1, "pruner": "none"},
        "fine": {"n_trials": 2, "epochs": 1, "pruner": "none", "top_quantile": 0.5, "enqueue_best": 1},
    }
    selection = {"top_k": 2, "repeats": 1}
    bench = {
        "dataset": "digits",
        "space": space,
        "rounds": rounds,
        "final_epochs": 1,
        "final_seeds": 1,
        "selection": selection,
    }
    digits = {
        "kind": "pca",
        "n_components": 16,
        "val_fraction": 0.25,
        "test_fraction": 0.2,
        "seed": 42,
        "max_rows": 400,
    }
    return {
        "tracking": {"uri": "sqlite:///mlflow.db", "log_models": False},
        "search": {"sampler": "random", "seed": 0, "workers": 1, "storage": None},
        "promote": {"min_improvement": 0.0},
        "datasets": {"digits": {"source": "builtin", "preprocess": digits}},
        "benchmarks": {
            "digits_keras_mlp": {**bench, "model": "keras_mlp", "hparams": {"units": 8, "depth": 1, "batch_size": 64}},
            "digits_numpy_mlp": {**bench, "model": "numpy_mlp", "hparams": {"units": [8], "batch_size": 64}},
        },
    }


class Tracer:
    """The profile function: records the files of `pipeline/` whose frames hold the value of `name`."""

    def __init__(self, name: str):
        self.name = name
        self.values: set[float] = set()  # every number seen under the key `name`
        self.texts: set[str] = set()
        self.files: dict[str, tuple[int, str]] = {}  # file -> (depth, the first function seen holding it there)

    def __call__(self, frame, event, arg):
        if event != "return" or not frame.f_code.co_filename.startswith(PACKAGE):
            return
        file = frame.f_code.co_filename
        seen = self.files.get(file, (DEEPEST + 1, ""))[0]
        if seen == 0:
            return
        for key, value in [*frame.f_locals.items(), ("<return>", arg)]:
            depth = self.depth(value, seen - 1)
            if depth is not None:
                seen = depth
                self.files[file] = (depth, f"{frame.f_code.co_name}: {key}")

    def depth(self, x, deepest: int) -> int | None:
        """How deep in `x` the value lies, up to `deepest`: 0 for the value itself (or its text), a dict with the
        key `name` or a pydantic model with that field; 1 for a dict or list holding one of those; ...; or None."""
        if isinstance(x, float) and not isinstance(x, bool):
            return 0 if x in self.values else None
        if isinstance(x, str):
            return 0 if x in self.texts else None
        if isinstance(x, dict):
            if isinstance(x.get(self.name), float | str):  # not a space's range: that names the key, not a value
                self.learn(x[self.name])
                return 0
            inner = list(x.values())[:200]
        elif isinstance(x, list | tuple):
            inner = x[:200]
        else:
            fields = getattr(type(x), "model_fields", None)  # a pydantic model
            if isinstance(fields, dict) and self.name in fields:
                self.learn(getattr(x, self.name, None))
                return 0
            return None
        if deepest < 1:
            return None
        found = [d for v in inner if (d := self.depth(v, deepest - 1)) is not None]
        return 1 + min(found) if found else None

    def learn(self, value) -> None:
        """Track a number seen under the key `name`, when sampled: a round default (1e-3) could be any constant."""
        if isinstance(value, float) and len(repr(value)) > 8:
            self.values.add(value)
            self.texts.update({str(value), repr(value)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="lr", help="the hyperparameter (a number searched by the space)")
    parser.add_argument("--why", action="store_true", help="name the first function seen holding it, per file")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from pipeline import stages  # noqa: PLC0415
    from pipeline.config import load_params  # noqa: PLC0415

    tracer = Tracer(args.name)
    with tempfile.TemporaryDirectory(prefix="hparam-path-") as tmp:
        os.chdir(tmp)
        Path("params.yaml").write_text(yaml.safe_dump(project(args.name), sort_keys=False))
        threading.setprofile(tracer)
        sys.setprofile(tracer)
        try:
            params = load_params("params.yaml")
            stages.fetch(params, "digits")
            stages.preprocess(params, "digits")
            for key in params.benchmarks:
                stages.search(params, key)
                stages.train_best(params, key)
                stages.evaluate(params, key)
            stages.report(params)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
            os.chdir(ROOT)
    files = sorted((d, str(Path(f).relative_to(ROOT)), why) for f, (d, why) in tracer.files.items())
    for d, f, why in files:
        print(f"{d} {f}  ({why})" if args.why else f"{d} {f}")
    for d in range(DEEPEST + 1):
        print(f"depth <= {d}: {sum(1 for x in files if x[0] <= d)} files of pipeline/ hold `{args.name}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
