"""Datasets bundled with scikit-learn: no file to fetch, a SHA-256 of the arrays instead."""

from __future__ import annotations

import hashlib
from importlib import metadata
from typing import Any

import numpy as np

from .errors import HashMismatchError
from .integrity import now_iso
from .spec import DatasetSpec, FileSet, RawData


def _bunch(fs: FileSet):
    """Call the scikit-learn loader named by `fs.packaged` (`sklearn:<loader>`)."""
    from sklearn import datasets  # noqa: PLC0415 - only packaged datasets need it

    library, loader = fs.packaged.split(":", 1)
    if library != "sklearn" or not loader.startswith("load_"):
        raise ValueError(f"unsupported packaged source {fs.packaged!r}")
    return getattr(datasets, loader)()


def packaged_version(fs: FileSet) -> str:
    """Return e.g. `scikit-learn 1.9.1` for a packaged file set."""
    return f"scikit-learn {metadata.version('scikit-learn')}"


def arrays_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 over each array's dtype, shape and C-order bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fetch_packaged(fs: FileSet) -> dict[str, Any]:
    """Return the manifest entry of a packaged dataset (loader, library version, array hash)."""
    b = _bunch(fs)
    loader = fs.packaged.split(":", 1)[1]
    return {
        "name": f"{loader}()",
        "sha256": arrays_sha256(b.data, b.target),
        "size": int(b.data.nbytes + b.target.nbytes),
        "pin": {"algorithm": "sha256", "digest": None, "of": "array bytes (data, target)"},
        "source": {"kind": "packaged", "location": packaged_version(fs)},
        "fetched_at": now_iso(),
    }


def load_packaged(spec: DatasetSpec, fs: FileSet, manifest: dict[str, Any]) -> RawData:
    """Load a packaged dataset and check its arrays against the hash the manifest recorded.

    Raises:
        HashMismatchError: the installed library now ships different data; fetch again.
    """
    b = _bunch(fs)
    actual = arrays_sha256(b.data, b.target)
    expected = (manifest.get("files") or [{}])[0].get("sha256")
    if actual != expected:
        raise HashMismatchError(
            f"{spec.name}: the arrays of {fs.packaged} ({packaged_version(fs)}) have SHA-256 {actual}, "
            f"the manifest recorded {expected}; rerun `tunebench fetch --dataset {spec.name}` to accept the "
            "installed version",
            file=fs.packaged, expected=str(expected), actual=actual, source=packaged_version(fs),
        )  # fmt: skip
    y = b.target.astype(np.float64 if spec.task == "regression" else np.int64)
    meta = {"feature_names": list(b.feature_names), "source": packaged_version(fs), "fileset": fs.label}
    if "target_names" in b:
        meta["label_names"] = [str(t) for t in b.target_names]
    return RawData(spec.name, spec.task, "tabular", np.asarray(b.data, dtype=np.float64), y,
                   n_classes=spec.n_classes, meta=meta)  # fmt: skip
