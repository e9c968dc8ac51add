"""API keys over REST through Envoy, with a wallet that signs as Keplr does: the first key from
a signature, more keys with it, revocation seen everywhere within the cache TTL (5 s by
default), and no key of one wallet touching another's."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx

from services.core.testing import new_wallet_address
from tests.integration.apikeys_support import SigningWallet

DEFAULT_CACHE_TTL_SECONDS = 5.0


async def first_key(rest: httpx.AsyncClient, wallet: SigningWallet) -> dict[str, str]:
    challenged = await rest.post(f"/v1/wallets/{wallet.address}/challenges", json={})
    assert challenged.status_code == 200, challenged.text
    challenge = challenged.json()["challenge"]
    created = await rest.post(
        f"/v1/wallets/{wallet.address}/apikeys:createWithSignature",
        json={
            "challenge_id": challenge["challenge_id"],
            "pub_key": base64.b64encode(wallet.pub_key).decode(),
            "signature": base64.b64encode(wallet.sign_arbitrary(challenge["message"])).decode(),
            "name": "browser",
        },
    )
    assert created.status_code == 200, created.text
    body: dict[str, str] = {**created.json()["api_key"], "secret": created.json()["secret"]}
    return body


async def test_a_wallet_signs_for_its_first_key_and_manages_its_keys_with_it(
    rest: httpx.AsyncClient,
) -> None:
    wallet = SigningWallet()
    first = await first_key(rest, wallet)
    keys_path = f"/v1/wallets/{wallet.address}/apikeys"

    second = await rest.post(
        keys_path,
        json={"name": "server", "expires_days": 30},
        headers={"authorization": f"Bearer {first['secret']}"},
    )
    listed = await rest.get(keys_path, headers={"x-api-key": second.json()["secret"]})

    assert second.status_code == 200, second.text
    assert listed.status_code == 200, listed.text
    names = [key["name"] for key in listed.json()["api_keys"]]
    assert names == ["server", "browser"]
    assert first["secret"] not in listed.text
    assert second.json()["secret"] not in listed.text


async def test_a_revoked_key_is_refused_everywhere_within_the_cache_ttl(
    rest: httpx.AsyncClient,
) -> None:
    wallet = SigningWallet()
    key = await first_key(rest, wallet)
    headers = {"x-api-key": key["secret"]}
    assert (await rest.get("/v1/network/stats", headers=headers)).status_code == 200

    revoked = await rest.post(
        f"/v1/wallets/{wallet.address}/apikeys/{key['key_id']}:revoke", json={}, headers=headers
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["api_key"]["state"] == "API_KEY_STATE_REVOKED"
    started = time.monotonic()
    statuses: set[int] = set()
    while time.monotonic() - started < DEFAULT_CACHE_TTL_SECONDS + 2.0:
        statuses = {
            (await rest.get("/v1/network/stats", headers=headers)).status_code,
            (await rest.get(f"/v1/wallets/{wallet.address}/apikeys", headers=headers)).status_code,
        }
        if statuses == {401}:
            break
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started

    assert statuses == {401}
    assert elapsed <= DEFAULT_CACHE_TTL_SECONDS + 1.0


async def test_a_key_of_one_wallet_touches_nothing_of_another(rest: httpx.AsyncClient) -> None:
    mine = await first_key(rest, SigningWallet())
    other = SigningWallet()
    theirs = await first_key(rest, other)
    headers = {"x-api-key": mine["secret"]}
    base = f"/v1/wallets/{other.address}"

    replies = [
        await rest.get(f"{base}/apikeys", headers=headers),
        await rest.post(f"{base}/apikeys", json={"name": "x"}, headers=headers),
        await rest.post(f"{base}/apikeys/{theirs['key_id']}:revoke", json={}, headers=headers),
        await rest.delete(f"{base}/apikeys/{theirs['key_id']}", headers=headers),
        await rest.get(f"{base}/ledgerEntries", headers=headers),
    ]

    assert [reply.status_code for reply in replies] == [403] * 5
    assert {reply.json()["details"][0]["reason"] for reply in replies} == {"WRONG_WALLET"}
    still = await rest.get(f"{base}/apikeys", headers={"x-api-key": theirs["secret"]})
    assert [key["state"] for key in still.json()["api_keys"]] == ["API_KEY_STATE_ACTIVE"]


async def test_an_unusable_key_is_a_401_saying_why(rest: httpx.AsyncClient) -> None:
    reply = await rest.get(
        f"/v1/wallets/{new_wallet_address()}/apikeys", headers={"x-api-key": "r3mes_nope"}
    )

    assert reply.status_code == 401
    assert reply.json()["details"][0]["reason"] == "API_KEY_INVALID"
