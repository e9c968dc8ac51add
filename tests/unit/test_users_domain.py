"""The users domain's reading of its peers' events: exact integer balances, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.users.domain import Balance, MiningStatus, balance_of_event, mining_status_of_event


def test_a_balance_event_is_read_as_exact_micro_credits() -> None:
    big = 10**18 - 1

    assert balance_of_event({"available": big, "reserved": 0}) == Balance(big, 0)


@pytest.mark.parametrize("figure", [1.5, 1.0, "7", True, -1, None])
def test_a_balance_event_with_anything_but_a_whole_non_negative_number_is_refused(
    figure: object,
) -> None:
    with pytest.raises(ValueError, match="available"):
        balance_of_event({"available": figure, "reserved": 0})


@pytest.mark.parametrize(
    "written",
    ["2026-01-15 12:00:00.000000", "2026-01-15T12:00:00+00:00", "2026-01-15T13:00:00+01:00"],
)
def test_a_miner_event_is_a_miner_whose_last_report_is_read_in_utc(written: str) -> None:
    assert mining_status_of_event({"last_report_time": written}) == MiningStatus(
        True, datetime(2026, 1, 15, 12, tzinfo=UTC)
    )
