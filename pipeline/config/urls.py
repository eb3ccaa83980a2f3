"""Forms of the Optuna storage URL and the MLflow tracking URI that the configuration accepts."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from pipeline.redaction import secret_fields

_DB_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")
_STORAGE_FORMS = (
    "null (a journal file in studies/<benchmark>), journal:<path>, sqlite:///<path>, "
    "postgresql://user@host/db, mysql://user@host/db (a driver may follow, e.g. postgresql+psycopg2://)"
)
_TRACKING_FORMS = (
    "a folder path (e.g. mlruns), file:<path>, sqlite:///<path>, http(s)://host[:port], "
    "postgresql://user@host/db, mysql://user@host/db, mssql://..., or databricks"
)


def _scheme(url: str) -> tuple[str, str]:
    """`(scheme without +driver, rest after ://)`; scheme is "" for a plain path."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9.-]*)(\+[A-Za-z0-9_]+)?://(.*)$", url)
    return (m.group(1).lower(), m.group(3)) if m else ("", url)


def secret_in(url: str) -> str | None:
    """Where `url` holds a secret, in words, else None: a password after `user:`, a user name of an http(s) URL
    (often a token), or a field such as `password=`, `sslpassword=` or `token=` in its query or fragment."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return "a password after `user:`"
        if parts.scheme.lower() in ("http", "https") and parts.username:
            return "a user name or token before `@`"
    except ValueError:
        pass
    names = secret_fields(url)
    return f"a `{names[0]}=` field" if names else None


def local_path(url: str) -> str | None:
    """The file or folder on this machine that a storage URL or tracking URI names (`journal:<path>`,
    `sqlite:///<path>`, `file:<path>`, a plain folder path), else None."""
    if url.startswith("journal:"):
        return url.removeprefix("journal:")
    scheme, rest = _scheme(url)
    if scheme == "sqlite":
        path = rest.partition("?")[0][1:]  # sqlite:///rel, sqlite:////abs
        return None if path in ("", ":memory:") else path
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return unquote(parts.path)
    return None if scheme or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", url) else url


def storage_url_problem(url: str) -> str | None:
    """None when `url` has a recognised Optuna storage form, else what is allowed.

    Used for `search.storage`, `--storage` and `TUNEBENCH_STORAGE` alike.
    """
    if not url.strip():
        return f"empty; use one of {_STORAGE_FORMS}"
    if url.startswith("journal:"):
        return None if url.removeprefix("journal:").strip() else "journal: needs a file path, e.g. journal:studies.log"
    scheme, rest = _scheme(url)
    if scheme == "sqlite":
        return None if rest.startswith("/") and rest.strip("/") else "sqlite needs a file: sqlite:///path/to/optuna.db"
    if scheme in _DB_SCHEMES:
        return None if rest.strip("/") else f"{scheme}:// needs a host and database, e.g. {scheme}://user@host/db"
    return f"not a storage URL; use one of {_STORAGE_FORMS}"


def tracking_uri_problem(uri: str) -> str | None:
    """None when `uri` has a form MLflow accepts as a tracking URI, else what is allowed."""
    if not uri.strip():
        return f"empty; use {_TRACKING_FORMS}"
    scheme, rest = _scheme(uri)
    if not scheme:
        m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", uri)
        if not m:
            return None  # a plain folder path: MLflow's file store
        scheme, rest = m.group(1).lower(), m.group(2)
    if scheme in ("http", "https"):
        return None if urlsplit(uri).hostname else f"{scheme}:// needs a host, e.g. {scheme}://127.0.0.1:5000"
    if scheme == "sqlite":
        return None if rest.startswith("/") and rest.strip("/") else "sqlite needs a file: sqlite:///mlflow.db"
    if scheme in ("file", "postgresql", "mysql", "mssql"):
        return None if rest.strip("/") else f"{scheme}: needs a location, e.g. {scheme}:///path or {scheme}://host/db"
    if scheme in ("databricks", "databricks-uc", "uc"):
        return None
    return f"not a tracking URI MLflow knows; use {_TRACKING_FORMS}"
