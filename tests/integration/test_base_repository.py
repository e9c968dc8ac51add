"""The BaseRepository contract, on SQLite and PostgreSQL: what every service's repository inherits.

A small table of our own, in the `users` schema (translated to this test's schema on PostgreSQL,
dropped to a bare table in this test's own file on SQLite), so the contract is checked apart from
any service's rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import BigInteger, Column, Integer, MetaData, Row, String, Table, Text

from services.core.db import Database
from services.core.errors import AlreadyExists
from services.core.repository import BaseRepository
from services.core.settings import Settings
from tests.integration.storage import database_with

metadata = MetaData(schema="users")
items = Table(
    "contract_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("note", Text, nullable=True),
    Column("position", Integer, nullable=False),
    Column("micro_credits", BigInteger, nullable=False, default=0),
)


@dataclass(frozen=True)
class Item:
    id: int
    name: str
    note: str | None
    position: int
    micro_credits: int


class ItemRepository(BaseRepository[Item]):
    table = items

    def to_domain(self, row: Row[Any]) -> Item:
        return Item(row.id, row.name, row.note, row.position, row.micro_credits)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    async with database_with(settings, metadata) as database:
        yield database


async def _add(database: Database, name: str, position: int = 0, **values: Any) -> Item:
    async with database.transaction() as connection:
        return await ItemRepository(connection).insert(
            {"name": name, "position": position, **values}
        )


async def _all_names(database: Database) -> list[str]:
    async with database.transaction() as connection:
        found = await ItemRepository(connection).find_many(order_by=[items.c.name])
    return [item.name for item in found]


async def test_an_inserted_row_comes_back_with_its_generated_key_and_defaults(
    database: Database,
) -> None:
    first = await _add(database, "first", position=3, note="a note")
    second = await _add(database, "second")

    assert first == Item(first.id, "first", "a note", 3, 0)
    assert second.id > first.id
    assert second.note is None


async def test_a_large_amount_is_stored_exactly(database: Database) -> None:
    amount = 10**18 - 1
    await _add(database, "rich", micro_credits=amount)

    async with database.transaction() as connection:
        found = await ItemRepository(connection).find(name="rich")

    assert found is not None
    assert found.micro_credits == amount


async def test_find_matches_every_condition_given_and_returns_none_when_nothing_does(
    database: Database,
) -> None:
    alpha = await _add(database, "alpha", position=1)
    await _add(database, "beta", position=1)

    async with database.transaction() as connection:
        repository = ItemRepository(connection)
        assert await repository.find(name="alpha", position=1) == alpha
        assert await repository.find(name="alpha", position=2) is None
        assert await repository.find(name="gamma") is None


async def test_find_many_filters_orders_and_limits(database: Database) -> None:
    for name, position in [("c", 3), ("a", 1), ("e", 5), ("b", 2), ("d", 4)]:
        await _add(database, name, position=position)

    async with database.transaction() as connection:
        repository = ItemRepository(connection)
        everything = await repository.find_many(order_by=[items.c.position])
        newest_two = await repository.find_many(order_by=[items.c.position.desc()], limit=2)
        middle = await repository.find_many(
            items.c.position >= 2, items.c.position < 5, order_by=[items.c.name]
        )
        none = await repository.find_many(items.c.position > 100)

    assert [item.name for item in everything] == ["a", "b", "c", "d", "e"]
    assert [item.name for item in newest_two] == ["e", "d"]
    assert [item.name for item in middle] == ["b", "c", "d"]
    assert none == []


async def test_count_counts_every_row_or_only_the_matching_ones(database: Database) -> None:
    for position in range(5):
        await _add(database, f"item-{position}", position=position)

    async with database.transaction() as connection:
        repository = ItemRepository(connection)
        assert await repository.count() == 5
        assert await repository.count(items.c.position >= 3) == 2
        assert await repository.count(items.c.name == "missing") == 0


async def test_update_where_changes_only_the_matching_rows_and_says_how_many(
    database: Database,
) -> None:
    await _add(database, "one", position=1)
    await _add(database, "two", position=1)
    await _add(database, "three", position=2)

    async with database.transaction() as connection:
        repository = ItemRepository(connection)
        changed = await repository.update_where({"position": 1}, {"note": "moved", "position": 9})
        unmatched = await repository.update_where({"name": "missing"}, {"note": "never"})

    async with database.transaction() as connection:
        moved = await ItemRepository(connection).find_many(order_by=[items.c.name])

    assert (changed, unmatched) == (2, 0)
    assert [(item.name, item.note, item.position) for item in moved] == [
        ("one", "moved", 9),
        ("three", None, 2),
        ("two", "moved", 9),
    ]


async def test_delete_where_removes_only_the_matching_rows_and_says_how_many(
    database: Database,
) -> None:
    await _add(database, "keep", position=1)
    await _add(database, "drop-a", position=2)
    await _add(database, "drop-b", position=2)

    async with database.transaction() as connection:
        repository = ItemRepository(connection)
        removed = await repository.delete_where(position=2)
        removed_again = await repository.delete_where(position=2)

    assert (removed, removed_again) == (2, 0)
    assert await _all_names(database) == ["keep"]


async def test_a_unique_violation_becomes_already_exists_and_keeps_the_first_row(
    database: Database,
) -> None:
    await _add(database, "taken", position=1)

    with pytest.raises(AlreadyExists) as raised:
        await _add(database, "taken", position=2)

    assert raised.value.reason == "ALREADY_EXISTS"
    assert raised.value.code == "ALREADY_EXISTS"
    # The driver's text (table, constraint, value) stays out of what the caller is told.
    assert raised.value.message == "the record already exists"
    async with database.transaction() as connection:
        kept = await ItemRepository(connection).find(name="taken")
    assert kept is not None
    assert kept.position == 1


async def test_an_update_into_a_taken_value_is_already_exists_too(database: Database) -> None:
    await _add(database, "taken")
    await _add(database, "free")

    with pytest.raises(AlreadyExists):
        async with database.transaction() as connection:
            await ItemRepository(connection).update_where({"name": "free"}, {"name": "taken"})

    assert await _all_names(database) == ["free", "taken"]


@pytest.mark.parametrize(
    "value",
    [
        "Robert'); DROP TABLE contract_items;--",
        "' OR '1'='1",
        '"; SELECT * FROM users; --',
        "100% of _every_ row \\ backslash",
        "$1 :name ? %s %(name)s",
        "ünïcødé ✓ 🚀 \u202e",
    ],
)
async def test_values_that_look_like_sql_are_stored_and_matched_verbatim(
    database: Database, value: str
) -> None:
    await _add(database, "plain")
    stored = await _add(database, value, note=value)

    async with database.transaction() as connection:
        repository = ItemRepository(connection)
        found = await repository.find(name=value)
        by_note = await repository.find_many(items.c.note == value)
        total = await repository.count()

    assert stored.name == value
    assert found == stored
    assert found.note == value
    assert by_note == [stored]
    assert total == 2


async def test_an_exception_inside_a_transaction_stores_nothing(database: Database) -> None:
    async def insert_then_fail() -> None:
        async with database.transaction() as connection:
            repository = ItemRepository(connection)
            await repository.insert({"name": "doomed", "position": 1})
            assert await repository.count() == 1
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await insert_then_fail()

    assert await _all_names(database) == []


async def test_a_unique_violation_undoes_the_earlier_writes_of_its_transaction(
    database: Database,
) -> None:
    await _add(database, "taken")

    async def insert_both() -> None:
        async with database.transaction() as connection:
            repository = ItemRepository(connection)
            await repository.insert({"name": "first-half", "position": 1})
            await repository.insert({"name": "taken", "position": 2})

    with pytest.raises(AlreadyExists):
        await insert_both()

    assert await _all_names(database) == ["taken"]


async def test_twenty_concurrent_transactions_all_land(database: Database) -> None:
    async def add_and_read_back(number: int) -> Item | None:
        async with database.transaction() as connection:
            repository = ItemRepository(connection)
            await repository.insert({"name": f"concurrent-{number:02}", "position": number})
            await asyncio.sleep(0)  # let the other coroutines run inside their transactions
            return await repository.find(name=f"concurrent-{number:02}")

    read_back = await asyncio.gather(*(add_and_read_back(n) for n in range(20)))

    assert [item.position if item else None for item in read_back] == list(range(20))
    assert await _all_names(database) == [f"concurrent-{n:02}" for n in range(20)]
