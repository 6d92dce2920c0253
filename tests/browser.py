"""Headless Chromium for tests: Debian's `chromium` package, driven by Playwright.

The machine has no internet, so Playwright's own browser download is not used: we launch the
binary the Debian package installs, with the flags that keep it from calling home.
Screenshots go to `test-artifacts/` (or $DSR_TEST_ARTIFACTS) so a CI run keeps them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """The Debian chromium binary, or $DSR_CHROMIUM."""
    configured = os.environ.get("DSR_CHROMIUM")
    if configured:
        return configured
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def artifacts_dir() -> Path:
    """Where tests save screenshots (kept after the run)."""
    root = Path(
        os.environ.get("DSR_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")
    )
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched browser; skips (fails in CI) when Chromium or Playwright is missing."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        executable = None
    if executable is None:
        message = "Chromium not found: apt-get install -y chromium (scripts/test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
