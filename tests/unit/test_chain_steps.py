"""The interceptor chain's steps on their own: parsing, admission, request ids, authentication."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import pytest
from r3mes.users.v1 import users_pb2

from services.core.auth import ANONYMOUS, INTERNAL, InternalTokenAuthenticator, Principal
from services.core.errors import InvalidArgument, Unauthenticated, Unavailable
from services.core.interceptors.admission import Admission
from services.core.interceptors.authentication import Authentication
from services.core.interceptors.context import CallRecord, log_access, request_id_for
from services.core.interceptors.parsing import Unparseable, tolerant
from services.core.interceptors.validation import validate
from services.core.settings import DRAIN_QUIET_SECONDS
from services.core.testing import new_wallet_address

WALLET = new_wallet_address()
USERS_GET = "/r3mes.users.v1.UsersService/GetUser"


# --- parsing and validation -----------------------------------------------------------------------


def test_bytes_that_parse_become_the_request_message() -> None:
    deserialize = tolerant(users_pb2.GetUserRequest.FromString)
    assert deserialize is not None
    raw = users_pb2.GetUserRequest(wallet_address=WALLET).SerializeToString()

    assert deserialize(raw) == users_pb2.GetUserRequest(wallet_address=WALLET)


def test_bytes_that_do_not_parse_become_a_marker_the_validation_step_refuses() -> None:
    deserialize = tolerant(users_pb2.GetUserRequest.FromString)
    assert deserialize is not None

    marker = deserialize(b"\xff\xff\xff\xff")
    assert isinstance(marker, Unparseable)
    with pytest.raises(InvalidArgument) as raised:
        validate(marker)
    assert raised.value.reason == "MALFORMED_MESSAGE"
    assert raised.value.message == (
        "the request is not a valid r3mes.users.v1.GetUserRequest message"
    )


def test_a_raw_bytes_method_keeps_having_no_deserializer() -> None:
    assert tolerant(None) is None


# --- admission ------------------------------------------------------------------------------------


async def test_a_draining_server_refuses_new_calls_but_still_answers_health_checks() -> None:
    admission = Admission()
    draining = asyncio.ensure_future(admission.drain(grace_seconds=1))
    await asyncio.sleep(0)

    with pytest.raises(Unavailable) as raised:
        admission.enter(USERS_GET)
    admission.enter("/grpc.health.v1.Health/Check")
    admission.leave()
    await draining

    assert raised.value.reason == "SHUTTING_DOWN"


async def test_draining_waits_for_the_running_calls_and_hands_back_the_grace_left() -> None:
    admission = Admission()
    admission.enter(USERS_GET)
    admission.enter(USERS_GET)
    asyncio.get_running_loop().call_later(0.05, admission.leave)
    asyncio.get_running_loop().call_later(0.1, admission.leave)

    remaining = await admission.drain(grace_seconds=5)

    assert admission.running == 0
    assert 4 < remaining < 5


async def test_draining_with_nothing_running_still_refuses_calls_for_a_quiet_spell() -> None:
    # Calls grpc has received but not yet handed over arrive after the drain began: they are
    # refused (UNAVAILABLE, retried elsewhere) rather than cancelled by the server's stop.
    admission = Admission()
    draining = asyncio.ensure_future(admission.drain(grace_seconds=5))
    await asyncio.sleep(DRAIN_QUIET_SECONDS / 2)

    with pytest.raises(Unavailable):
        admission.enter(USERS_GET)
    still_draining = not draining.done()
    await draining

    assert still_draining


async def test_draining_gives_up_at_the_end_of_the_grace_period() -> None:
    admission = Admission()
    admission.enter(USERS_GET)

    remaining = await admission.drain(grace_seconds=0.05)

    assert (admission.running, remaining) == (1, 0.0)


# --- request context ------------------------------------------------------------------------------


@pytest.mark.parametrize("offered", ["trace-42", "x" * 128])
def test_a_usable_request_id_from_the_caller_is_kept(offered: str) -> None:
    assert request_id_for(offered) == offered


@pytest.mark.parametrize("offered", [None, "", "x" * 129, "line\nbreak"])
def test_an_unusable_request_id_is_replaced_by_a_fresh_one(offered: str | None) -> None:
    made = request_id_for(offered)
    assert re.fullmatch(r"[0-9a-f]{32}", made), made
    assert made != request_id_for(offered)


def test_a_call_is_logged_once_however_often_it_is_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="r3mes.access")
    record = CallRecord(USERS_GET, "trace-1", "127.0.0.1")

    log_access(record)
    log_access(record)

    assert [r.getMessage() for r in caplog.records if r.name == "r3mes.access"] == ["rpc"]


# --- authentication -------------------------------------------------------------------------------


class Fixed:
    def __init__(self, principal: Principal | None) -> None:
        self.principal = principal
        self.asked = 0

    async def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        self.asked += 1
        return self.principal


async def test_the_first_authenticator_that_recognises_a_credential_decides() -> None:
    wallet = Fixed(Principal.wallet(WALLET))
    never = Fixed(INTERNAL)

    found = await Authentication([Fixed(None), wallet, never]).principal({})

    assert found == Principal.wallet(WALLET)
    assert never.asked == 0


async def test_a_caller_without_credentials_is_anonymous() -> None:
    assert await Authentication([Fixed(None)]).principal({}) == ANONYMOUS


async def test_a_wrong_internal_token_is_refused_not_taken_for_anonymous() -> None:
    authentication = Authentication([InternalTokenAuthenticator("right")])

    with pytest.raises(Unauthenticated):
        await authentication.principal({"x-r3mes-internal-token": "wrong"})
