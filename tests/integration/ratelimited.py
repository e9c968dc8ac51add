"""A rate-limited server for the rate-limit tests: the credits service's GetBalance answered by
a stand-in (the chain is what is under test), callers named by a header of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from services.core.auth import InternalTokenAuthenticator, Principal
from services.core.errors import Unauthenticated
from services.core.lifecycle import ServiceServer, build_server, registration
from services.core.settings import Settings
from services.core.testing import running_server

WALLET_HEADER = "x-test-wallet"
TOKEN = "ratelimit-test-token"
GATEWAY_SECRET = "ratelimit-test-gateway-secret"
# What the gateway adds to a call it forwards for a client (gateway/render.py).
FROM_GATEWAY = (("x-r3mes-gateway-secret", GATEWAY_SECRET),)
# Small quotas, so that a test reaches them in a few calls; per hour, so that no call is
# refilled while a slow machine runs the test.
POLICIES = """
policies:
  read: 3/hour
  write: 2/hour
default: write
internal: exempt
methods:
  r3mes.credits.v1.CreditsService.GetBalance: read
"""


class HeaderAuthenticator:
    """`x-test-wallet: <address>` is that wallet; `x-test-wallet: bad` a wrong credential."""

    async def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        wallet = metadata.get(WALLET_HEADER)
        if wallet is None:
            return None
        if wallet == "bad":
            raise Unauthenticated("the test credential is not valid", reason="BAD_TEST_WALLET")
        return Principal.wallet(wallet)


class Balances(credits_pb2_grpc.CreditsServiceServicer):
    """Answers GetBalance at once, or with `answer` given, once it is set (`running` is set
    meanwhile)."""

    def __init__(self, answer: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.running = asyncio.Event()

    async def GetBalance(
        self, request: credits_pb2.GetBalanceRequest, context: Any
    ) -> credits_pb2.GetBalanceResponse:
        self.running.set()
        if self.answer is not None:
            await self.answer.wait()
        return credits_pb2.GetBalanceResponse()


def policy_file(directory: Path, text: str = POLICIES) -> Path:
    path = directory / "policies.yaml"
    path.write_text(text)
    return path


def limited_settings(directory: Path, **changes: Any) -> Settings:
    return Settings(
        data_dir=directory,
        internal_token=TOKEN,
        gateway_secret=GATEWAY_SECRET,
        ratelimit_policies_file=policy_file(directory),
        **changes,
    )


async def create_limited_server(
    settings: Settings, balances: Balances | None = None
) -> tuple[ServiceServer, int]:
    service = credits_pb2.DESCRIPTOR.services_by_name["CreditsService"]
    add = credits_pb2_grpc.add_CreditsServiceServicer_to_server
    return build_server(
        settings,
        "credits",
        # The stubs mark every RPC abstract; the others answer UNIMPLEMENTED.
        [registration(add, balances or Balances(), service)],  # type: ignore[abstract]
        authenticators=[
            InternalTokenAuthenticator(TOKEN),
            HeaderAuthenticator(),
        ],
    )


@asynccontextmanager
async def limited_server(
    settings: Settings, balances: Balances | None = None
) -> AsyncIterator[tuple[ServiceServer, grpc.aio.Channel]]:
    create = partial(create_limited_server, balances=balances)
    async with running_server(create, settings, "credits") as running:
        yield running


def quota_subjects(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    subjects: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            subjects.extend(violation.subject for violation in failure.violations)
    return subjects


def retry_delay_seconds(error: grpc.aio.AioRpcError) -> float | None:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            nanoseconds: int = info.retry_delay.ToNanoseconds()
            return nanoseconds / 1e9
    return None


def says_ratelimit(header: str, policy: str, remaining: int, reset: int, slack: int = 10) -> bool:
    """Whether a RateLimit header says `remaining` calls of `policy` left, full again in `reset`
    seconds less at most `slack`: on the real clock, a test's calls may be seconds apart on a
    busy machine, and each second passed takes one off the reset."""
    fields = dict(part.split("=", 1) for part in header.split(";")[1:])
    return (
        header.startswith(f'"{policy}";')
        and int(fields["r"]) == remaining
        and reset - slack <= int(fields["t"]) <= reset
    )
