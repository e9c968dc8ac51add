"""What a caller sees when storage fails: retryable UNAVAILABLE, or INTERNAL with no leak."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from r3mes.users.v1 import users_pb2, users_pb2_grpc
from sqlalchemy.engine import make_url

from services.core.errors import Unavailable
from services.core.settings import Settings
from services.core.testing import new_wallet_address, running_server
from services.users.server import create_server
from tests.conftest import POSTGRES_URL, RUN_SUFFIX, settings_for
from tests.faults import CuttableProxy
from tests.integration.rpc import failure_of


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_calls_after_the_database_dropped_every_connection_succeed_on_fresh_ones(
    tmp_path: Path,
) -> None:
    proxy = CuttableProxy("127.0.0.1", 5432)
    await proxy.start()
    url = make_url(POSTGRES_URL).set(host="127.0.0.1", port=proxy.port)
    settings = settings_for("postgres", tmp_path, suffix=f"{RUN_SUFFIX}_drop").model_copy(
        update={"database_url": url.render_as_string(hide_password=False)}
    )
    async with running_server(create_server, settings, "users") as (_, channel):
        users = users_pb2_grpc.UsersServiceStub(channel)
        first, second = new_wallet_address(), new_wallet_address()
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=first))

        await proxy.drop_connections()  # as a database restart would
        read = await users.GetUser(users_pb2.GetUserRequest(wallet_address=first))
        await proxy.drop_connections()
        created = await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=second))
        again = await users.GetUser(users_pb2.GetUserRequest(wallet_address=second))

    assert read.user.wallet_address == first
    assert created.user.wallet_address == second
    assert again.user.wallet_address == second


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_a_database_that_goes_down_makes_calls_unavailable_so_callers_retry(
    tmp_path: Path,
) -> None:
    proxy = CuttableProxy("127.0.0.1", 5432)
    await proxy.start()
    url = make_url(POSTGRES_URL).set(host="127.0.0.1", port=proxy.port)
    settings = settings_for("postgres", tmp_path, suffix=f"{RUN_SUFFIX}_down").model_copy(
        update={"database_url": url.render_as_string(hide_password=False)}
    )
    async with running_server(create_server, settings, "users") as (_, channel):
        users = users_pb2_grpc.UsersServiceStub(channel)
        wallet = new_wallet_address()
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))

        await proxy.cut()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.UNAVAILABLE
    assert failure.reason == "UNAVAILABLE"


@pytest.mark.postgres
@pytest.mark.usefixtures("postgres_available")
async def test_a_database_that_is_starting_up_makes_calls_unavailable_not_internal(
    tmp_path: Path,
) -> None:
    proxy = CuttableProxy("127.0.0.1", 5432)
    await proxy.start()
    url = make_url(POSTGRES_URL).set(host="127.0.0.1", port=proxy.port)
    settings = settings_for("postgres", tmp_path, suffix=f"{RUN_SUFFIX}_restart").model_copy(
        update={"database_url": url.render_as_string(hide_password=False)}
    )
    async with running_server(create_server, settings, "users") as (_, channel):
        users = users_pb2_grpc.UsersServiceStub(channel)
        wallet = new_wallet_address()
        await users.CreateUser(users_pb2.CreateUserRequest(wallet_address=wallet))

        await proxy.restart_postgres()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await users.GetUser(users_pb2.GetUserRequest(wallet_address=wallet))

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.UNAVAILABLE
    assert failure.reason == "UNAVAILABLE"


async def test_a_service_whose_database_is_unreachable_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url="postgresql+asyncpg://postgres@127.0.0.1:1/test"
    )

    with pytest.raises(Unavailable):
        await create_server(settings)


async def test_an_unexpected_failure_is_internal_with_an_incident_id_and_no_detail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Without migrations the table is missing: a bug, whose SQL must not reach the caller.
    settings = Settings(data_dir=tmp_path, migrate_on_start=False)
    async with running_server(create_server, settings, "users") as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await users_pb2_grpc.UsersServiceStub(channel).GetUser(
                users_pb2.GetUserRequest(wallet_address=new_wallet_address())
            )

    failure = failure_of(raised.value)
    assert failure.code is grpc.StatusCode.INTERNAL
    assert failure.reason == "INTERNAL"
    assert "users" not in failure.message
    assert "table" not in failure.message
    incident = failure.message.removeprefix("internal error (incident ").removesuffix(")")
    logged = [r for r in caplog.records if getattr(r, "incident_id", None) == incident]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
