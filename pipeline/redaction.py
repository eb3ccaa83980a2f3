"""Hiding credentials: one place for every message, log line, tag and file that may hold a URL.

Light on purpose (no MLflow, no Optuna): the configuration check, the storage layer and the
tracking layer all redact with `redact`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

# `scheme://userinfo@`: the userinfo may hold an unescaped `@` (greedy up to the host) or, after
# `user:`, an unescaped `/`; both are hidden whole.
_USERINFO = re.compile(r"(?<=://)(?:[^\s/?#\"'<>,]*|[^\s/?#@:\"'<>,]+:[^\s@\"'<>]*)@")
# `key=value` fields of a query string, a fragment or a libpq DSN (`?password=`, `&sig=`, `#token=`, `token=`)
_FIELD = re.compile(r"(^|[?&;#\s])([\w.%-]+)=([^&;\s#\"']*)")
# the names of those holding a secret (percent-decoded): `password`, `sslpassword`, `api_key`, `X-Amz-Signature`
_SECRET_NAME = re.compile(
    r"(?i)(?:[\w.-]*[_.-])?(?:pass|password|passwd|pwd|sslpassword|token|secret|key|api[_-]?key|access[_-]?key"
    r"|signature|sig|credentials?|auth)"
)


def _secret(name: str) -> bool:
    return bool(_SECRET_NAME.fullmatch(unquote(name)))


def secret_fields(text: str) -> list[str]:
    """The names of the `key=value` fields of `text` that hold a secret (`password=...`, `?token=...`), decoded."""
    return [unquote(m[2]) for m in _FIELD.finditer(text) if _secret(m[2])]


def redact(text: str) -> str:
    """Hide credentials in a URI or in any text holding URIs.

    `postgresql://user:pw@host/db` -> `postgresql://***@host/db`; `https://token@host` ->
    `https://***@host`; `?password=pw`, `&sig=...`, `#token=...`, `token=...` -> `?password=***`, ...

    Args:
        `text`: a URI, an error message, a log line.

    Returns:
        `text` with every userinfo part and secret-looking `key=value` replaced by `***`.
    """
    if "://" in text:
        text = _USERINFO.sub("***@", text)
    if "=" in text:
        text = _FIELD.sub(lambda m: f"{m[1]}{m[2]}=***" if _secret(m[2]) else m[0], text)
    return text


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """Split `scheme://user:password@host/...` into the URI without them, the user and the password.

    Returns:
        `(uri_without_userinfo, user, password)`; user and password are percent-decoded, None when absent.
    """
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if colon else None
