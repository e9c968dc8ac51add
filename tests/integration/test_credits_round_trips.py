"""On PostgreSQL every money move and every read of credits is one statement, sent without BEGIN
or COMMIT: one round trip, and the wallet's row locked for that one statement."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.core.testing import new_wallet_address
from tests.conftest import RUN_SUFFIX, settings_for
from tests.integration.credits_support import CREDIT, running_credits
from tests.integration.round_trips import statements_sent


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_every_money_move_and_read_is_one_statement_without_begin_or_commit(
    tmp_path: Path,
) -> None:
    settings = settings_for("postgres", tmp_path, suffix=f"{RUN_SUFFIX}_{uuid.uuid4().hex[:6]}")
    async with running_credits(settings) as credits:
        wallet = new_wallet_address()
        await credits.grant(wallet, 10 * CREDIT)  # each pooled connection prepares once
        sent: dict[str, list[str]] = {}

        with statements_sent() as sent["grant"]:
            await credits.grant(wallet, CREDIT)
        with statements_sent() as sent["deduct"]:
            await credits.deduct(wallet, CREDIT)
        with statements_sent() as sent["reserve"]:
            held = await credits.reserve(wallet, CREDIT)
        with statements_sent() as sent["confirm"]:
            await credits.confirm(held.reservation.reservation_id)
        second = await credits.reserve(wallet, CREDIT)
        with statements_sent() as sent["roll back"]:
            await credits.roll_back(second.reservation.reservation_id)
        with statements_sent() as sent["balance"]:
            await credits.balance(wallet)
        with statements_sent() as swept:
            assert await credits.sweep()

        assert {move: len(statements) for move, statements in sent.items()} == {
            move: 1 for move in sent
        }, sent
        # The sweep's expiry, then its read of the holds still open for the metrics.
        assert ["expire_due(" in statement for statement in swept] == [True, False], swept
