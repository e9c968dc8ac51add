"""What the console's browser tests share: a suite with the console (a test stack, or `make run`
itself), a reference node, a test wallet given credits and mining history over the internal
RPCs, Debian's Chromium driven by Playwright with `window.keplr` made of a cosmjs wallet
(web/test-wallet), and the checks that both suites' consoles pass alike: the charts drawn, a
key created and revoked, a chat streamed and charged exactly."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import grpc
import httpx
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from gateway.paths import ROOT
from runner.local_stack import StackPorts, running_stack
from runner.reference import register_node
from runner.run import REFERENCE_NETWORKS
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.ratelimit.policies import LOCAL_POLICIES_FILE
from services.core.tls import client_context
from tests.e2e.make_run import Runner
from tests.integration.mining_support import stats
from tools.reference_node import DEFAULT_MODEL
from tools.wallet import Wallet

INTERNAL_TOKEN = "browser-internal-token"
INTERNAL = ((INTERNAL_TOKEN_HEADER, INTERNAL_TOKEN),)
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium's own connections (updates, sync) took the
# sandbox's sockets and the pages' connections were refused many at a time.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TEST_WALLET = ROOT / "web" / "dist-test" / "test-wallet.js"
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "bench" / "results"
# A fixed key, so the wallet's address is the same in every run (a test wallet: it holds
# nothing anywhere else).
WALLET_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
GRANT = 5_000_000
# What the test wallet mined this many days ago (micro-credits earned, and the hashrates of two
# reports: the day's average and peak differ): the 7-, 30- and 365-day charts each hold a
# different part of it.
MINED = {
    1: (100_000, (40.0, 20.0)),
    3: (200_000, (25.0, 5.0)),
    10: (300_000, (60.0, 30.0)),
    40: (400_000, (80.0, 40.0)),
}
# The chat policy small enough that a test meets its 429 after the few chats of the others.
CHAT_PER_MINUTE = 4
WAIT_MS = 15_000
# web/src/chart.ts: the colours of the series.
EARNED, AVERAGE, PEAK = "#1d4ed8", "#b45309", "#047857"
# The defaults of R3MES_SERVING_*: micro-credits per prompt and per completion token.
PROMPT_PRICE, COMPLETION_PRICE = 1, 2
TEMPLATE_TOKENS_PER_MESSAGE = 8
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Console:
    url: str  # the console's origin
    gateway: str  # the gateway's, which the console calls
    ports: StackPorts
    wallet: Wallet


def _policies(directory: Path) -> Path:
    """`make run`'s rate limits, but few chats a minute."""
    document = yaml.safe_load(LOCAL_POLICIES_FILE.read_text())
    document["policies"]["chat"] = f"{CHAT_PER_MINUTE}/minute"
    path = directory / "policies.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _grant_and_mine(target: str, internal: Metadata, wallet: str) -> None:
    """GRANT and the MINED history for `wallet`, by internal calls to credits and mining at
    `target` (in one process, every service's port is the same)."""
    with grpc.insecure_channel(target) as channel:
        credits_pb2_grpc.CreditsServiceStub(channel).GrantCredits(
            credits_pb2.GrantCreditsRequest(
                wallet_address=wallet, amount_micro_credits=GRANT, idempotency_key="browser-grant"
            ),
            metadata=internal,
            timeout=5,
        )
    now = datetime.now(UTC)
    reports = [
        stats(
            wallet,
            f"browser-{days}-{index}",
            hashrate=rate,
            earned=earned if index == 0 else 0,
            observe_time=now - timedelta(days=days, minutes=index),
        )
        for days, (earned, rates) in MINED.items()
        for index, rate in enumerate(rates)
    ]
    with grpc.insecure_channel(target) as channel:
        mining_pb2_grpc.MiningServiceStub(channel).BatchRecordMiningStats(
            mining_pb2.BatchRecordMiningStatsRequest(requests=reports), metadata=internal, timeout=5
        )


@contextmanager
def running_console(work_dir: Path) -> Iterator[Console]:
    with running_stack(
        work_dir,
        internal_token=INTERNAL_TOKEN,
        extra_environment={
            "R3MES_SERVING_PRIVATE_NETWORKS": json.dumps(REFERENCE_NETWORKS),
            "R3MES_SERVING_NODE_OFFLINE_AFTER_SECONDS": "3600",  # registered once, never beating
            "R3MES_RATELIMIT_POLICIES_FILE": str(_policies(work_dir)),
        },
    ) as stack:
        register_node(stack.grpc_target("serving"), INTERNAL_TOKEN, stack.start_reference_node())
        wallet = Wallet.new(WALLET_KEY)
        _grant_and_mine(stack.grpc_target("users"), INTERNAL, wallet.address)
        yield Console(stack.console_url, stack.rest_url, stack.ports, wallet)


def make_run_console(run: Runner) -> Console:
    """`make run`'s console as its banner names it, with the test wallet given credits and
    mining history as a reader would (docs/console.md): internal calls on the banner's gRPC
    port with the token `make run` wrote into its data folder. Its own reference node serves
    the chats."""
    wallet = Wallet.new(WALLET_KEY)
    _grant_and_mine(run.banner.grpc, run.internal, wallet.address)
    return Console(run.banner.console, run.banner.gateway, run.ports, wallet)


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def console_page(browser: Browser, console: Console, *, keplr: bool = True) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) with the test wallet as Keplr (unless `keplr` is
    false: a browser without the extension); dialogs accepted. A
    session still open at the end signs out, which revokes the key the console made (a wallet
    holds at most 10 active keys)."""
    context: BrowserContext = browser.new_context(viewport={"width": 1100, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.url)
    if keplr:
        context.add_init_script(f"window.R3MES_TEST_WALLET_KEY = {json.dumps(WALLET_KEY)};")
        context.add_init_script(path=TEST_WALLET)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        yield page
        if page.url.startswith(console.url) and page.evaluate("sessionStorage.length"):
            sign_out(page)
    finally:
        context.close()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector('main[data-page="signin"]')


def open_page(page: Page, console: Console, name: str) -> None:
    """Shows the console's page `name` and waits until it is drawn."""
    if not page.url.startswith(console.url):
        page.goto(f"{console.url}/#/{name}")
    else:
        page.evaluate(f"location.hash = '#/{name}'")
    page.wait_for_selector(f'main[data-page="{name}"]')


def sign_in_with_keplr(page: Page, console: Console) -> None:
    open_page(page, console, "signin")
    page.get_by_role("button", name="Sign in with Keplr").click()
    page.wait_for_selector('main[data-page="wallet"], [role=alert]')
    refusal = page.get_by_role("alert")
    assert not refusal.count(), f"signing in failed: {refusal.inner_text()}"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"console-{name}.png", full_page=True)


def micro_credits(page: Page, selector: str) -> int:
    """The exact amount an element of the console shows (its data-micro-credits)."""
    return int(page.locator(selector).get_attribute("data-micro-credits") or "")


# The pixels of one colour in a canvas, and the rows they span: a drawn line, not just a node.
_PIXELS_OF = """([selector, rgb]) => {
  const canvas = document.querySelector(selector);
  const { width, height } = canvas;
  const data = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  let count = 0, top = height, bottom = -1;
  for (let i = 0; i < data.length; i += 4) {
    const same = data[i] === rgb[0] && data[i + 1] === rgb[1] && data[i + 2] === rgb[2];
    if (same && data[i + 3] === 255) {
      count += 1;
      const row = Math.floor(i / 4 / width);
      top = Math.min(top, row);
      bottom = Math.max(bottom, row);
    }
  }
  return { count, rows: bottom - top + 1 };
}"""


def drawn(page: Page, canvas: str, color: str) -> dict[str, int]:
    """How many pixels of `color` (#rrggbb) `canvas` has, and how many rows they span."""
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    result: dict[str, int] = page.evaluate(_PIXELS_OF, [canvas, rgb])
    return result


def is_line(drawing: dict[str, int], rows: int) -> bool:
    """Whether a drawing is a line that rises: many pixels spanning at least `rows` rows."""
    return drawing["count"] > 100 and drawing["rows"] >= rows


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as drawn now."""
    page.evaluate(AXE.read_text())
    results = page.evaluate("() => axe.run(document)")
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def balance(console: Console) -> int:
    """The wallet's available micro-credits, as the gateway answers anyone."""
    reply = httpx.get(
        f"{console.gateway}/v1/wallets/{console.wallet.address}/balance",
        timeout=10,
        verify=client_context(),
    )
    return int(reply.json()["balance"]["available_micro_credits"])


def check_mining_charts(page: Page) -> None:
    """On the Mining page (signed in): for 7, 30 and 365 days, the earnings summed exactly and
    the earnings and hashrate lines drawn on the canvases."""
    expected_totals = {
        days: sum(earned for ago, (earned, _) in MINED.items() if ago < days)
        for days in (7, 30, 365)
    }
    for days in (7, 30, 365):
        if days != 7:
            page.get_by_role("button", name=f"{days} days").click()
        page.wait_for_selector(f'main section[data-days="{days}"]')
        earned = drawn(page, "#earnings-chart canvas", EARNED)
        average = drawn(page, "#hashrate-chart canvas", AVERAGE)
        peak = drawn(page, "#hashrate-chart canvas", PEAK)
        summary = page.locator("#earnings-chart + .summary .amount")

        assert summary.get_attribute("data-micro-credits") == str(expected_totals[days])
        # Lines that rise from zero to the days mined: many pixels over many rows. (Over 365
        # days a day is two pixels wide: the peak's line, drawn last, hides the average's.)
        assert is_line(earned, 50), (days, earned)
        assert is_line(peak, 50), (days, peak)
        if days < 365:
            assert is_line(average, 30), (days, average)
        screenshot(page, f"miner-{days}-days")


def list_keys(console: Console, key: str) -> httpx.Response:
    """The wallet's keys listed with `key` through the gateway (200, or why it is refused)."""
    return httpx.get(
        f"{console.gateway}/v1/wallets/{console.wallet.address}/apikeys",
        headers={"x-api-key": key},
        timeout=10,
        verify=client_context(),
    )


def check_key_created_copied_and_revoked(page: Page, console: Console, name: str) -> None:
    """On the API keys page (signed in): a key named `name` made with the console's key, its
    secret shown once and copied, working, then revoked (refused from then on) and deleted."""
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create with the console's key").click()
    secret = page.locator(".secret-value").inner_text()
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".secret [role=status]")).to_have_text("Copied.")
    copied = page.evaluate("navigator.clipboard.readText()")
    row = page.locator("tbody tr", has_text=name)
    expect(row).to_contain_text("Active")
    with_new_key = list_keys(console, secret)

    page.get_by_role("button", name=f"Revoke {name}").click()
    expect(row).to_contain_text("Revoked")
    after_revoke = list_keys(console, secret)
    page.get_by_role("button", name=f"Delete {name}").click()
    expect(row).to_have_count(0)

    assert re.fullmatch(r"r3mes_\w+", secret)
    assert copied == secret
    assert with_new_key.status_code == 200
    assert after_revoke.status_code == 401
    assert after_revoke.json()["details"][0]["reason"] == "API_KEY_REVOKED"


# Every text the newest answer shows, recorded as the page changes it (a Python poll could
# miss the steps between two tokens).
_RECORD_ANSWERS = """() => {
  window.R3MES_ANSWER_TEXTS = [];
  const conversation = document.querySelector(".conversation");
  new MutationObserver(() => {
    const answers = conversation.querySelectorAll(".answer");
    const text = answers.length ? answers[answers.length - 1].textContent : "";
    const seen = window.R3MES_ANSWER_TEXTS;
    const answered = document.querySelector("main section[data-answered]") !== null;
    if (text && seen[seen.length - 1]?.text !== text) seen.push({ text, answered });
  }).observe(conversation, { childList: true, subtree: true, characterData: true });
}"""


def check_chat_streamed_and_charged_exactly(page: Page, console: Console) -> None:
    """On the Chat page (signed in): the price before sending, the answer arriving in pieces,
    and the balance after it lower by exactly the charge shown, as the gateway reads it too."""
    before = micro_credits(page, "#chat-balance .amount")
    message = "hello there"
    page.get_by_label("Longest answer (tokens)").fill("3")
    page.get_by_label("Message", exact=True).fill(message)
    most = micro_credits(page, "#chat-price .amount")
    page.evaluate(_RECORD_ANSWERS)

    page.get_by_role("button", name="Send").click()
    page.wait_for_selector('main section[data-answered="1"]')
    charged = micro_credits(page, "#chat-charge .amount")
    after = micro_credits(page, "#chat-balance .amount")
    texts = page.evaluate("window.R3MES_ANSWER_TEXTS")
    screenshot(page, "chat")

    assert page.get_by_role("combobox", name="Model").input_value() == DEFAULT_MODEL
    assert (
        most == PROMPT_PRICE * (len(message) + TEMPLATE_TOKENS_PER_MESSAGE) + COMPLETION_PRICE * 3
    )
    expect(page.locator(".conversation .answer")).to_have_text("the network answers ")
    # Streamed: before the answer ended the page showed it growing, in at least two steps.
    growing = [seen["text"] for seen in texts if not seen["answered"]]
    assert len(growing) >= 2, texts
    assert all(b.startswith(a) and b != a for a, b in pairwise(growing))
    assert "the network answers ".startswith(growing[-1])
    assert charged == 2 * PROMPT_PRICE + 3 * COMPLETION_PRICE
    assert after == before - charged
    assert after == balance(console)
    expect(page.locator("#chat-charge")).to_contain_text("for 2 prompt and 3 answer tokens")
