"""What a process sends to PostgreSQL: every statement, BEGIN, COMMIT and ROLLBACK included."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asyncpg.connection import LoggedQuery
from sqlalchemy import Engine, Pool, event


@contextmanager
def statements_sent() -> Iterator[list[str]]:
    """The statements every engine of this process sends meanwhile, in order. SQLAlchemy's
    cursor events see the statements; asyncpg sends BEGIN, COMMIT and ROLLBACK itself, so its
    query logger on each connection taken from a pool adds those."""
    sent: list[str] = []
    loggers: list[Any] = []

    def on_statement(*arguments: Any) -> None:
        sent.append(arguments[2])  # (connection, cursor, statement, parameters, ...)

    def on_query(query: LoggedQuery) -> None:
        sent.append(query.query)

    def on_checkout(dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection.driver_connection
        driver.add_query_logger(on_query)
        loggers.append(driver)

    event.listen(Engine, "before_cursor_execute", on_statement)
    event.listen(Pool, "checkout", on_checkout)
    try:
        yield sent
    finally:
        event.remove(Pool, "checkout", on_checkout)
        event.remove(Engine, "before_cursor_execute", on_statement)
        for driver in loggers:
            driver.remove_query_logger(on_query)
