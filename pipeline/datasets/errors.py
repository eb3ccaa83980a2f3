"""Exceptions raised while fetching, verifying and reading datasets."""

from __future__ import annotations

from pipeline.errors import MissingInputError, TunebenchError


class FetchError(TunebenchError):
    """A dataset file could not be obtained; the message says where we looked and how to fix it."""


class HashMismatchError(FetchError):
    """A file's hash differs from its pin; the bad copy was moved to quarantine.

    Attributes:
        `file`: the file name; `expected` / `actual`: hex digests; `source`: where the
        bad copy came from; `quarantined`: where it was moved (None if it was left alone).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        expected: str = "",
        actual: str = "",
        source: str = "",
        quarantined: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.expected = expected
        self.actual = actual
        self.source = source
        self.quarantined = quarantined


class UnknownDatasetError(FetchError):
    """The dataset name is neither built in nor declared with `custom`."""


class FormatError(MissingInputError, ValueError):
    """A data file is malformed (bad npz / IDX / CSV / pickle); the message names the file."""
