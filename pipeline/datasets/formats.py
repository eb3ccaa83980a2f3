"""Safe parsers for the file formats: Keras npz, IDX, CSV, CIFAR pickle tarball.

Nothing here executes pickled code: object arrays and CIFAR batches go through an
unpickler that only rebuilds numpy arrays. Every parse error names the file.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import math
import pickle
import re
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import FormatError

FLOAT32_MAX = float(np.finfo(np.float32).max)  # the models compute in float32: a larger value overflows to inf

# The only globals needed to rebuild numpy arrays (the set Keras's npz_utils allows), plus
# `_codecs.encode`, which protocol-2 pickles written by Python 3 use for bytes (it only encodes text).
_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy array reconstruction."""

    def find_class(self, module: str, name: str):
        """Resolve only the allowed numpy globals (old `numpy.core` spelling mapped to `numpy._core`)."""
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def read_bytes(path: Path) -> bytes:
    """Return a file's bytes, gunzipped or bunzipped when its magic number says so.

    Raises:
        FormatError: a compressed stream is corrupt or truncated.
    """
    data = Path(path).read_bytes()
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:3] == b"BZh":
            return bz2.decompress(data)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise FormatError(f"{path}: corrupt compressed data ({exc})") from exc
    return data


def _npy(raw: bytes) -> np.ndarray:
    """Read one `.npy` member; object arrays go through `RestrictedUnpickler`."""
    fp = io.BytesIO(raw)
    try:
        return np.lib.format.read_array(fp, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
    fp.seek(0)
    major, _ = np.lib.format.read_magic(fp)
    if major == 1:
        np.lib.format.read_array_header_1_0(fp)
    else:
        np.lib.format.read_array_header_2_0(fp)
    return RestrictedUnpickler(fp).load()


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an `.npz` archive without running arbitrary pickles.

    Raises:
        FormatError: not a zip, a bad member, or a refused pickle; names the file and member.
    """
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if member.endswith(".npy"):
                    try:
                        arrays[member[:-4]] = _npy(zf.read(member))
                    except Exception as exc:  # numpy/pickle raise many types for bad bytes
                        raise FormatError(f"{path}: member {member} is not a valid array ({exc})") from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FormatError(f"{path}: not a valid .npz (zip) file ({exc})") from exc
    if not arrays:
        raise FormatError(f"{path}: the .npz archive holds no arrays")
    return arrays


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), e.g. MNIST / Fashion-MNIST images or labels.

    Raises:
        FormatError: bad magic number, unknown type code, or a size that does not match the header.
    """
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        raise FormatError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(f"{path}: IDX header truncated")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise FormatError(f"{path}: IDX size {len(data)} bytes, header {shape} implies {expected}")
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_csv(
    path: Path, *, header: bool, target: str | int, delimiter: str = ","
) -> tuple[np.ndarray, np.ndarray, list[str] | None, str]:
    """Read a numeric CSV table (optionally gz/bz2) and split off the target column.

    Args:
        `path`: the file.
        `header`: the first row holds column names.
        `target`: the target column, by name (needs a header) or index (negative counts from the end).
        `delimiter`: the field separator.

    Returns:
        `(X float64, y (float64, or str when not numeric), feature names or None, target name)`.

    Raises:
        FormatError: undecodable text, a column name given twice, ragged rows, unknown target, a non-numeric
            feature cell, or a cell no model can use (`unusable`; an empty target too), naming its line and column.
    """
    try:
        text = read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text ({exc})") from exc
    stream = io.StringIO(text)
    names = next(csv.reader([stream.readline()], delimiter=delimiter), None) if header else None
    _check_names(path, names)
    body, first = stream.read(), 1 + bool(names)
    try:  # fast path: an all-numeric table (blank lines and `#` comments skipped)
        table = np.loadtxt(io.StringIO(body), delimiter=delimiter, dtype=np.float64, ndmin=2, quotechar='"')
        lines = [i for i, line in enumerate(body.splitlines(), first) if line.split("#", 1)[0]]
    except ValueError:
        table, lines = _read_cells(path, body, delimiter, names, first)
    width = table.shape[1]
    if not len(table):
        raise FormatError(f"{path}: no data rows")
    if names is not None and len(names) != width:
        raise FormatError(f"{path}: header has {len(names)} columns, the rows have {width}")
    if width < 2:
        raise FormatError(f"{path}: needs at least one feature column besides the target")
    col = _target_index(path, target, names, width)
    y = table[:, col]
    feats = np.delete(table, col, axis=1)
    if table.dtype == object:
        try:
            feats = feats.astype(np.float64)
        except ValueError:
            i, j = next((i, j) for i, r in enumerate(feats) for j, v in enumerate(r) if not _is_number(v))
            where = _cell(path, lines[i], names, j + (j >= col))
            raise FormatError(f"{where}: {_why(feats[i, j])}; fix or remove the row") from None
        bad = np.insert(unusable(feats), col, [_unusable_cell(v) for v in y], axis=1)
        y = y.astype(str)
    else:
        bad = unusable(table)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        text = table[i, j] if table.dtype == object else _field(body.splitlines()[lines[i] - first], delimiter, j)
        raise FormatError(f"{_cell(path, lines[i], names, j)}: {_why(text)}; fix or remove the row")
    feature_names = [n for j, n in enumerate(names) if j != col] if names else None
    return feats, y, feature_names, names[col] if names else str(col)


def _cell(path: Path, line: int, names: list[str] | None, j: int) -> str:
    """`<file>: line <n>, column <name or index from 0>`: where a bad cell is, for a message."""
    return f"{path}: line {line}, column {names[j]!r}" if names else f"{path}: line {line}, column {j} (from 0)"


def _field(line: str, delimiter: str, j: int) -> str:
    """Field `j` of one line of a numeric table, as written (without a `#` comment)."""
    return next(csv.reader([line.split("#", 1)[0]], delimiter=delimiter))[j].strip()


def unusable(values) -> np.ndarray:
    """Mask of the numbers no model can use: NaN, infinite, or beyond float32's range (they overflow to inf)."""
    return ~(np.abs(np.asarray(values, dtype=np.float64)) <= FLOAT32_MAX)


def _unusable_cell(value: str) -> bool:
    """An empty cell, or a number that `unusable` refuses (a class name such as `cat` is fine)."""
    try:
        return bool(unusable(float(value)))
    except ValueError:
        return not value.strip()


def _why(value: str) -> str:
    """What is wrong with a cell's text that `_is_number`, `unusable` or `_unusable_cell` refused."""
    if not _is_number(value):
        return f"non-numeric value {value!r}" if value.strip() else "empty cell"
    if math.isnan(float(value)):
        return f"{value!r} is not a number (NaN)"
    return f"{value!r} is infinite or beyond float32's range (+-{FLOAT32_MAX:.1e}; the models compute in float32)"


def _check_names(path: Path, names: list[str] | None) -> None:
    """Refuse a header that names a column twice (the target and the served features are taken by name)."""
    for j, name in enumerate(names or ()):
        if name in names[:j]:
            raise FormatError(f"{path}: line 1: column name {name!r} is given twice; rename one")


def _read_cells(path: Path, body: str, delimiter: str, names: list[str] | None, first: int):
    """Split CSV text into an object array of cells and the file line of each row, checking that rows have
    equal length (empty lines skipped)."""
    reader = csv.reader(io.StringIO(body), delimiter=delimiter)
    rows, lines = [], []
    for r in reader:
        if r:
            rows.append(r)
            lines.append(first + reader.line_num - 1)
    if not rows:
        return np.empty((0, len(names or ())), dtype=object), lines
    width = len(names) if names else len(rows[0])
    for r, line in zip(rows, lines, strict=True):
        if len(r) != width:
            raise FormatError(f"{path}: line {line} has {len(r)} fields, expected {width}")
    return np.array(rows, dtype=object), lines


def _is_number(value: str) -> bool:
    """True when `float(value)` works."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def _target_index(path: Path, target: str | int, names: list[str] | None, width: int) -> int:
    """Column index of the target."""
    if isinstance(target, int) or (isinstance(target, str) and re.fullmatch(r"-?\d+", target) and not names):
        idx = int(target)
        if not -width <= idx < width:
            raise FormatError(f"{path}: target column {idx} out of range for {width} columns")
        return idx % width
    if not names or target not in names:
        raise FormatError(f"{path}: target column {target!r} not found (columns: {names or 'no header'})")
    return names.index(target)


def read_cifar_tar(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read CIFAR-10 `data_batch_1..5` and `test_batch` straight from the python tarball.

    Call only on a tarball whose SHA-256 matched its pin; the batches are unpickled
    with `RestrictedUnpickler` anyway and nothing is extracted to disk.

    Returns:
        `(x_train, y_train, x_test, y_test)`, images uint8 `(n, 32, 32, 3)`, labels int64.

    Raises:
        FormatError: not a tarball, a batch missing, or a batch that is not a CIFAR dict.
    """
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:
                    batches[base] = _cifar_batch(path, base, tar.extractfile(member).read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise FormatError(f"{path}: not a readable tar.gz ({exc})") from exc
    missing = [w for w in wanted if w not in batches]
    if missing:
        raise FormatError(f"{path}: CIFAR batches missing: {', '.join(missing)}")
    x_train = np.concatenate([batches[w][0] for w in wanted[:5]])
    y_train = np.concatenate([batches[w][1] for w in wanted[:5]])
    return x_train, y_train, *batches["test_batch"]


def _cifar_batch(path: Path, name: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled CIFAR batch into channels-last images and labels."""
    try:
        d = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data, labels = np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"labels"], dtype=np.int64)
        images = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as exc:  # pickle / key / shape errors all mean a bad batch
        raise FormatError(f"{path}: batch {name} is not a valid CIFAR batch ({exc})") from exc
    if len(labels) != len(images):
        raise FormatError(f"{path}: batch {name} has {len(images)} images but {len(labels)} labels")
    return np.ascontiguousarray(images), labels
