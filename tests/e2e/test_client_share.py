"""One client address holds at most a bounded share of a service's calls in flight through the
gateway: past it, its calls are RESOURCE_EXHAUSTED at once, and other clients are still served."""

from __future__ import annotations

import grpc

from gateway.limits import ENVOY_WORKERS, MAX_CALLS_PER_CLIENT_PER_WORKER, MAX_UPSTREAM_REQUESTS
from runner.local_stack import LOOPBACK, LocalStack
from tests.e2e.raw import RawCalls
from tests.e2e.standalone.test_route_timeout import stopped
from tests.e2e.test_grpc_clients import grpc_web_frame
from tests.e2e.test_malformed_calls import get_user_message

NOT_FOUND = str(grpc.StatusCode.NOT_FOUND.value[0])
RESOURCE_EXHAUSTED = str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
CALLS_PER_CONNECTION = 100  # the most one HTTP/2 connection may run at once
CONNECTIONS = 6  # 600 calls: more than the service's MAX_UPSTREAM_REQUESTS (512)
MOST_HELD = ENVOY_WORKERS * MAX_CALLS_PER_CLIENT_PER_WORKER
# Another loopback address: another client to the gateway.
OTHER_CLIENT = "127.0.0.2"
# Well within the route timeout (15 s): every call here is answered before the gateway gives up.
REPLY_WAIT_SECONDS = 10.0


def test_one_client_filling_a_stopped_service_is_refused_past_its_share_and_others_are_served(
    stack: LocalStack,
) -> None:
    body = grpc_web_frame(get_user_message())
    opened: list[RawCalls] = []

    def send(source: str, count: int) -> RawCalls:
        calls = RawCalls.open(
            stack.ports.gateway, count, "application/grpc", body, complete=True, source=source
        )
        opened.append(calls)
        # Let the gateway refuse what it refuses before the next connection comes.
        calls.wait_until_all_ended(0.5)
        return calls

    try:
        with stopped(stack, "users"):
            flood = [send(LOOPBACK, CALLS_PER_CONNECTION) for _ in range(CONNECTIONS)]
            other = send(OTHER_CLIENT, 1)
            other_ended_while_stopped = bool(other.ended)
        for calls in opened:
            calls.wait_until_all_ended(REPLY_WAIT_SECONDS)
    finally:
        for calls in opened:
            calls.close()

    statuses = [status for calls in flood for status in calls.statuses()]
    assert len(statuses) == CONNECTIONS * CALLS_PER_CONNECTION
    assert set(statuses) == {NOT_FOUND, RESOURCE_EXHAUSTED}
    assert statuses.count(NOT_FOUND) <= MOST_HELD < MAX_UPSTREAM_REQUESTS
    refusal = next(r for c in flood for r in c.responses.values() if r["grpc-status"] != NOT_FOUND)
    assert refusal["grpc-message"] == (
        "too many calls in flight from one address; retry when some have ended"
    )
    # The other client's call waited for the service like any call, and the service answered it.
    assert not other_ended_while_stopped
    assert other.statuses() == [NOT_FOUND]
