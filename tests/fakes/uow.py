"""The kernel's unit of work over state held in memory, and the kernel's reads (keyset pages,
lookups by columns) of in-memory rows."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, NoReturn, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from services.core.db import Database
from services.core.errors import TransactionConflict
from services.core.pagination import Cursor, Page
from services.core.settings import ServiceName
from services.core.uow import UnitOfWork

StateT = TypeVar("StateT")
RepositoriesT = TypeVar("RepositoriesT")
ItemT = TypeVar("ItemT")


class ReadOnlyUnitWrote(AssertionError):
    """A unit of work run read-only changed something: PostgreSQL would have refused it."""


class FakeUnitOfWork(UnitOfWork[RepositoriesT], Generic[StateT, RepositoriesT]):
    """`state` is what is committed. Each unit works on a copy of it that replaces it only when
    the unit ends without raising, so a failed unit leaves no trace; units take turns, as
    writers do on SQLite. `attempts` and `run`, with their retries after a conflict, are the
    kernel's own."""

    def __init__(
        self,
        service: ServiceName,
        state: StateT,
        repositories: Callable[[StateT], RepositoriesT],
        *,
        attempts: int = 4,
    ) -> None:
        # The kernel's own constructor, on a database that nothing connects to (an engine
        # connects on first use only): `begin` below replaces its transactions.
        nowhere = Database(create_async_engine("sqlite+aiosqlite://"), None, service)
        super().__init__(nowhere, _no_connection, attempts=attempts)
        self.state = state
        self._repositories_on = repositories
        self._turn = asyncio.Lock()
        self._conflicts = 0

    def conflict_on_next_units(self, times: int) -> None:
        """The next `times` units that may write meet a concurrent one as they begin (as
        SQLite's BEGIN IMMEDIATE does behind a long writer): they raise TransactionConflict."""
        self._conflicts = times

    @asynccontextmanager
    async def begin(
        self, *, read_only: bool = False, one_statement: bool = False
    ) -> AsyncIterator[RepositoriesT]:
        # `one_statement` changes how a database is spoken to, nothing of what a unit may do.
        async with self._turn:
            if self._conflicts and not read_only:
                self._conflicts -= 1
                raise TransactionConflict("a concurrent unit of work (fake)")
            working = copy.deepcopy(self.state)
            yield self._repositories_on(working)
            if read_only:
                if working != self.state:
                    raise ReadOnlyUnitWrote("a read-only unit of work changed the state")
                return
            self.state = working


def _no_connection(connection: AsyncConnection) -> NoReturn:
    raise AssertionError("the fake unit of work opens no connection")


def keyset_page(
    rows: Iterable[ItemT],
    key: Callable[[ItemT], Cursor],
    size: int,
    after: Cursor | None,
    *,
    descending: bool = True,
) -> Page[ItemT]:
    """What `BaseRepository.page` reads: the rows after the cursor in key order, and the key of
    the page's last row when more follow."""
    ordered = sorted(rows, key=key, reverse=descending)
    if after is not None:
        ordered = [row for row in ordered if (key(row) < after if descending else key(row) > after)]
    items = ordered[:size]
    return Page(items, key(items[-1]) if len(ordered) > size else None)


def found_by(equal_to: Mapping[str, Any], *names: str) -> list[Any]:
    """The values of a `find` by exactly these columns, the lookups a fake answers; any other
    fails the test that makes it."""
    if set(equal_to) != set(names):
        raise NotImplementedError(f"the fake finds by {names} only, not by {sorted(equal_to)}")
    return [equal_to[name] for name in names]
