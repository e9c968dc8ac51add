"""The mining rules about days, windows and reports, without storage."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.mining.domain import (
    DayRollup,
    MinerTotals,
    NewReport,
    StatsReport,
    batch_violations,
    current_hashrate,
    day_rollups,
    earnings_points,
    hashrate_points,
    history_days,
    is_active,
    miner_totals,
    report_violations,
    utc_day,
)

WALLET = "remes1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqxg6d7y"
NOW = datetime(2028, 3, 1, 0, 30, tzinfo=UTC)


def new_report(
    hashrate: float = 10.0, observe_time: datetime | None = None, key: str = "k"
) -> NewReport:
    return NewReport(WALLET, hashrate, 5, observe_time, key)


def report(observe_time: datetime, hashrate: float = 10.0, earned: int = 5) -> StatsReport:
    return StatsReport(WALLET, hashrate, earned, observe_time, observe_time)


def test_the_utc_day_of_a_time_is_its_calendar_day_in_utc_whatever_its_zone() -> None:
    tokyo = timezone(timedelta(hours=9))

    assert utc_day(datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)) == date(2028, 2, 29)
    assert utc_day(datetime(2028, 3, 1, 0, 0, 0, tzinfo=UTC)) == date(2028, 3, 1)
    assert utc_day(datetime(2028, 3, 1, 8, 0, tzinfo=tokyo)) == date(2028, 2, 29)


def test_a_history_has_exactly_days_points_oldest_first_ending_today() -> None:
    assert history_days(date(2028, 3, 1), 1) == [date(2028, 3, 1)]
    assert history_days(date(2028, 3, 1), 3) == [
        date(2028, 2, 28),
        date(2028, 2, 29),
        date(2028, 3, 1),
    ]
    year = history_days(date(2028, 3, 1), 365)
    assert len(year) == 365
    assert (year[0], year[-1]) == (date(2027, 3, 3), date(2028, 3, 1))


@pytest.mark.parametrize("days", [0, 366, -1])
def test_a_history_outside_1_to_365_days_is_refused(days: int) -> None:
    with pytest.raises(ValueError, match="days"):
        history_days(date(2028, 3, 1), days)


def test_days_without_reports_are_points_at_zero() -> None:
    rollups = [DayRollup(WALLET, date(2028, 2, 28), 2, 30, 50.0, 40.0)]

    earnings = earnings_points(rollups, date(2028, 3, 1), 3)
    hashrates = hashrate_points(rollups, date(2028, 3, 1), 3)

    assert [(p.day, p.earned_micro_credits) for p in earnings] == [
        (date(2028, 2, 28), 30),
        (date(2028, 2, 29), 0),
        (date(2028, 3, 1), 0),
    ]
    assert [(p.average_hashrate, p.peak_hashrate) for p in hashrates] == [
        (25.0, 40.0),
        (0.0, 0.0),
        (0.0, 0.0),
    ]


def test_reports_are_summed_per_wallet_and_utc_day_across_midnight() -> None:
    before = report(datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC), hashrate=10.0, earned=1)
    after = report(datetime(2028, 3, 1, 0, 0, 0, tzinfo=UTC), hashrate=30.0, earned=2)
    also_after = report(datetime(2028, 3, 1, 0, 0, 1, tzinfo=UTC), hashrate=50.0, earned=4)

    assert day_rollups([after, before, also_after]) == [
        DayRollup(WALLET, date(2028, 2, 29), 1, 1, 10.0, 10.0),
        DayRollup(WALLET, date(2028, 3, 1), 2, 6, 80.0, 50.0),
    ]


def test_the_newest_observed_report_gives_the_last_hashrate_whatever_the_arrival_order() -> None:
    early = report(datetime(2028, 2, 1, tzinfo=UTC), hashrate=1.0, earned=3)
    late = report(datetime(2028, 2, 5, tzinfo=UTC), hashrate=9.0, earned=4)

    assert miner_totals([late, early]) == [
        MinerTotals(WALLET, early.observe_time, late.observe_time, 9.0, 7, 2)
    ]


def test_the_current_hashrate_is_the_newest_reports_for_15_minutes_then_zero() -> None:
    totals = MinerTotals(WALLET, NOW, NOW, 42.5, 0, 1)

    assert current_hashrate(totals, NOW + timedelta(minutes=15)) == 42.5
    assert current_hashrate(totals, NOW + timedelta(minutes=15, seconds=1)) == 0.0


def test_a_miner_is_active_for_24_hours_after_its_newest_report() -> None:
    assert is_active(NOW, NOW + timedelta(hours=24))
    assert not is_active(NOW, NOW + timedelta(hours=24, seconds=1))


@pytest.mark.parametrize(
    "hashrate", [-0.5, math.inf, -math.inf, math.nan, 1.7e308, math.nextafter(1e21, math.inf)]
)
def test_a_hashrate_must_be_finite_not_negative_and_at_most_1e21(hashrate: float) -> None:
    [violation] = report_violations(new_report(hashrate), NOW)

    assert violation.field == "hashrate"
    assert report_violations(new_report(1e21), NOW) == []


def test_an_observe_time_may_be_at_most_5_minutes_ahead() -> None:
    assert report_violations(new_report(observe_time=NOW + timedelta(minutes=5)), NOW) == []
    [violation] = report_violations(
        new_report(observe_time=NOW + timedelta(minutes=5, seconds=1)), NOW
    )
    assert violation.field == "observe_time"


def test_bad_batch_entries_are_named_by_index_and_a_repeated_key_is_refused() -> None:
    entries = [
        new_report(key="a"),
        new_report(key="b"),
        new_report(key="c"),
        new_report(hashrate=math.nan, key="d"),
        new_report(key="b"),
    ]

    assert [v.field for v in batch_violations(entries, NOW)] == [
        "requests[3].hashrate",
        "requests[4].idempotency_key",
    ]


def test_a_batch_of_more_than_1000_entries_is_refused_as_a_whole() -> None:
    entries = [new_report(key=f"k{i}") for i in range(1001)]

    assert [v.field for v in batch_violations(entries, NOW)] == ["requests"]
    assert batch_violations(entries[:1000], NOW) == []
