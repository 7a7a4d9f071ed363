"""Headless Chromium (Debian's chromium + chromium-driver) through Selenium, for the web page tests.

A module that uses it: ``pytest_plugins = ["tests.support.browser"]`` and ``require_chromium()`` at the top,
which skips the module without Chromium, except under CI, which must have it (.ci/run installs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


def require_chromium() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    if os.environ.get("CI"):
        raise RuntimeError("CI must have Debian's chromium and chromium-driver (.ci/run installs them)")
    pytest.skip("Debian chromium + chromium-driver not installed", allow_module_level=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1100,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
