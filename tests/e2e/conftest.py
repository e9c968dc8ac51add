"""One running suite for every end-to-end test: every registered service and Envoy as real
processes on free loopback ports, with a private data folder, stopped (by pid) when the session
ends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from runner.local_stack import LocalStack, running_stack
from services.core.tls import client_context

INTERNAL_TOKEN = "e2e-internal-token"
ALLOWED_ORIGIN = "https://app.r3mes.example"
# Small enough to test cheaply, large enough (>= one HTTP/2 frame) to hold for gRPC too.
MAX_REQUEST_BYTES = 16384


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("e2e"),
        internal_token=INTERNAL_TOKEN,
        extra_environment={
            "R3MES_CORS_ORIGINS": json.dumps([ALLOWED_ORIGIN]),
            "R3MES_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
            # Every test here calls from 127.0.0.1, one address bucket for the whole session;
            # rate limits are tested on a stack of their own (test_ratelimit_gateway.py).
            "R3MES_RATELIMIT_BACKEND": "off",
        },
    ) as running:
        yield running


@pytest.fixture(scope="session")
def json_logging_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A suite that logs JSON, as deployments do: its lines carry more fields (the user agent)."""
    with running_stack(
        tmp_path_factory.mktemp("e2e-json-logs"),
        internal_token=INTERNAL_TOKEN,
        extra_environment={"R3MES_LOG_JSON": "true", "R3MES_RATELIMIT_BACKEND": "off"},
    ) as running:
        yield running


@pytest.fixture
async def rest(stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.rest_url, timeout=10.0, verify=client_context()
    ) as client:
        yield client
