"""`make run` (runner/run.py on its defaults), its console opened in Debian's headless Chromium at
the URL its banner prints: signed in with the test wallet (given credits and mining history as
docs/console.md tells a reader, on the banner's gRPC port with `make run`'s internal token), it
shows the suite's real data: the charts drawn, a key created and revoked, a chat answered by
`make run`'s own reference node and charged exactly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.console_support import (
    GRANT,
    Console,
    balance,
    check_chat_streamed_and_charged_exactly,
    check_key_created_copied_and_revoked,
    check_mining_charts,
    make_run_console,
    micro_credits,
    open_page,
    sign_in_with_keplr,
)
from tests.e2e.make_run import running_make_run


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with running_make_run(tmp_path_factory.mktemp("make-run-console") / "data") as run:
        yield make_run_console(run)


def test_the_banner_s_console_signs_the_test_wallet_in_and_shows_its_grant(
    page: Page, console: Console
) -> None:
    assert console.url == f"http://127.0.0.1:{console.ports.console}"

    sign_in_with_keplr(page, console)

    expect(page.locator("main p.wallet")).to_have_text(console.wallet.address)
    assert micro_credits(page, "dl.figures .amount >> nth=0") == balance(console) == GRANT
    expect(page.locator("tbody tr").last).to_contain_text("Granted")


def test_the_network_page_counts_the_test_wallet_s_credits(page: Page, console: Console) -> None:
    open_page(page, console, "network")

    # The only credits of a fresh `make run`: the test wallet's grant.
    assert micro_credits(page, "dl.figures .amount") == GRANT


def test_the_mining_charts_are_drawn_from_make_run_s_mining_service(
    page: Page, console: Console
) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "miner")

    check_mining_charts(page)


def test_a_key_is_created_and_revoked_on_make_run(page: Page, console: Console) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "keys")

    check_key_created_copied_and_revoked(page, console, "make-run-key")


def test_a_chat_answered_by_make_run_s_node_is_charged_exactly(
    page: Page, console: Console
) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "chat")

    check_chat_streamed_and_charged_exactly(page, console)
