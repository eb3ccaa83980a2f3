"""Dataset catalog, verified fetch (cache, mirrors, URL, pip) and loaders into `RawData`.

`fetch(name, dest)` gets every pinned file into `dest` and writes `dest/manifest.json`;
`load(name, dest)` reads them back. See `catalog.py` for the datasets and their pins.
"""

from .catalog import CATALOG, custom_spec, get_spec, names
from .errors import FetchError, FormatError, HashMismatchError, UnknownDatasetError
from .fetch import availability, fetch
from .load import load, load_spec
from .spec import Archive, DatasetSpec, FileSet, FileSpec, RawData

__all__ = [
    "CATALOG",
    "Archive",
    "DatasetSpec",
    "FetchError",
    "FileSet",
    "FileSpec",
    "FormatError",
    "HashMismatchError",
    "RawData",
    "UnknownDatasetError",
    "availability",
    "custom_spec",
    "fetch",
    "get_spec",
    "load",
    "load_spec",
    "names",
]
