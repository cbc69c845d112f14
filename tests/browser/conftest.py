"""One daemon on the examples and one Chromium per module; a fresh signed-in tab per test.

Without /usr/bin/chromium the tests skip with how to install it, except in CI (`CI=true`),
where a missing browser is a broken runner and fails loudly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserkit import (
    VIEWPORT,
    ServedUi,
    Tab,
    chromium_missing_reason,
    launch_chromium,
    ui_daemon,
    watch_console,
)
from playwright.sync_api import Browser, StorageState, expect, sync_playwright

#: A task that prints a numbered line every 0.2 s until the test lets it end: its log is
#: still growing when the page opens, so a line the page shows later came over the stream.
SLOW_DAG = """
import time
from pathlib import Path

from orchestrator import DAG, task

RELEASE = Path({release!r})


@task
def count_slowly() -> int:
    ticks = 0
    while not RELEASE.exists() and ticks < 600:
        print(f"tick {{ticks:04d}}", flush=True)
        ticks += 1
        time.sleep(0.2)
    print("released", flush=True)
    return ticks


with DAG("slow_logger", description="Print a line every 0.2 s until released"):
    count_slowly()
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = chromium_missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedUi]:
    root = tmp_path_factory.mktemp("ui")
    slow = SLOW_DAG.format(release=str(root / "release"))
    with ui_daemon(root, extra_dags={"slow_logger.py": slow}) as served:
        yield served


@pytest.fixture(scope="module")
def session_cookies(browser: Browser, served: ServedUi) -> StorageState:
    """An admin session, signed in once through `orchestrator open`'s link, for every tab."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(served.sign_in_link())
        expect(page.locator(".who")).to_contain_text("admin")
        return context.storage_state()
    finally:
        context.close()


@pytest.fixture
def tab(
    browser: Browser, served: ServedUi, session_cookies: StorageState, tmp_path: Path
) -> Iterator[Tab]:
    context = browser.new_context(viewport=VIEWPORT, storage_state=session_cookies)
    page = context.new_page()
    console = watch_console(page)
    page.goto(served.url + "/")
    try:
        yield Tab(page, console, served, tmp_path)
    finally:
        context.close()
