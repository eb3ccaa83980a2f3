"""pipeline.features: save/load without pickle, byte-identical re-saves, transform_raw on raw input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_diabetes, load_digits

from pipeline.datasets import RawData as Raw
from pipeline.features import ProcessedData, Transformer, preprocess
from pipeline.features import storage


WORDS = "good bad great awful plot acting film boring moving fun dull superb".split()


def _text_raw():
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(WORDS, size=rng.integers(0, 9))) for _ in range(80)]
    y = np.arange(80) % 2
    return Raw("rt", "binary", "text", docs[:60], y[:60], docs[60:], y[60:], n_classes=2)


def _sequence_raw():
    rng = np.random.default_rng(1)
    x = np.empty(70, dtype=object)
    x[:] = [np.concatenate([[1], rng.integers(3, 40, size=rng.integers(0, 15))]).astype(np.int32) for _ in range(70)]
    return Raw("imdb", "binary", "sequences", x[:50], np.arange(50) % 2, x[50:], np.arange(20) % 2, n_classes=2)


def _tabular_raw():
    d = load_diabetes()
    return Raw("boston", "regression", "tabular", d.data[:300], d.target[:300], d.data[300:], d.target[300:])


def _image_raw():
    x = np.random.default_rng(2).integers(0, 256, size=(90, 5, 4), dtype=np.uint8)
    y = np.arange(90) % 3
    return Raw("mnist", "multiclass", "images", x[:70], y[:70], x[70:], y[70:], n_classes=3)


CASES = {
    "text": (_text_raw, {"kind": "multi_hot", "num_words": 12}),
    "sequences": (_sequence_raw, {"kind": "multi_hot", "num_words": 30}),
    "tabular_kfold": (_tabular_raw, {"kind": "standardize", "kfold": 4}),
    "pca": (
        lambda: Raw("digits", "multiclass", "tabular", load_digits().data, load_digits().target, n_classes=10),
        {"kind": "pca", "n_components": 0.8, "whiten": True},
    ),  # fmt: skip
    "images": (_image_raw, {"kind": "images", "mean_subtraction": True}),
}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if sp.issparse(a):
        return sp.issparse(b) and a.shape == b.shape and a.dtype == b.dtype and (a != b).nnz == 0
    return a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_load_round_trip(case, tmp_path):
    make, cfg = CASES[case]
    data = preprocess(make(), cfg)
    data.save(tmp_path, input_hashes={"raw.npz": "abc123"})
    back = ProcessedData.load(tmp_path)
    for key in ("X_train", "X_val", "X_test", "X_train_base", "y_train", "y_val", "y_test"):
        assert _equal(getattr(data, key), getattr(back, key)), key
    assert back.input_shape == data.input_shape and back.task == data.task and back.n_classes == data.n_classes
    assert (back.folds is None) == (data.folds is None)
    for (a, b), (c, d) in zip(data.folds or [], back.folds or []):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    x_test = make().x_test
    if x_test is not None:
        assert _equal(back.transformer.transform_raw(x_test), data.X_test)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("case", sorted(CASES))
def test_resave_is_byte_identical(case, tmp_path):
    make, cfg = CASES[case]
    preprocess(make(), cfg).save(tmp_path / "a", input_hashes={"x": "1"})
    preprocess(make(), cfg).save(tmp_path / "b", input_hashes={"x": "1"})
    first = _files(tmp_path / "a")
    assert first == _files(tmp_path / "b")
    ProcessedData.load(tmp_path / "a").save(tmp_path / "a", input_hashes={"x": "1"})
    assert first == _files(tmp_path / "a")


def test_manifest_describes_the_arrays(tmp_path):
    data = preprocess(_text_raw(), CASES["text"][1])
    data.save(tmp_path, input_hashes={"rt.csv.bz2": "26b5"})
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["features"]["X_train"] == {"shape": list(data.X_train.shape), "dtype": "float32", "format": "csr",
                                          "nnz": int(data.X_train.nnz)}  # fmt: skip
    assert man["labels"]["y_test"]["dtype"] == "int64" and man["input_hashes"] == {"rt.csv.bz2": "26b5"}
    assert man["params"]["num_words"] == 12 and man["transformer"]["kind"] == "multi_hot"
    assert set(man["files"]) == {"features.npz", "labels.npz", "transformer/transformer.json",
                                 "transformer/vocabulary.json"}  # fmt: skip
    vocab = json.loads((tmp_path / "transformer" / "vocabulary.json").read_text())
    assert vocab["index_from"] == 3 and vocab["words"] == data.transformer.vocab.words


def test_input_hashes_default_to_the_raw_files(tmp_path):
    raw = _tabular_raw()
    raw.meta["files"] = {"boston_housing.npz": "f553"}
    preprocess(raw, {"kind": "standardize"}).save(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["input_hashes"] == {"boston_housing.npz": "f553"}
    assert ProcessedData.load(tmp_path).input_hashes == {"boston_housing.npz": "f553"}


def test_pca_save_writes_the_variance_curve_and_plot(tmp_path):
    make, cfg = CASES["pca"]
    data = preprocess(make(), cfg)
    names = data.transformer.save(tmp_path)
    assert "explained_variance.png" in names
    assert (tmp_path / "explained_variance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = json.loads((tmp_path / "explained_variance.json").read_text())
    assert curve["k"] == data.input_shape[0] and curve["cumulative"][curve["k"] - 1] >= 0.8
    # a different transformer saved over it removes the stale PCA files
    preprocess(_tabular_raw(), {"kind": "standardize"}).transformer.save(tmp_path)
    assert not (tmp_path / "explained_variance.png").exists()
    assert Transformer.load(tmp_path).kind == "standardize"


def test_transform_raw_matches_processed_test_for_served_inputs(tmp_path):
    raw = _image_raw()
    data = preprocess(raw, {"kind": "pca", "n_components": 6})
    data.transformer.save(tmp_path)
    served = Transformer.load(tmp_path)
    as_floats = raw.x_test.astype(np.float64)  # what pipeline.serving.to_raw hands over
    np.testing.assert_allclose(served.transform_raw(as_floats), data.X_test, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.transform_raw(as_floats[..., None]), data.X_test, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="per-sample shape"):
        served.transform_raw(np.zeros((2, 4, 5)))
    with pytest.raises(TypeError, match="not a single string"):
        preprocess(_text_raw(), {"kind": "multi_hot"}).transformer.transform_raw("one review")


def test_write_npz_is_deterministic_and_refuses_objects(tmp_path):
    arrays = {"b": np.arange(5, dtype=np.int32), "a": np.eye(2, dtype=np.float32)}
    storage.write_npz(tmp_path / "x.npz", arrays)
    first = (tmp_path / "x.npz").read_bytes()
    storage.write_npz(tmp_path / "x.npz", dict(reversed(arrays.items())))
    assert (tmp_path / "x.npz").read_bytes() == first
    loaded = storage.read_npz(tmp_path / "x.npz")
    assert all(np.array_equal(loaded[k], v) for k, v in arrays.items())
    with pytest.raises(ValueError, match="object"):
        storage.write_npz(tmp_path / "y.npz", {"o": np.array([[1], [2, 3]], dtype=object)})
    assert not (tmp_path / "y.npz").exists()
