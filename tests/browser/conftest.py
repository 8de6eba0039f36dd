"""Shared fixtures of the browser tests: one headless Debian chromium per module, a page
signed in to the dashboard, and screenshots kept where a person can look at them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memgate_testing.gateway import GatewayProcess

CHROMIUM = shutil.which("chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
# Every page's screenshot of a test run lands here (MEMGATE_SCREENSHOTS to move it); the
# README's images are copies of these (docs/screenshots).
SCREENSHOTS = Path(os.environ.get("MEMGATE_SCREENSHOTS", Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def sign_in(browser: Any, gateway: GatewayProcess, api_key: str) -> Any:
    """A new page (its own cookies) signed in to the dashboard with `api_key`."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{gateway.url}/dashboard/login")
    page.fill("#api_key", api_key)
    page.click("input[type=submit]")
    page.wait_for_url("**/dashboard/threads")
    return page


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    """`shot(page, "logs")` saves the whole page as SCREENSHOTS/logs.png."""
    def take(page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return take
