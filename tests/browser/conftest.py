"""What every browser test file shares: one Chromium per file, and a fresh tab per test on the
console that the file's own `console` fixture starts (a test stack, or `make run`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.console_support import Console, chromium, console_page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    with console_page(browser, console) as opened:
        yield opened
