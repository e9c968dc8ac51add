"""Clients in other languages: the Node.js examples of clients/node-example (shown verbatim in
docs/api.md) run with node against the real gateway. Over gRPC they read an int64 above 2^53
exactly and decode an error's details from the published descriptor set; over REST they get a
wallet's first API key with a cosmjs signature. `make node-example` (a step of `make test`)
installs their packages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

import grpc
import httpx
import pytest
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc

from gateway.paths import ROOT
from runner.local_stack import LocalStack
from services.core.auth import INTERNAL_TOKEN_HEADER
from services.core.testing import new_wallet_address
from tests.e2e.conftest import INTERNAL_TOKEN

EXAMPLE = ROOT / "clients" / "node-example"
NODE = shutil.which("node") or "node"
ABOVE_2_POW_53 = 2**53 + 1  # the first integer a JavaScript number cannot hold
MAX_GRANT = 10**15  # GrantCredits' bound per call
_JS_BLOCK = re.compile(r"^```js\n(.*?)^```", re.MULTILINE | re.DOTALL)


def run_node(script: str, stack: LocalStack, *arguments: str) -> str:
    assert (EXAMPLE / "node_modules").is_dir(), "run `make node-example` (npm ci) first"
    environment = {**os.environ, "R3MES_GRPC": stack.gateway_target, "R3MES_BASE": stack.rest_url}
    ran = subprocess.run(
        [NODE, script, *arguments],
        cwd=EXAMPLE,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


async def wallet_holding(stack: LocalStack, micro_credits: int) -> str:
    wallet = new_wallet_address()
    async with grpc.aio.insecure_channel(stack.grpc_target("credits")) as channel:
        credits = credits_pb2_grpc.CreditsServiceStub(channel)
        grants = [MAX_GRANT] * (micro_credits // MAX_GRANT) + [micro_credits % MAX_GRANT]
        for number, amount in enumerate(grants):
            await credits.GrantCredits(
                credits_pb2.GrantCreditsRequest(
                    wallet_address=wallet,
                    amount_micro_credits=amount,
                    idempotency_key=f"node-{wallet}-{number}",
                ),
                metadata=((INTERNAL_TOKEN_HEADER, INTERNAL_TOKEN),),
            )
    return wallet


@pytest.fixture(scope="module")
async def grpc_output(stack: LocalStack) -> dict[str, Any]:
    wallet = await wallet_holding(stack, ABOVE_2_POW_53)
    output: dict[str, Any] = json.loads(run_node("grpc-client.mjs", stack, wallet))
    return output


def test_grpc_js_reads_an_int64_above_2_pow_53_exactly(grpc_output: dict[str, Any]) -> None:
    assert grpc_output["available_micro_credits"] == str(ABOVE_2_POW_53)


def test_grpc_js_decodes_the_field_violations_of_a_bad_request(
    grpc_output: dict[str, Any],
) -> None:
    assert grpc_output["bad_field"] == {
        "code": grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "INVALID_ARGUMENT",
                "domain": "users.r3mes.network",
            },
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "field_violations": [
                    {"field": "wallet_address", "description": "is too short to hold a checksum"}
                ],
            },
        ],
    }


def test_a_bad_key_is_refused_in_the_domain_of_the_service_that_answered(
    grpc_output: dict[str, Any],
) -> None:
    (info,) = grpc_output["bad_key"]["details"]

    assert grpc_output["bad_key"]["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert (info["reason"], info["domain"]) == ("API_KEY_INVALID", "users.r3mes.network")


def test_a_cosmjs_signature_gets_a_wallet_its_first_key(stack: LocalStack) -> None:
    printed = dict(line.split("=", 1) for line in run_node("first-api-key.mjs", stack).split())

    listed = httpx.get(
        f"{stack.rest_url}/v1/wallets/{printed['WALLET']}/apikeys",
        headers={"x-api-key": printed["API_KEY"]},
    )

    assert listed.status_code == 200, listed.text
    assert [key["name"] for key in listed.json()["api_keys"]] == ["node"]


def test_the_docs_show_the_node_examples_that_the_tests_run() -> None:
    shown = _JS_BLOCK.findall((ROOT / "docs" / "api.md").read_text())

    assert shown == [
        (EXAMPLE / "first-api-key.mjs").read_text(),
        (EXAMPLE / "grpc-client.mjs").read_text(),
    ]
