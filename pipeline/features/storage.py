"""Byte-deterministic files of the feature store (npz and json, never pickle), written through `pipeline.fileio`."""

from __future__ import annotations

import zipfile
from pathlib import Path
import numpy as np
import scipy.sparse as sp

from pipeline import fileio

# A fixed timestamp for every zip entry: np.savez stamps the current time, which
# makes two saves of the same arrays differ byte for byte.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def read_manifest(directory: Path, format_version: int) -> dict:
    """Read `manifest.json` of a processed-data folder and verify every file it lists against its SHA-256.

    Raises:
        MissingInputError: the manifest or a listed file is missing, or a file was truncated or changed
            (the message names the file and the `tunebench preprocess` command that rebuilds it).
    """
    from pipeline import paths  # noqa: PLC0415
    from pipeline.errors import MissingInputError  # noqa: PLC0415

    where = Path(directory) / paths.MANIFEST
    man = fileio.read_json(where)
    redo = f"rerun `{paths.producer(where)}`"
    if man.get("format_version") != format_version:
        raise MissingInputError(f"{where}: processed-data format {man.get('format_version')!r} is not the "
                                f"format {format_version} this version reads; {redo}")  # fmt: skip
    files = man.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise MissingInputError(f"{where} is corrupt (no SHA-256 list under `files`); {redo}")
    for name, digest in sorted(files.items()):
        f = Path(directory) / name
        if not f.is_file():
            raise MissingInputError(f"{f} is missing (listed in {where}); {redo}")
        if fileio.file_digest(f) != digest:
            raise MissingInputError(f"{f} is corrupt (its SHA-256 differs from the one in {where}); {redo}")
    return man


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed `.npz` whose bytes depend only on the arrays.

    Entries are written in sorted key order with a fixed zip timestamp, so the
    same arrays always give the same file. The write is atomic.

    Args:
        `path`: destination file (conventionally ending in `.npz`).
        `arrays`: name -> array; object arrays are refused (no pickle).

    Raises:
        ValueError: for an object-dtype array.
    """
    with fileio.atomic_file(path) as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in sorted(arrays):
                arr = np.asarray(arrays[name])
                if arr.dtype == object:
                    raise ValueError(f"array {name!r} has dtype object; refusing to pickle it")
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, arr, allow_pickle=False)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an `.npz` file into memory (pickle disabled)."""
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def matrix_to_arrays(name: str, X: np.ndarray | sp.csr_matrix) -> dict[str, np.ndarray]:
    """Flatten a dense array or CSR matrix into named arrays for `write_npz`.

    Args:
        `name`: prefix of the entries (`X_train` -> `X_train` or `X_train.data`, ...).
        `X`: dense array or CSR matrix.

    Returns:
        `{name: X}` for dense input, or the CSR components `data`, `indices`,
        `indptr`, `shape` under `name.<component>`.
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        return {
            f"{name}.data": X.data,
            f"{name}.indices": X.indices,
            f"{name}.indptr": X.indptr,
            f"{name}.shape": np.asarray(X.shape, dtype=np.int64),
        }
    return {name: np.asarray(X)}


def arrays_to_matrix(name: str, arrays: dict[str, np.ndarray]) -> np.ndarray | sp.csr_matrix | None:
    """Inverse of `matrix_to_arrays`; None when `name` is absent."""
    if name in arrays:
        return arrays[name]
    if f"{name}.data" not in arrays:
        return None
    shape = tuple(int(v) for v in arrays[f"{name}.shape"])
    return sp.csr_matrix((arrays[f"{name}.data"], arrays[f"{name}.indices"], arrays[f"{name}.indptr"]), shape=shape)


def describe(X: np.ndarray | sp.csr_matrix | None) -> dict | None:
    """Return the manifest entry of a matrix: shape, dtype, layout and nnz."""
    if X is None:
        return None
    entry = {"shape": list(X.shape), "dtype": str(X.dtype), "format": "csr" if sp.issparse(X) else "dense"}
    entry["nnz"] = int(X.nnz) if sp.issparse(X) else int(np.count_nonzero(X))
    return entry
