"""Keyset pagination on SQLite and PostgreSQL: every row exactly once while rows are inserted
between pages, and page tokens bound to the request that issued them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from r3mes.mining.v1 import mining_pb2

from services.core.db import Database
from services.core.errors import InvalidArgument
from services.core.page_tokens import PageTokens
from services.core.pagination import Page
from tests.integration.kernel_tables import Entry, entries, unit_of_work

START = datetime(2026, 5, 1, tzinfo=UTC)
TOKENS = PageTokens(b"pagination-contract-test-secret!")


async def _insert(database: Database, label: str, at: datetime) -> Entry:
    return await unit_of_work(database).run(lambda r: r.entries.insert({"label": label, "at": at}))


async def _page(database: Database, request: mining_pb2.ListBlocksRequest) -> Page[Entry]:
    page_request = TOKENS.request_of(request)
    return await unit_of_work(database).run(
        lambda r: r.entries.page(
            key=[entries.c.at, entries.c.id], size=page_request.size, after=page_request.after
        ),
        read_only=True,
    )


async def test_paging_newest_first_sees_every_row_once_while_new_rows_arrive(
    database: Database,
) -> None:
    # Pairs share a time, so the id breaks ties: the key must still order them totally.
    for i in range(25):
        await _insert(database, f"old-{i}", START + timedelta(minutes=i // 2))
    seen: list[str] = []
    request = mining_pb2.ListBlocksRequest(page_size=4)

    while True:
        page = await _page(database, request)
        seen.extend(entry.label for entry in page.items)
        await asyncio.gather(
            *(
                _insert(database, f"new-{len(seen)}-{j}", START + timedelta(days=1))
                for j in range(3)
            )
        )
        token = TOKENS.next_token(request, page)
        if not token:
            break
        request = mining_pb2.ListBlocksRequest(page_size=4, page_token=token)

    old = [label for label in seen if label.startswith("old-")]
    assert sorted(old) == sorted(f"old-{i}" for i in range(25))
    assert len(old) == len(set(old)) == 25
    assert not [label for label in seen if label.startswith("new-")], "newer rows come first"


async def test_the_page_size_may_change_between_pages(database: Database) -> None:
    for i in range(6):
        await _insert(database, f"e{i}", START + timedelta(minutes=i))

    first = await _page(database, mining_pb2.ListBlocksRequest(page_size=2))
    token = TOKENS.next_token(mining_pb2.ListBlocksRequest(page_size=2), first)
    rest = await _page(database, mining_pb2.ListBlocksRequest(page_size=10, page_token=token))

    assert [e.label for e in first.items] == ["e5", "e4"]
    assert [e.label for e in rest.items] == ["e3", "e2", "e1", "e0"]
    assert rest.next_after is None


async def test_an_unset_page_size_takes_the_default_the_proto_declares(
    database: Database,
) -> None:
    for i in range(55):
        await _insert(database, f"e{i}", START + timedelta(seconds=i))

    page = await _page(database, mining_pb2.ListBlocksRequest())

    assert len(page.items) == 50
    assert page.next_after is not None


async def test_a_token_used_with_other_filters_is_invalid_argument_naming_page_token(
    database: Database,
) -> None:
    for i in range(3):
        await _insert(database, f"e{i}", START + timedelta(minutes=i))
    page = await _page(database, mining_pb2.ListBlocksRequest(page_size=1))
    token = TOKENS.next_token(mining_pb2.ListBlocksRequest(page_size=1), page)
    other = mining_pb2.ListBlocksRequest(
        page_size=1, page_token=token, miner_wallet_address="remes1other"
    )

    with pytest.raises(InvalidArgument) as raised:
        TOKENS.request_of(other)

    assert [v.field for v in raised.value.details.field_violations] == ["page_token"]
    assert "different request" in raised.value.details.field_violations[0].description
