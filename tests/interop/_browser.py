"""Headless Chromium for the console's browser tests: Debian's ``chromium`` driven by Playwright.

Theory of operation: Playwright's Python package talks to the browser over a pipe
(``--remote-debugging-pipe``), so the browser may live in another network namespace than the
test: :func:`chromium` points Playwright's ``executable_path`` at a two-line wrapper that
``exec``s ``ip netns exec NS /usr/bin/chromium "$@"``, and the browser then reaches the console
on the veth address exactly as a remote administrator's browser would. Playwright never
downloads a browser here; each launch gets a fresh temporary profile (Playwright's own
``--user-data-dir``), every network feature that phones home is off, and TLS errors are ignored
for the gateway's self-signed certificate (the tests pin it with their HTTP client instead).

Screenshots: :func:`screenshot` writes a full-page PNG per page to
``test-artifacts/console-screenshots/`` at the repository root (ignored by git) for review.
:class:`PageProblems` collects uncaught script errors and Content-Security-Policy violations of a
page, which a test asserts to be none: the console's CSP forbids inline scripts and styles, so a
violation is a bug the browser hides unless someone looks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page

__all__ = [
    "CHROMIUM",
    "SCREENSHOTS",
    "PageProblems",
    "chromium",
    "missing",
    "new_page",
    "screenshot",
    "unlabelled_controls",
]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console-screenshots"
ARGS = (
    "--no-sandbox",  # Runs as root in the test namespaces.
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS = 10_000


def missing() -> str | None:
    """Why browser tests cannot run here, or ``None``."""
    if importlib.util.find_spec("playwright") is None:
        return "browser tests need the playwright package (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return "browser tests need Debian's chromium (apt-get install chromium)"
    return None


@contextlib.contextmanager
def chromium(netns: str | None, workdir: Path) -> Iterator[Browser]:
    """A headless Chromium running in network namespace ``netns`` (``None``: this one)."""
    from playwright.sync_api import sync_playwright

    executable = CHROMIUM
    if netns is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        executable = workdir / "chromium-in-netns"
        ip = shutil.which("ip") or "ip"
        executable.write_text(
            f"#!/bin/sh\nexec {shlex.quote(ip)} netns exec {shlex.quote(netns)} "
            f'{shlex.quote(str(CHROMIUM))} "$@"\n'
        )
        executable.chmod(0o755)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), args=list(ARGS), headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(
    browser: Browser,
    *,
    storage_state: Any = None,
    width: int = 1280,
    height: int = 900,
) -> Page:
    """A page in a new browser context (its own cookies) that accepts the self-signed cert."""
    context = browser.new_context(
        ignore_https_errors=True,
        viewport={"width": width, "height": height},
        storage_state=storage_state,
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def screenshot(page: Page, name: str) -> Path:
    """Write a full-page PNG of ``page`` as ``SCREENSHOTS/NAME.png``; return its path. Every
    page photographed must also name all its controls (:func:`unlabelled_controls`)."""
    unnamed = unlabelled_controls(page)
    assert not unnamed, f"controls without an accessible name on {page.url}: {unnamed}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


_UNLABELLED = """() => Array.from(document.querySelectorAll("input, select, textarea, button"))
  .filter((e) => e.type !== "hidden" && e.offsetParent !== null)
  .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
                 && !e.getAttribute("aria-labelledby") && !(e.textContent || "").trim())
  .map((e) => e.outerHTML.slice(0, 120))"""


def unlabelled_controls(page: Page) -> list[str]:
    """Visible form controls and buttons with no accessible name (no label, ``aria-label``,
    ``aria-labelledby`` or text): what a screen reader could not announce."""
    found: list[str] = page.evaluate(_UNLABELLED)
    return found


class PageProblems:
    """Uncaught script errors and CSP violations of a page, recorded as they happen."""

    def __init__(self, page: Page) -> None:
        self.problems: list[str] = []
        page.on("pageerror", self._on_error)
        page.on("console", self._on_console)

    def _on_error(self, error: Error) -> None:
        self.problems.append(f"uncaught: {error}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.problems.append(f"CSP: {message.text}")

    def assert_none(self) -> None:
        assert not self.problems, "\n".join(self.problems)
