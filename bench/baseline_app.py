"""The baseline of the request-path benchmark: the read `GET /v1/users/{wallet}` makes, written
the way a FastAPI + SQLAlchemy (async) user would write it, to be measured beside the suite.

    BENCH_BASELINE_DATABASE_URL=sqlite+aiosqlite:///data/users.db \\
        uvicorn bench.baseline_app:app --workers 2

It reads the users table by primary key (BENCH_BASELINE_SCHEMA names the schema on
PostgreSQL) and answers the JSON the gateway gives for a user whose balance and mining status
are unknown. It checks no wallet format and asks no peer: it is the monolith's read, no more.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from services.users.tables import SCHEMA, users

DATABASE_URL_VARIABLE = "BENCH_BASELINE_DATABASE_URL"
SCHEMA_VARIABLE = "BENCH_BASELINE_SCHEMA"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(
        os.environ[DATABASE_URL_VARIABLE],
        # SQLite has no schemas (the table is just `users`); PostgreSQL's has the bench's suffix.
        execution_options={"schema_translate_map": {SCHEMA: os.environ.get(SCHEMA_VARIABLE)}},
    )
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
    return {"user": {"wallet_address": row.wallet_address, "create_time": rfc3339(row.created_at)}}
