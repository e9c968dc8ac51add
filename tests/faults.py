"""Fault injection on loopback: a TCP proxy in front of a real server that a test can cut, or
turn into a PostgreSQL that is restarting."""

from __future__ import annotations

import asyncio
import contextlib

# PostgreSQL's protocol (hand-written: a few bytes, which no client library serves): a client
# may first ask for TLS, which is refused with "N"; then it sends its startup message, which a
# server still starting (or shutting down) answers with this FATAL error and a close.
_SSL_REQUEST = (80877103).to_bytes(4, "big")
_STARTING_UP = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target until `cut()`; then refuses and drops everything
    until `resume()`.
    `drop_connections()` drops the open connections only, as a database restart does;
    `restart_postgres()` drops them and answers every new one as a PostgreSQL starting up."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._starting_up = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close the listening socket and every open connection: the database is 'down'."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.drop_connections()

    async def resume(self) -> None:
        """Listen again on the same port after `cut()`: the server is back."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def drop_connections(self) -> None:
        """Close every open connection but keep accepting new ones."""
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def restart_postgres(self) -> None:
        """From now on the database behind is 'starting up': connections dropped, new ones
        refused by PostgreSQL's own FATAL 57P03 after their startup message."""
        self._starting_up = True
        await self.drop_connections()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._starting_up:
            await _refuse_as_starting_up(reader, writer)
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


async def _refuse_as_starting_up(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
        if (await _message(reader))[:4] == _SSL_REQUEST:
            writer.write(b"N")
            await _message(reader)
        writer.write(b"E" + (len(_STARTING_UP) + 4).to_bytes(4, "big") + _STARTING_UP)
        await writer.drain()
    writer.close()


async def _message(reader: asyncio.StreamReader) -> bytes:
    """An untyped message (SSLRequest, StartupMessage): its length, then the rest."""
    length = int.from_bytes(await reader.readexactly(4), "big")
    return await reader.readexactly(length - 4)
