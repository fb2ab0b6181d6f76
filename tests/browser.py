"""Headless Chromium for the browser tests: Debian's `chromium` package driven by Playwright's
sync API (`executable_path`, no browser download). Without the package the tests are skipped
with the command that installs it, except under CI (`CI` set), where a missing browser fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Where screenshots land (gitignored); the test prints each path.
ARTIFACTS = REPO / "test-artifacts"
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Every wait in a browser test is bounded by this (ms), then the test fails with what it saw.
WAIT_MS = 15_000


def chromium_path() -> str:
    """The system Chromium, or skip (fail under CI) when it is not installed."""
    found = os.environ.get("TRADINGD_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    message = "Debian's chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """A headless Chromium `Browser` (playwright.sync_api), one per test module."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: object, name: str) -> Path:
    """Save a full-page PNG under test-artifacts/ and print its path into the test output."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    print(f"screenshot: {path}")
    return path
