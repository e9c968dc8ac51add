"""Browsers on the configured origins may call the API; others get no CORS grant."""

from __future__ import annotations

import httpx

from services.core.testing import new_wallet_address
from tests.e2e.conftest import ALLOWED_ORIGIN


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-api-key",
    }


async def test_a_preflight_from_an_allowed_origin_is_granted(rest: httpx.AsyncClient) -> None:
    reply = await rest.options("/v1/users", headers=preflight_headers(ALLOWED_ORIGIN))

    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in reply.headers["access-control-allow-methods"]
    allowed_headers = reply.headers["access-control-allow-headers"].split(",")
    assert {"x-api-key", "authorization", "content-type", "x-grpc-web"} <= set(allowed_headers)


async def test_a_preflight_from_another_origin_is_not_granted(rest: httpx.AsyncClient) -> None:
    reply = await rest.options("/v1/users", headers=preflight_headers("https://evil.example"))

    assert "access-control-allow-origin" not in reply.headers


async def test_a_preflight_from_another_origin_is_refused_with_a_reason_naming_it(
    rest: httpx.AsyncClient,
) -> None:
    reply = await rest.options("/v1/users", headers=preflight_headers("https://evil.example"))

    assert reply.status_code == 403
    assert reply.json() == {
        "code": 7,
        "message": "CORS: the origin https://evil.example is not allowed to call this API "
        "(the gateway's R3MES_CORS_ORIGINS lists those that are)",
        "details": [],
    }


async def test_a_cross_origin_response_exposes_the_rate_limit_and_request_id_headers(
    rest: httpx.AsyncClient,
) -> None:
    reply = await rest.get(f"/v1/users/{new_wallet_address()}", headers={"origin": ALLOWED_ORIGIN})

    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    exposed = set(reply.headers["access-control-expose-headers"].split(","))
    assert {"ratelimit-policy", "ratelimit", "x-request-id", "grpc-status"} <= exposed
