"""The baseline of the request-path benchmark: the read `GET /v1/users/{wallet}` makes, written
the way a FastAPI + SQLAlchemy (async) user would write it, to be measured beside the suite.

    BENCH_BASELINE_DATABASE_URL=sqlite+aiosqlite:///data/users.db \\
        uvicorn bench.baseline_app:app --workers 2

It does what the monolith's read did in one database: the user, the wallet's credit account and
its miner row, each by primary key, answered as the JSON the gateway gives. On PostgreSQL the
three tables are in the services' schemas (BENCH_BASELINE_SCHEMA_SUFFIX); on SQLite the
credits and mining files are attached to the users file's connections, so one engine reads all
three as a monolith would. It checks no wallet format and calls no other process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.credits.tables import accounts
from services.mining.tables import miners
from services.users.tables import users

DATABASE_URL_VARIABLE = "BENCH_BASELINE_DATABASE_URL"
SCHEMA_SUFFIX_VARIABLE = "BENCH_BASELINE_SCHEMA_SUFFIX"
SCHEMAS = ("users", "credits", "mining")


def _engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        suffix = os.environ.get(SCHEMA_SUFFIX_VARIABLE, "")
        translate = {schema: schema + suffix for schema in SCHEMAS}
        return create_async_engine(url, execution_options={"schema_translate_map": translate})
    users_file = Path(url.split("///", 1)[1])
    engine = create_async_engine(url, execution_options={"schema_translate_map": {"users": None}})

    @event.listens_for(engine.sync_engine, "connect")
    def _attach(dbapi_connection: Any, _record: Any) -> None:
        for schema in SCHEMAS[1:]:
            path = users_file.with_name(f"{schema}.db")
            dbapi_connection.execute(f"ATTACH DATABASE '{path}' AS {schema}")

    return engine


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = _engine(os.environ[DATABASE_URL_VARIABLE])
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as opened:
        yield opened


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@app.get("/v1/users/{wallet_address}")
async def get_user(
    wallet_address: str, db: Annotated[AsyncSession, Depends(session)]
) -> dict[str, Any]:
    result = await db.execute(select(users).where(users.c.wallet_address == wallet_address))
    row = result.first()
    if row is None:
        raise HTTPException(status_code=404, detail="no such user")
    account = (
        await db.execute(select(accounts).where(accounts.c.wallet_address == wallet_address))
    ).first()
    miner = (
        await db.execute(select(miners).where(miners.c.wallet_address == wallet_address))
    ).first()
    user: dict[str, Any] = {
        "wallet_address": row.wallet_address,
        "create_time": rfc3339(row.created_at),
        "available_micro_credits": str(account.available if account else 0),
        "reserved_micro_credits": str(account.reserved if account else 0),
        "is_miner": miner is not None,
    }
    if miner is not None:
        user["last_mining_time"] = rfc3339(miner.last_report_time)
    return {"user": user}
