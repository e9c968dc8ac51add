"""REST through Envoy's transcoder: the mapping, and errors as google.rpc.Status JSON."""

from __future__ import annotations

from typing import Any

import httpx

from services.core.testing import new_wallet_address
from tests.e2e.conftest import MAX_REQUEST_BYTES

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


def detail(status: dict[str, Any], type_url: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [d for d in status["details"] if d["@type"] == type_url]
    assert found, f"no {type_url} in {status}"
    return found[0]


async def test_a_user_created_over_rest_can_be_read_back_over_rest(rest: httpx.AsyncClient) -> None:
    wallet = new_wallet_address()

    created = await rest.post("/v1/users", json={"wallet_address": wallet})
    read = await rest.get(f"/v1/users/{wallet}")

    assert created.status_code == 200, created.text
    assert read.status_code == 200, read.text
    assert read.headers["content-type"] == "application/json"
    user = read.json()["user"]
    assert user["wallet_address"] == wallet
    assert user["create_time"] == created.json()["user"]["create_time"]
    # Proto field names; 64-bit integers as strings. Credits knows the new wallet holds nothing
    # (zero, which differs from unknown) and mining that it is no miner.
    assert set(user) == {
        "wallet_address",
        "create_time",
        "available_micro_credits",
        "reserved_micro_credits",
        "is_miner",
    }
    assert (user["available_micro_credits"], user["reserved_micro_credits"]) == ("0", "0")
    assert user["is_miner"] is False


async def test_a_response_carries_a_request_id(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/v1/network/stats")

    assert reply.status_code == 200, reply.text
    assert reply.headers["x-request-id"]
    # 64-bit integers as strings; every peer answers, so every field is there.
    assert set(reply.json()) == {
        "total_users",
        "total_micro_credits",
        "active_miners",
        "block_height",
    }
    assert all(reply.json()[name].isdigit() for name in reply.json())


async def test_a_bad_wallet_address_is_a_400_status_naming_the_field(
    rest: httpx.AsyncClient,
) -> None:
    reply = await rest.post("/v1/users", json={"wallet_address": "remes1notawallet"})

    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    status = reply.json()
    assert status["code"] == 3  # INVALID_ARGUMENT
    assert status["message"]
    violations = detail(status, BAD_REQUEST_TYPE)["field_violations"]
    assert [v["field"] for v in violations] == ["wallet_address"]
    assert detail(status, ERROR_INFO_TYPE)["domain"] == "users.r3mes.network"


async def test_an_unknown_wallet_is_a_404_status_with_its_reason(rest: httpx.AsyncClient) -> None:
    reply = await rest.get(f"/v1/users/{new_wallet_address()}")

    assert reply.status_code == 404
    status = reply.json()
    assert status["code"] == 5  # NOT_FOUND
    assert detail(status, ERROR_INFO_TYPE)["reason"] == "USER_NOT_FOUND"


async def test_an_unknown_query_parameter_is_ignored(rest: httpx.AsyncClient) -> None:
    wallet = new_wallet_address()
    await rest.post("/v1/users", json={"wallet_address": wallet})

    reply = await rest.get(f"/v1/users/{wallet}", params={"utm_source": "newsletter", "x": "1"})

    assert reply.status_code == 200, reply.text
    assert reply.json()["user"]["wallet_address"] == wallet


async def test_a_body_over_the_limit_is_refused_with_413(rest: httpx.AsyncClient) -> None:
    oversized = {"wallet_address": "x" * MAX_REQUEST_BYTES}

    reply = await rest.post("/v1/users", json=oversized)

    assert reply.status_code == 413
    assert reply.json()["code"] == 8  # RESOURCE_EXHAUSTED, as a gRPC server says it


async def test_a_body_just_under_the_limit_reaches_the_service(rest: httpx.AsyncClient) -> None:
    almost = {"wallet_address": "x" * (MAX_REQUEST_BYTES - 100)}

    reply = await rest.post("/v1/users", json=almost)

    assert reply.status_code == 400  # the service's validation, not the gateway's limit


async def test_an_unknown_path_is_a_404_status(rest: httpx.AsyncClient) -> None:
    reply = await rest.get("/v1/no-such-thing")

    assert reply.status_code == 404
    assert reply.json() == {"code": 5, "message": "no such route", "details": []}


async def test_malformed_json_is_a_400_status(rest: httpx.AsyncClient) -> None:
    reply = await rest.post(
        "/v1/users", content=b'{"wallet_address": ', headers={"content-type": "application/json"}
    )

    assert reply.status_code == 400
    assert reply.json()["code"] == 3
