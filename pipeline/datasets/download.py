"""HTTP download to a temporary file: resume or clean retry, backoff, progress, sanity checks.

The temporary `.part` file is never taken as complete: it is renamed into place only after its
hash matched the pin (`fetch.accept`). Resuming (HTTP Range) happens only within one `download`
call; a new call starts the file afresh, so a `.part` outlives no fetch: `fetch` removes it on
success, failure, Ctrl-C and SIGTERM (see `fetch.terminate_as_interrupt`), and the leftover of a
SIGKILLed fetch is removed by the next one.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

BACKOFF_SECONDS = float(os.environ.get("TUNEBENCH_BACKOFF_S") or 1.0)  # the first retry's wait, doubled after
USER_AGENT = "tunebench-fetch/0.1"
_HTML_STARTS = (b"<!doctype", b"<html")


class DownloadError(Exception):
    """A download failed for good (after retries, or for a reason retrying cannot fix).

    Attributes:
        `kind`: what went wrong, for the advice: `network` (connection, timeout, truncation, HTTP 5xx
            after retries), `url` (a malformed URL, or the server refused it: HTTP 4xx), `html` (a web
            page instead of the file), `other` (pip, archives).
    """

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


class _Retryable(Exception):
    """A transient failure: try again, resuming if possible."""


def download(
    url: str,
    part: Path,
    *,
    label: str,
    timeout: float = 60,
    retries: int = 3,
    progress: bool = True,
) -> None:
    """Download `url` into `part`, resuming with HTTP Range after a broken connection.

    Args:
        `url`: the source.
        `part`: the temporary file to fill (created or truncated here).
        `label`: name shown on the progress bar.
        `timeout`: socket timeout in seconds.
        `retries`: extra tries after the first, with exponential backoff.
        `progress`: show a tqdm bar with size and rate.

    Raises:
        DownloadError: with the reason (HTTP status, HTML page, truncation, connection error).
    """
    part.unlink(missing_ok=True)
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(BACKOFF_SECONDS * 2 ** (attempt - 1), 30))
        try:
            _download_once(url, part, label=label, timeout=timeout, progress=progress)
            return
        except _Retryable as exc:
            last = str(exc)
    tries = f"{retries + 1} tries" if retries else "1 try"
    raise DownloadError(f"{last} (gave up after {tries})", "network")


def _download_once(url: str, part: Path, *, label: str, timeout: float, progress: bool) -> None:
    """One request; appends to `part` when the server honours a Range request."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            part.unlink()
            raise _Retryable("server refused to resume (HTTP 416); restarting") from exc
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"HTTP {exc.code} {exc.reason}", "url") from exc
    except ValueError as exc:  # "unknown url type" and the like
        raise DownloadError(f"not a URL urllib can open ({exc})", "url") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"connection failed: {reason}") from exc
    with resp:
        ctype = resp.headers.get("Content-Type", "")
        if "text/html" in ctype.lower():
            raise DownloadError(f"server sent an HTML page (Content-Type: {ctype}) instead of the file", "html")
        resumed = have and resp.status == 206 and _range_start(resp) == have
        if resp.status == 206 and not resumed:
            part.unlink(missing_ok=True)
            raise _Retryable("server sent another byte range than asked for; restarting")
        start = have if resumed else 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        _stream(resp, part, start=start, total=total, label=label, progress=progress)
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Retryable(f"truncated download: got {size} of {total} bytes")


def _range_start(resp) -> int | None:
    """Return the first byte position of a 206 response's Content-Range, if parseable."""
    value = resp.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _stream(resp, part: Path, *, start: int, total: int | None, label: str, progress: bool) -> None:
    """Copy the response body to `part` (appending from `start`), checking for an HTML page."""
    bar = tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=not progress,
        leave=False,
    )
    with bar, open(part, "ab" if start else "wb") as f:
        first = not start
        while True:
            try:
                chunk = resp.read(1 << 16)
            except (TimeoutError, http.client.HTTPException, OSError) as exc:
                raise _Retryable(f"connection broken after {f.tell()} bytes: {exc!r}") from exc
            if not chunk:
                return
            if first and chunk.lstrip()[:9].lower().startswith(_HTML_STARTS):
                raise DownloadError("server sent an HTML page instead of the file", "html")
            first = False
            f.write(chunk)
            bar.update(len(chunk))
