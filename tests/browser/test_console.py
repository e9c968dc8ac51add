"""The web console in Debian's Chromium, on its own origin against a whole suite: it loads, signs
in with Keplr (a cosmjs wallet standing in for it) or a pasted key, shows the wallet's exact
balance and ledger, draws the mining charts, creates and revokes keys, chats with the exact
charge taken from the balance, tells refusals as sentences, and has no serious accessibility
violation. Each page's screenshot is written to bench/results/console-<page>.png."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.console_support import (
    CHAT_PER_MINUTE,
    COMPLETION_PRICE,
    GRANT,
    PROMPT_PRICE,
    Console,
    balance,
    check_chat_streamed_and_charged_exactly,
    check_key_created_copied_and_revoked,
    check_mining_charts,
    console_page,
    list_keys,
    micro_credits,
    open_page,
    running_console,
    screenshot,
    serious_violations,
    sign_in_with_keplr,
    sign_out,
)
from tools.wallet import first_api_key


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with running_console(tmp_path_factory.mktemp("console")) as running:
        yield running


def test_the_console_serves_its_config_naming_the_gateway_and_the_prices(
    console: Console,
) -> None:
    reply = httpx.get(f"{console.url}/config.json", timeout=10)

    assert reply.status_code == 200
    assert reply.json() == {
        "gateway_url": console.gateway,
        "keplr_chain_id": "remes-1",
        "default_price": {"prompt": PROMPT_PRICE, "completion": COMPLETION_PRICE},
        "prices": {},
    }


def test_the_network_page_shows_the_gateway_s_figures(page: Page, console: Console) -> None:
    stats = httpx.get(f"{console.gateway}/v1/network/stats", timeout=10).json()

    open_page(page, console, "network")

    figures = page.locator("dl.figures")
    expect(figures).to_contain_text(f"Wallets{int(stats['total_users']):,}")
    assert micro_credits(page, "dl.figures .amount") == int(stats["total_micro_credits"])
    screenshot(page, "network")


def test_a_call_from_the_console_s_origin_is_allowed_and_from_another_origin_refused(
    page: Page, console: Console
) -> None:
    fetch = "url => fetch(url).then(r => r.status, e => e.name)"
    stats = f"{console.gateway}/v1/network/stats"
    open_page(page, console, "network")
    from_console = page.evaluate(fetch, stats)
    # Another origin of this machine: the front door's own port.
    page.goto(f"http://127.0.0.1:{console.ports.frontdoor}/healthz")
    from_elsewhere = page.evaluate(fetch, stats)

    assert from_console == 200
    assert from_elsewhere == "TypeError"  # the browser withheld the answer: no CORS grant


def test_signing_in_with_keplr_signs_the_challenge_and_shows_the_wallet(
    page: Page, console: Console
) -> None:
    open_page(page, console, "signin")
    screenshot(page, "signin")

    page.get_by_role("button", name="Sign in with Keplr").click()
    page.wait_for_selector('main[data-page="wallet"]')

    signed = page.evaluate("window.R3MES_TEST_WALLET_SIGNED")
    assert len(signed) == 1
    assert console.wallet.address in signed[0]
    expect(page.locator("main p.wallet")).to_have_text(console.wallet.address)
    assert micro_credits(page, "dl.figures .amount >> nth=0") == balance(console)
    expect(page.locator("table")).to_contain_text("Granted")
    screenshot(page, "wallet")


def test_the_wallet_page_shows_the_exact_balance_and_the_grant_in_the_ledger(
    page: Page, console: Console
) -> None:
    sign_in_with_keplr(page, console)

    amounts = page.locator("dl.figures .amount")
    first_entry = page.locator("tbody tr").last

    assert micro_credits(page, "dl.figures .amount >> nth=0") == balance(console)
    assert amounts.nth(1).get_attribute("data-micro-credits") == "0"
    expect(first_entry).to_contain_text("Granted")
    assert first_entry.locator(".amount").first.get_attribute("data-micro-credits") == str(GRANT)


def test_the_mining_charts_are_drawn_for_7_30_and_365_days(page: Page, console: Console) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "miner")

    check_mining_charts(page)


def test_a_key_is_created_shown_once_copied_and_revoked(page: Page, console: Console) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "keys")
    screenshot(page, "keys")

    check_key_created_copied_and_revoked(page, console, "browser-key")


def test_a_key_created_with_a_new_keplr_signature_works_and_is_listed(
    page: Page, console: Console
) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "keys")

    page.get_by_label("Name").fill("signed-key")
    page.get_by_role("button", name="Create with a Keplr signature").click()
    secret = page.locator(".secret-value").inner_text()
    row = page.locator("tbody tr", has_text="signed-key")
    expect(row).to_contain_text("Active")
    signed = page.evaluate("window.R3MES_TEST_WALLET_SIGNED")
    listed = list_keys(console, secret)
    page.get_by_role("button", name="Revoke signed-key").click()  # a wallet holds 10 at most
    expect(row).to_contain_text("Revoked")

    # One signature to sign in, one more for this key: it was not made with the console's key.
    assert len(signed) == 2
    assert console.wallet.address in signed[1]
    assert re.fullmatch(r"r3mes_\w+", secret)
    assert listed.status_code == 200
    assert "signed-key" in [key["name"] for key in listed.json()["api_keys"]]
    assert list_keys(console, secret).json()["details"][0]["reason"] == "API_KEY_REVOKED"


def test_a_field_the_service_refuses_is_named_in_a_sentence(page: Page, console: Console) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "keys")

    page.get_by_label("Name").fill("bad/name")
    page.get_by_role("button", name="Create with the console's key").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Please check: name may contain only letters, digits, spaces, '-', '_' and '.'."
    )
    expect(page.locator("tbody tr", has_text="bad/name")).to_have_count(0)


def test_a_chat_streams_its_answer_and_the_balance_drops_by_the_exact_charge(
    page: Page, console: Console
) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "chat")

    check_chat_streamed_and_charged_exactly(page, console)


def test_too_many_chats_are_told_when_to_retry(page: Page, console: Console) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "chat")
    page.get_by_label("Longest answer (tokens)").fill("1")

    for _ in range(CHAT_PER_MINUTE + 1):
        page.get_by_label("Message", exact=True).fill("hi")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("button", name="Send")).to_be_enabled()
        if page.get_by_role("alert").count():
            break

    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"Too many requests: try again in \d+ seconds?\.")
    )


def test_without_keplr_the_sign_in_page_offers_the_api_key_and_says_why(
    browser: Browser, console: Console
) -> None:
    with console_page(browser, console, keplr=False) as page:
        open_page(page, console, "signin")

        expect(page.get_by_role("button", name="Sign in with Keplr")).to_have_count(0)
        expect(page.locator("main")).to_contain_text("Keplr is not installed in this browser")
        expect(page.get_by_role("button", name="Sign in with this key")).to_be_visible()


def test_a_wrong_api_key_is_told_as_a_sentence(page: Page, console: Console) -> None:
    open_page(page, console, "signin")

    page.get_by_label("Wallet address").fill(console.wallet.address)
    page.get_by_label("API key", exact=True).fill("r3mes_not_a_real_key")
    page.get_by_role("button", name="Sign in with this key").click()

    expect(page.get_by_role("alert")).to_have_text(
        "This API key is not valid. Check it, or sign in with your wallet."
    )


def test_a_pasted_api_key_signs_in(page: Page, console: Console) -> None:
    with httpx.Client(base_url=console.gateway, timeout=10) as client:
        key = first_api_key(client, console.wallet, "pasted")
    open_page(page, console, "signin")

    page.get_by_label("Wallet address").fill(console.wallet.address)
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Sign in with this key").click()
    page.wait_for_selector('main[data-page="wallet"]')

    expect(page.locator("main p.wallet")).to_have_text(console.wallet.address)
    assert page.evaluate("window.R3MES_TEST_WALLET_SIGNED") == []


def test_signing_out_revokes_the_key_the_console_made(page: Page, console: Console) -> None:
    sign_in_with_keplr(page, console)
    key = page.evaluate("JSON.parse(sessionStorage.getItem('r3mes.console.session')).key")

    sign_out(page)
    refused = list_keys(console, key)

    expect(page.get_by_role("status")).to_have_text(
        "You signed out, and the console's key was revoked."
    )
    assert refused.status_code == 401
    assert refused.json()["details"][0]["reason"] == "API_KEY_REVOKED"


def test_revoking_the_console_s_own_key_sends_the_user_back_to_sign_in(
    page: Page, console: Console
) -> None:
    sign_in_with_keplr(page, console)
    open_page(page, console, "keys")

    own = page.locator("tbody tr", has_text="in use here")
    own.get_by_role("button", name=re.compile("^Revoke")).click()
    page.wait_for_selector('main[data-page="signin"]')

    expect(page.get_by_role("alert")).to_have_text(
        "This API key has been revoked. Sign in again to get a new one."
    )
    assert page.evaluate("sessionStorage.length") == 0


@pytest.mark.parametrize("name", ["network", "signin", "wallet", "miner", "keys", "chat"])
def test_no_page_has_a_serious_accessibility_violation(
    page: Page, console: Console, name: str
) -> None:
    if name not in ("network", "signin"):
        sign_in_with_keplr(page, console)
    open_page(page, console, name)

    assert serious_violations(page) == []
