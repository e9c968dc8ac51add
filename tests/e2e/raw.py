"""Requests no well-behaved client library would send, written to the gateway's socket as they are:
header names that HTTP allows and gRPC does not, incomplete gRPC calls."""

from __future__ import annotations

import http.client
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h11

from runner.local_stack import LOOPBACK

GRPC_PATH = "/r3mes.users.v1.UsersService/GetUser"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def http1_request(
    port: int,
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
) -> Reply:
    """One HTTP/1.1 request whose header names go out exactly as given (http.client checks only
    that they hold no colon or whitespace)."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


@dataclass
class RawCalls:
    """gRPC calls on one HTTP/2 connection, sent as given: by default their headers and then a
    body that never finishes; `complete` ends each stream after its body, whatever it holds."""

    sock: socket.socket
    connection: h2.connection.H2Connection
    streams: list[int] = field(default_factory=list)
    # stream id -> response headers and trailers, and the streams that have ended (answered or
    # reset).
    responses: dict[int, dict[str, str]] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)

    @classmethod
    def open(
        cls,
        port: int,
        count: int,
        content_type: str,
        body: bytes,
        *,
        complete: bool = False,
        headers: Iterable[tuple[str, str]] = (),
        source: str = LOOPBACK,
    ) -> RawCalls:
        sock = socket.create_connection((LOOPBACK, port), timeout=5, source_address=(source, 0))
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        calls = cls(sock, connection)
        request_headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", f"{LOOPBACK}:{port}"),
            (":path", GRPC_PATH),
            ("content-type", content_type),
            ("te", "trailers"),
            *headers,
        ]
        for _ in range(count):
            stream = connection.get_next_available_stream_id()
            connection.send_headers(stream, request_headers, end_stream=complete and not body)
            if body:
                connection.send_data(stream, body, end_stream=complete)
            calls.streams.append(stream)
        sock.sendall(connection.data_to_send())
        return calls

    def statuses(self) -> list[str | None]:
        """The grpc-status of every call that has ended, in the order the calls were sent."""
        return [
            self.responses.get(s, {}).get("grpc-status") for s in self.streams if s in self.ended
        ]

    def wait_until_all_ended(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while len(self.ended) < len(self.streams):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                return
            data = self.sock.recv(65536)
            if not data:
                return
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        for event in self.connection.receive_data(data):
            if (
                isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived)
                and event.stream_id is not None
            ):
                self.responses.setdefault(event.stream_id, {}).update(
                    {k.decode(): v.decode() for k, v in event.headers or []}
                )
            if isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
                # Flow control: a reply's messages must not stall the connection's window.
                self.connection.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
            if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                self.ended.add(event.stream_id)
        self.sock.sendall(self.connection.data_to_send())

    def close(self) -> None:
        self.sock.close()


def truncated_grpc_frame(announced: int = 1000, sent: int = 145) -> bytes:
    """A length-prefixed gRPC message header announcing more bytes than follow (~150 bytes)."""
    return struct.pack(">BI", 0, announced) + b"\x0a" * sent


def incomplete_http1_post(port: int, path: str, announced: int, sent: bytes) -> socket.socket:
    """A REST POST announcing a body of `announced` bytes and sending only `sent`."""
    sock = socket.create_connection((LOOPBACK, port), timeout=5)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {LOOPBACK}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {announced}\r\n\r\n"
    )
    sock.sendall(head.encode() + sent)
    return sock


def read_http1_reply(sock: socket.socket, timeout_seconds: float) -> Reply:
    """The reply on `sock`, read with h11 (a response Envoy sends and then closes)."""
    connection = h11.Connection(h11.CLIENT)
    # The request was written by hand; h11 only has to know that it was sent.
    connection.send(h11.Request(method="POST", target="/", headers=[("host", "x")]))
    sock.settimeout(timeout_seconds)
    status, headers, body = 0, {}, b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return Reply(status, headers, body)
