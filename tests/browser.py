"""Headless Chromium for the tests that render pages: Debian's `/usr/bin/chromium` driven by Playwright.

`offline_page(url)` opens a page with every request outside `file:` and `data:` refused and
recorded, and page errors and console errors collected, so a test can assert that a page
needs no network and logs no error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conftest import missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]  # fmt: skip


def require_chromium() -> None:
    """Skip (or fail under CI) when Chromium is not installed."""
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} not installed (Debian package `chromium`)")


@dataclass
class Visit:
    """An open page and what it did: `outside` (refused requests) and `errors` (page and console errors)."""

    page: object
    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def offline_page(url: str, *, viewport: tuple[int, int] = (1400, 900)) -> Iterator[Visit]:
    """Open `url` in headless Chromium with the network refused; yield the `Visit`, close the browser after."""
    require_chromium()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            visit = Visit(page)
            page.on("pageerror", lambda exc: visit.errors.append(str(exc)))
            page.on("console", lambda msg: visit.errors.append(msg.text) if msg.type == "error" else None)

            def refuse(route):
                if not route.request.url.startswith(("file:", "data:")):
                    visit.outside.append(route.request.url)
                    return route.abort()
                return route.continue_()

            page.route("**/*", refuse)
            page.goto(url, wait_until="load")
            yield visit
        finally:
            browser.close()
