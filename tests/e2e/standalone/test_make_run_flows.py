"""`make run` (runner/run.py on its defaults) hosts every service in one process and answers
every flow as a reader drives it: REST through the gateway its banner prints, and the internal
calls (grants, reservations, mining reports) on the gRPC port it prints, with the internal
token it wrote into its data folder (docs/console.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from r3mes.credits.v1 import credits_pb2, credits_pb2_grpc
from r3mes.mining.v1 import mining_pb2, mining_pb2_grpc

from runner.run import HOST, REFERENCE_NODE, command_marker
from services.core.registry import SERVICES
from services.core.testing import new_wallet_address
from services.core.tls import client_context
from tests.e2e.make_run import Runner, descendants, running_make_run
from tests.integration.mining_support import stats
from tools.wallet import Wallet, first_api_key

CREDIT = 1_000_000
PROCESSES = (HOST, "frontdoor", "envoy", REFERENCE_NODE)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    with running_make_run(tmp_path_factory.mktemp("make-run-flows") / "data") as started:
        yield started


@pytest.fixture
def rest(run: Runner) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=run.banner.gateway, timeout=10, verify=client_context()) as client:
        yield client


@pytest.fixture
def channel(run: Runner) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(run.banner.grpc) as opened:
        yield opened


def grant(channel: grpc.Channel, run: Runner, wallet: str, amount: int) -> None:
    credits_pb2_grpc.CreditsServiceStub(channel).GrantCredits(
        credits_pb2.GrantCreditsRequest(
            wallet_address=wallet, amount_micro_credits=amount, idempotency_key=f"grant-{wallet}"
        ),
        metadata=run.internal,
        timeout=5,
    )


def user(rest: httpx.Client, wallet: str) -> dict[str, Any]:
    reply = rest.get(f"/v1/users/{wallet}")
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()["user"]
    return found


def test_one_service_process_serves_every_service_on_the_one_grpc_port_it_prints(
    run: Runner, channel: grpc.Channel
) -> None:
    commands = list(descendants(run.process.pid).values())
    health = health_pb2_grpc.HealthStub(channel)

    statuses = {
        spec.proto_service: health.Check(
            health_pb2.HealthCheckRequest(service=spec.proto_service), timeout=5
        ).status
        for spec in SERVICES
    }

    assert run.banner.grpc == f"127.0.0.1:{run.ports.grpc['users']}"
    # Each of the runner's processes is one of these, once: no `services.<name>` of its own.
    running = {name: [c for c in commands if command_marker(name) in c] for name in PROCESSES}
    assert {name: len(found) for name, found in running.items()} == dict.fromkeys(PROCESSES, 1)
    assert len(commands) == len(PROCESSES)
    assert set(statuses.values()) == {health_pb2.HealthCheckResponse.SERVING}
    assert len(statuses) == 5


def test_get_user_shows_the_granted_balance_and_the_mining_status_after_a_report(
    run: Runner, rest: httpx.Client, channel: grpc.Channel
) -> None:
    wallet = new_wallet_address()
    created = rest.post("/v1/users", json={"wallet_address": wallet})
    assert created.status_code == 200, created.text
    fresh = user(rest, wallet)
    mined_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

    grant(channel, run, wallet, 5 * CREDIT)
    mining_pb2_grpc.MiningServiceStub(channel).RecordMiningStats(
        stats(wallet, "flows-1", hashrate=12.5, earned=300_000, observe_time=mined_at),
        metadata=run.internal,
        timeout=5,
    )
    after = user(rest, wallet)

    assert (fresh["available_micro_credits"], fresh["is_miner"]) == ("0", False)
    assert after["wallet_address"] == wallet
    assert after["available_micro_credits"] == "5000000"
    assert after["reserved_micro_credits"] == "0"
    assert after["is_miner"] is True
    assert after["last_mining_time"] == mined_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_network_stats_count_the_new_wallets_their_credits_and_the_new_miner(
    run: Runner, rest: httpx.Client, channel: grpc.Channel
) -> None:
    before = rest.get("/v1/network/stats").json()
    wallets = [new_wallet_address() for _ in range(2)]
    for wallet in wallets:
        assert rest.post("/v1/users", json={"wallet_address": wallet}).status_code == 200
        grant(channel, run, wallet, 2 * CREDIT)
    mining_pb2_grpc.MiningServiceStub(channel).RecordMiningStats(
        stats(wallets[0], "flows-stats"), metadata=run.internal, timeout=5
    )

    after = rest.get("/v1/network/stats").json()

    assert int(after["total_users"]) - int(before["total_users"]) == 2
    assert int(after["total_micro_credits"]) - int(before["total_micro_credits"]) == 4 * CREDIT
    assert int(after["active_miners"]) - int(before["active_miners"]) == 1


def test_an_api_key_is_created_from_a_signature_used_and_revoked_through_the_gateway(
    rest: httpx.Client,
) -> None:
    wallet = Wallet.new()
    keys = f"/v1/wallets/{wallet.address}/apikeys"
    first = first_api_key(rest, wallet, "make-run")

    second = rest.post(keys, json={"name": "second"}, headers={"x-api-key": first})
    listed = rest.get(keys, headers={"x-api-key": second.json()["secret"]})
    key_id = second.json()["api_key"]["key_id"]
    revoked = rest.post(f"{keys}/{key_id}:revoke", json={}, headers={"x-api-key": first})
    refused = rest.get(keys, headers={"x-api-key": second.json()["secret"]})
    still = rest.get(keys, headers={"x-api-key": first})

    assert second.status_code == 200, second.text
    assert listed.status_code == 200, listed.text
    assert [key["name"] for key in listed.json()["api_keys"]] == ["second", "make-run"]
    assert revoked.status_code == 200, revoked.text
    assert refused.status_code == 401
    assert refused.json()["details"][0]["reason"] == "API_KEY_REVOKED"
    assert still.status_code == 200
    states = {key["name"]: key["state"] for key in still.json()["api_keys"]}
    assert states == {"second": "API_KEY_STATE_REVOKED", "make-run": "API_KEY_STATE_ACTIVE"}


def test_a_reservation_holds_credits_then_a_confirm_charges_part_and_a_rollback_releases(
    run: Runner, rest: httpx.Client, channel: grpc.Channel
) -> None:
    wallet = new_wallet_address()
    assert rest.post("/v1/users", json={"wallet_address": wallet}).status_code == 200
    grant(channel, run, wallet, CREDIT)
    credits = credits_pb2_grpc.CreditsServiceStub(channel)

    def reserve(amount: int, key: str) -> str:
        reply = credits.ReserveCredits(
            credits_pb2.ReserveCreditsRequest(
                wallet_address=wallet, amount_micro_credits=amount, idempotency_key=key
            ),
            metadata=run.internal,
            timeout=5,
        )
        reservation_id: str = reply.reservation.reservation_id
        return reservation_id

    charged = reserve(300_000, "flows-r1")
    held = user(rest, wallet)
    credits.ConfirmReservation(
        credits_pb2.ConfirmReservationRequest(
            reservation_id=charged, amount_micro_credits=200_000, idempotency_key="flows-c1"
        ),
        metadata=run.internal,
        timeout=5,
    )
    confirmed = user(rest, wallet)
    released = reserve(100_000, "flows-r2")
    credits.RollbackReservation(
        credits_pb2.RollbackReservationRequest(reservation_id=released, idempotency_key="flows-b1"),
        metadata=run.internal,
        timeout=5,
    )
    rolled_back = rest.get(f"/v1/wallets/{wallet}/balance").json()["balance"]

    assert (held["available_micro_credits"], held["reserved_micro_credits"]) == ("700000", "300000")
    assert (confirmed["available_micro_credits"], confirmed["reserved_micro_credits"]) == (
        "800000",
        "0",
    )
    assert (rolled_back["available_micro_credits"], rolled_back["reserved_micro_credits"]) == (
        "800000",
        "0",
    )


def test_a_reservation_without_the_internal_token_is_refused(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        credits_pb2_grpc.CreditsServiceStub(channel).ReserveCredits(
            credits_pb2.ReserveCreditsRequest(
                wallet_address=new_wallet_address(), amount_micro_credits=1, idempotency_key="x"
            ),
            timeout=5,
        )

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_mining_reports_recorded_on_the_grpc_port_read_back_through_the_gateway(
    run: Runner, rest: httpx.Client, channel: grpc.Channel
) -> None:
    wallet = new_wallet_address()
    now = datetime.now(UTC).replace(microsecond=0)
    newest = now - timedelta(minutes=1)  # within 15 minutes: its hashrate is the current one
    reports = [
        stats(wallet, "flows-m1", hashrate=10.0, earned=100, observe_time=now - timedelta(hours=1)),
        stats(wallet, "flows-m2", hashrate=30.0, earned=250, observe_time=newest),
    ]
    mining_pb2_grpc.MiningServiceStub(channel).BatchRecordMiningStats(
        mining_pb2.BatchRecordMiningStatsRequest(requests=reports),
        metadata=run.internal,
        timeout=5,
    )

    reply = rest.get(f"/v1/miners/{wallet}/stats")

    assert reply.status_code == 200, reply.text
    shown = reply.json()["stats"]
    assert shown["current_hashrate"] == 30.0
    assert (shown["total_earned_micro_credits"], shown["report_count"]) == ("350", "2")
    assert shown["active"] is True
    assert shown["last_report_time"] == newest.strftime("%Y-%m-%dT%H:%M:%SZ")
