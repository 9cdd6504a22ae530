"""Headless Chromium for the report's tests and the README screenshot, driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs
them); Selenium is pointed at both binaries, so it never tries to download a
driver.  The flags keep Chromium off the network: this machine's network is
closed, and a report must not need one anyway.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CONV_CONFORMANCE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CONV_CONFORMANCE_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)  # fmt: skip


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} not found: install Debian's {package} package (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000, javascript: bool = True) -> Iterator[Any]:
    """A Selenium WebDriver on headless Chromium that records the page's console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="conv-conformance-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    """The page's console messages of level SEVERE: script errors, blocked fetches, CSP violations."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


__all__ = ["chromium", "console_errors", "missing"]
