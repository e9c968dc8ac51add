"""The mining use cases through an in-memory unit of work: reports folded into day rollups and
miner totals, histories with a point for every day, windows, idempotent recording and blocks."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from itertools import count

import pytest

from services.core.errors import R3mesError
from services.core.pagination import PageRequest
from services.core.testing import FakeClock
from services.mining.domain import EARNINGS_LIMIT, NewBlock, NewReport
from services.mining.repository import MiningRepositories
from services.mining.usecases import MiningUseCases
from tests.fakes.mining import MiningState, mining_unit_of_work
from tests.fakes.uow import FakeUnitOfWork

WALLET = "remes1alice"
OTHER = "remes1bob"
Unit = FakeUnitOfWork[MiningState, MiningRepositories]
_keys = count()


def report(
    hashrate: float = 100.0,
    earned: int = 10,
    observed: datetime | None = None,
    wallet: str = WALLET,
    key: str | None = None,
) -> NewReport:
    return NewReport(wallet, hashrate, earned, observed, key or f"report-{next(_keys)}")


def block(
    height: int, wallet: str = WALLET, key: str | None = None, block_hash: str = "AB12"
) -> NewBlock:
    block_time = datetime(2026, 1, 15, tzinfo=UTC)
    return NewBlock(height, block_hash, wallet, 5, block_time, key or f"block-{height}")


@pytest.fixture
def uow() -> Unit:
    return mining_unit_of_work()


@pytest.fixture
def use_cases(uow: Unit, clock: FakeClock) -> MiningUseCases:
    return MiningUseCases(uow, clock)


def today(clock: FakeClock) -> date:
    return clock.now.date()


async def test_reports_of_one_day_make_its_earnings_and_mean_and_peak_hashrate(
    use_cases: MiningUseCases, clock: FakeClock
) -> None:
    await use_cases.record_stats(report(hashrate=100.0, earned=10))
    await use_cases.record_stats(report(hashrate=300.0, earned=5))

    earnings = await use_cases.earnings_history(WALLET, 1)
    [hashrate] = await use_cases.hashrate_history(WALLET, 1)

    assert [(p.day, p.earned_micro_credits) for p in earnings.points] == [(today(clock), 15)]
    assert earnings.total_earned_micro_credits == 15
    assert (hashrate.average_hashrate, hashrate.peak_hashrate) == (200.0, 300.0)


async def test_a_history_has_a_point_for_every_day_oldest_first_with_zeros_for_missing_days(
    use_cases: MiningUseCases, clock: FakeClock
) -> None:
    await use_cases.record_stats(report(earned=7, observed=clock.now - timedelta(days=2)))
    await use_cases.record_stats(report(earned=3))
    await use_cases.record_stats(report(earned=100, observed=clock.now - timedelta(days=9)))

    earnings = await use_cases.earnings_history(WALLET, 4)
    hashrates = await use_cases.hashrate_history(WALLET, 4)

    days = [today(clock) - timedelta(days=back) for back in (3, 2, 1, 0)]
    assert [(p.day, p.earned_micro_credits) for p in earnings.points] == list(
        zip(days, [0, 7, 0, 3], strict=True)
    )
    assert earnings.total_earned_micro_credits == 10  # the report of 9 days ago is outside
    assert [p.average_hashrate for p in hashrates] == [0.0, 100.0, 0.0, 100.0]


async def test_a_wallet_that_never_reported_has_a_history_of_zeros_but_no_stats(
    use_cases: MiningUseCases,
) -> None:
    earnings = await use_cases.earnings_history(WALLET, 3)

    with pytest.raises(R3mesError) as raised:
        await use_cases.miner_stats(WALLET)

    assert [p.earned_micro_credits for p in earnings.points] == [0, 0, 0]
    assert raised.value.reason == "MINER_NOT_FOUND"


async def test_the_newest_observed_report_gives_the_current_hashrate_whatever_the_arrival_order(
    use_cases: MiningUseCases, clock: FakeClock
) -> None:
    await use_cases.record_stats(report(hashrate=50.0, observed=clock.now - timedelta(minutes=1)))
    await use_cases.record_stats(report(hashrate=80.0, observed=clock.now - timedelta(minutes=9)))

    stats = await use_cases.miner_stats(WALLET)

    assert stats.current_hashrate == 50.0
    assert (stats.report_count, stats.total_earned_micro_credits) == (2, 20)
    assert stats.first_report_time == clock.now - timedelta(minutes=9)
    assert stats.last_report_time == clock.now - timedelta(minutes=1)


async def test_a_miner_that_stopped_reads_zero_after_15_minutes_and_inactive_after_a_day(
    use_cases: MiningUseCases, clock: FakeClock
) -> None:
    await use_cases.record_stats(report(hashrate=50.0))
    await use_cases.record_block(block(7))
    clock.advance(minutes=15, seconds=1)
    quiet = await use_cases.miner_stats(WALLET)
    summary = await use_cases.network_summary()
    clock.advance(days=1)
    gone = await use_cases.miner_stats(WALLET)

    assert (quiet.current_hashrate, quiet.active, quiet.blocks_found) == (0.0, True, 1)
    assert (summary.active_miners, summary.network_hashrate, summary.block_height) == (1, 0.0, 7)
    assert gone.active is False
    assert (await use_cases.network_summary()).active_miners == 0


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (report(hashrate=-1.0), "hashrate"),
        (report(hashrate=math.nan), "hashrate"),
        (report(hashrate=math.inf), "hashrate"),
    ],
)
async def test_a_report_with_a_hashrate_that_is_not_a_finite_positive_number_is_refused(
    use_cases: MiningUseCases, uow: Unit, bad: NewReport, field: str
) -> None:
    with pytest.raises(R3mesError) as raised:
        await use_cases.record_stats(bad)

    assert raised.value.reason == "INVALID_ARGUMENT"
    assert [v.field for v in raised.value.details.field_violations] == [field]
    assert uow.state == MiningState()


async def test_a_report_observed_more_than_5_minutes_ahead_is_refused(
    use_cases: MiningUseCases, clock: FakeClock
) -> None:
    await use_cases.record_stats(report(observed=clock.now + timedelta(minutes=5)))

    with pytest.raises(R3mesError) as raised:
        await use_cases.record_stats(report(observed=clock.now + timedelta(minutes=5, seconds=1)))

    assert [v.field for v in raised.value.details.field_violations] == ["observe_time"]


async def test_a_repeated_report_is_replayed_and_counted_once(
    use_cases: MiningUseCases, uow: Unit, clock: FakeClock
) -> None:
    first = await use_cases.record_stats(report(key="same"))
    clock.advance(seconds=30)

    repeat = await use_cases.record_stats(report(key="same"))

    assert repeat == first  # received without an observe time: the first call's time
    assert (await use_cases.miner_stats(WALLET)).report_count == 1
    assert len(uow.state.reports) == 1


async def test_a_report_key_reused_with_other_parameters_is_refused(
    use_cases: MiningUseCases,
) -> None:
    await use_cases.record_stats(report(earned=1, key="same"))

    with pytest.raises(R3mesError) as raised:
        await use_cases.record_stats(report(earned=2, key="same"))

    assert raised.value.reason == "IDEMPOTENCY_KEY_REUSED"


async def test_a_batch_is_recorded_whole_and_replays_the_entries_recorded_before(
    use_cases: MiningUseCases,
) -> None:
    earlier = await use_cases.record_stats(report(key="a"))

    recorded = await use_cases.batch_record_stats(
        [report(key="a"), report(wallet=OTHER, key="b"), report(earned=1, key="c")]
    )

    assert recorded[0] == earlier
    assert (await use_cases.miner_stats(WALLET)).report_count == 2
    assert (await use_cases.miner_stats(OTHER)).report_count == 1


async def test_a_batch_with_one_reused_key_records_nothing_and_names_the_entry(
    use_cases: MiningUseCases, uow: Unit
) -> None:
    await use_cases.record_stats(report(earned=1, key="a"))
    before = uow.state

    with pytest.raises(R3mesError) as raised:
        await use_cases.batch_record_stats([report(key="new"), report(earned=2, key="a")])

    assert raised.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert raised.value.details.metadata == {"idempotency_key": "a", "index": "1"}
    assert uow.state == before


async def test_a_batch_naming_one_key_twice_is_refused_before_anything_is_recorded(
    use_cases: MiningUseCases, uow: Unit
) -> None:
    with pytest.raises(R3mesError) as raised:
        await use_cases.batch_record_stats([report(key="k"), report(key="x"), report(key="k")])

    assert [v.field for v in raised.value.details.field_violations] == [
        "requests[2].idempotency_key"
    ]
    assert uow.state == MiningState()


async def test_pruning_old_reports_changes_no_history_or_stat(
    use_cases: MiningUseCases, uow: Unit, clock: FakeClock
) -> None:
    await use_cases.record_stats(report(earned=4, observed=clock.now - timedelta(days=3)))
    await use_cases.record_stats(report(earned=6))
    history, stats = (
        await use_cases.earnings_history(WALLET, 7),
        await use_cases.miner_stats(WALLET),
    )

    pruned = await use_cases.prune_reports(timedelta(days=2))

    assert pruned == 1
    assert [r.earned_micro_credits for r in uow.state.reports] == [6]
    assert await use_cases.earnings_history(WALLET, 7) == history
    assert await use_cases.miner_stats(WALLET) == stats


async def test_a_block_is_recorded_once_with_its_hash_in_lowercase(
    use_cases: MiningUseCases, clock: FakeClock
) -> None:
    first = await use_cases.record_block(block(10, key="b10"))
    clock.advance(seconds=1)
    replayed = await use_cases.record_block(block(10, key="b10"))

    with pytest.raises(R3mesError) as other_key:
        await use_cases.record_block(block(10, key="another"))
    with pytest.raises(R3mesError) as not_hex:
        await use_cases.record_block(block(11, block_hash="xyz"))

    assert (first.block_hash, first.record_time) == ("ab12", clock.now - timedelta(seconds=1))
    assert replayed == first
    assert other_key.value.reason == "BLOCK_ALREADY_EXISTS"
    assert [v.field for v in not_hex.value.details.field_violations] == ["block_hash"]
    assert await use_cases.highest_block() == 10


async def test_blocks_are_listed_highest_first_optionally_of_one_miner(
    use_cases: MiningUseCases,
) -> None:
    for height in (1, 2, 3, 4):
        await use_cases.record_block(block(height, wallet=WALLET if height % 2 else OTHER))

    first = await use_cases.list_blocks(None, PageRequest(3))
    rest = await use_cases.list_blocks(None, PageRequest(3, first.next_after))
    alices = await use_cases.list_blocks(WALLET, PageRequest(10))

    assert [b.height for b in first.items] == [4, 3, 2]
    assert ([b.height for b in rest.items], rest.next_after) == ([1], None)
    assert [b.height for b in alices.items] == [3, 1]


async def test_the_network_summary_of_an_empty_network_is_zero(use_cases: MiningUseCases) -> None:
    summary = await use_cases.network_summary()

    assert (summary.total_miners, summary.block_height, summary.latest_block_time) == (0, 0, None)
    assert await use_cases.highest_block() == 0


async def test_a_report_that_would_take_a_miners_earnings_past_the_limit_records_nothing(
    use_cases: MiningUseCases, uow: Unit
) -> None:
    await use_cases.record_stats(report(earned=EARNINGS_LIMIT - 1))
    await use_cases.record_stats(report(earned=1))  # exactly at the limit

    with pytest.raises(R3mesError) as raised:
        await use_cases.batch_record_stats([report(wallet=OTHER), report(earned=1)])

    assert raised.value.reason == "EARNINGS_LIMIT_EXCEEDED"
    assert raised.value.details.metadata["wallet_address"] == WALLET
    assert uow.state.miners[WALLET].total_earned_micro_credits == EARNINGS_LIMIT
    assert OTHER not in uow.state.miners  # the whole batch was refused
