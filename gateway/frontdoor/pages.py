"""The HTTP side of the front door: `/`, `/docs`, `/openapi.json`, `/healthz` and the
OpenAI-compatible door (gateway/frontdoor/openai_door.py).

Python's own http.server is enough here: a handful of routes behind Envoy, which does the
connection handling, limits and access log. It speaks HTTP/1.1 (Envoy keeps its connections
open, and streamed answers go out chunked), one thread per connection.
"""

from __future__ import annotations

import html
import json
import mimetypes
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from swagger_ui_bundle import swagger_ui_path

from gateway.catalog import UPSTREAMS
from gateway.frontdoor import metrics
from gateway.frontdoor.health import Report
from gateway.frontdoor.openai_door import (
    DOOR_METHODS,
    MODELS_PATH,
    ChatStream,
    DoorError,
    OpenAIDoor,
    parse_chat,
    wrong_method,
)

SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
DOCS_PREFIX = "/docs/"
FAVICON_PATH = "/favicon.ico"
# Browsers ask for /favicon.ico on every page; "no icon", cached for a day, ends those requests
# without the 404 a browser's console shows as an error.
FAVICON_CACHE_CONTROL = "public, max-age=86400"
# A client that hangs up before its answer is sent (`make run`'s health poll gives up after a
# while) is no error of the front door's.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError)
# The paths counted under their own name in the metrics; any other is `other`.
ROUTES = frozenset(
    {
        "/",
        "/docs",
        "/docs/",
        "/openapi.json",
        "/healthz",
        FAVICON_PATH,
        *DOOR_METHODS,
        *(DOCS_PREFIX + name for name in SWAGGER_ASSETS),
    }
)

_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>R3MES API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      tryItOutEnabled: true,
      // Swagger UI would otherwise send the document to an online validator for its badge.
      validatorUrl: null,
    });
  </script>
</body>
</html>
"""


def _landing_page(base_url: str) -> str:
    services = "\n".join(
        f"    <li><code>{html.escape(u.proto_service)}</code></li>" for u in UPSTREAMS
    )
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>R3MES services</title></head>
<body>
  <h1>R3MES services</h1>
  <p>The backend of the R3MES network: wallet accounts, API keys, mining stats and credits,
  four gRPC services behind this gateway, which serves them as REST (HTTP/JSON), gRPC-Web and
  gRPC on this one address.</p>
  <ul>
    <li><a href="/docs">/docs</a>: every public REST operation, to read and to try</li>
    <li><a href="/openapi.json">/openapi.json</a>: the OpenAPI 3.1 document, for client
    generators</li>
    <li><a href="/healthz">/healthz</a>: the health of every service</li>
  </ul>
  <p>gRPC: <code>grpcurl -plaintext {html.escape(base_url.removeprefix("http://"))} list</code>
  lists the services:</p>
  <ul>
{services}
  </ul>
</body>
</html>
"""


@dataclass(frozen=True)
class Pages:
    """What the handler needs: the OpenAPI document and a way to ask every service's health."""

    openapi: dict[str, Any]
    check_health: Callable[[], Report]
    door: OpenAIDoor | None = None

    @classmethod
    def load(
        cls,
        openapi_path: Path,
        check_health: Callable[[], Report],
        door: OpenAIDoor | None = None,
    ) -> Pages:
        return cls(json.loads(openapi_path.read_text()), check_health, door)

    def openapi_for(self, base_url: str) -> dict[str, Any]:
        return {**self.openapi, "servers": [{"url": base_url, "description": "this gateway"}]}


def _asset(name: str) -> Path | None:
    """Only the files the docs page loads, never a path a caller made up."""
    if name not in SWAGGER_ASSETS:
        return None
    return Path(str(swagger_ui_path)) / name


def route_of(path: str) -> str:
    """The route a request is counted under: a bounded set of labels, whatever the path."""
    path = path.split("?", 1)[0]
    return path if path in ROUTES else "other"


def handler_class(pages: Pages) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and each chunk of a stream are separate small writes: with Nagle's algorithm
        # each waited for the previous one's (delayed) ACK, up to 40 ms per chunk.
        disable_nagle_algorithm = True
        # Buffered, flushed once per answer (http.server does after each request) and once per
        # event of a stream: a stream's headers leave with its first event, one write.
        wbufsize = 64 * 1024
        _started: float | None = None
        _status = 0

        def handle_one_request(self) -> None:
            self._started, self._status = None, 0
            try:
                super().handle_one_request()
            finally:
                if self._started is not None:
                    path = getattr(self, "path", "")  # unset when the request line was bad
                    metrics.request_ended(route_of(path), self._status, self._started)

        def parse_request(self) -> bool:
            # Timed from the request's first line: before it, the connection waited idle.
            self._started = metrics.request_started()
            return super().parse_request()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if self._at_door():
                return
            if path == FAVICON_PATH:
                self.send_response(HTTPStatus.NO_CONTENT)
                self.send_header("cache-control", FAVICON_CACHE_CONTROL)
                self.end_headers()
            elif path == "/":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", _landing_page(self._base()))
            elif path in ("/docs", "/docs/"):
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", _DOCS_PAGE)
            elif path == "/openapi.json":
                self._send_json(HTTPStatus.OK, pages.openapi_for(self._base()))
            elif path == "/healthz":
                report = pages.check_health()
                status = HTTPStatus.SERVICE_UNAVAILABLE if report.not_serving else HTTPStatus.OK
                self._send_json(status, report.as_json())
            elif path.startswith(DOCS_PREFIX) and (asset := _asset(path[len(DOCS_PREFIX) :])):
                content_type = mimetypes.guess_type(asset.name)[0] or "application/octet-stream"
                self._send(HTTPStatus.OK, content_type, asset.read_bytes(), cache=True)
            else:
                self._send_status(HTTPStatus.NOT_FOUND, 5, "no such page")

        def do_POST(self) -> None:
            if not self._at_door():
                self._body()  # read, so that the connection's next request starts after it
                self._send_status(HTTPStatus.NOT_FOUND, 5, "no such page")

        do_PUT = do_PATCH = do_DELETE = do_POST

        def _body(self) -> bytes:
            # Envoy's buffer filter has the whole body, within R3MES_MAX_REQUEST_BYTES, and sends
            # it with its length.
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _at_door(self) -> bool:
            """Answers a request for the OpenAI-compatible door's paths, whatever its method;
            False for any other path."""
            path = self.path.split("?", 1)[0]
            if pages.door is None or path not in DOOR_METHODS:
                return False
            body = self._body()
            if self.command != DOOR_METHODS[path]:
                refusal = wrong_method(path, self.command)
                self._send_json(refusal.status, refusal.body(), refusal.headers)
            elif path == MODELS_PATH:
                self._door(lambda door: door.models(self._headers()))
            else:
                self._door(lambda door: self._chat(door, body))
            return True

        def _chat(self, door: OpenAIDoor, body: bytes) -> dict[str, Any] | None:
            ask = parse_chat(body)
            if not ask.stream:
                return door.complete(ask, self._headers())
            self._send_stream(door.stream(ask, self._headers()))
            return None

        def _headers(self) -> dict[str, str]:
            return {name.lower(): value for name, value in self.headers.items()}

        def _door(self, answer: Callable[[OpenAIDoor], dict[str, Any] | None]) -> None:
            assert pages.door is not None
            try:
                body = answer(pages.door)
            except DoorError as refusal:
                self._send_json(refusal.status, refusal.body(), refusal.headers)
                return
            if body is not None:
                self._send_json(HTTPStatus.OK, body)

        def _send_stream(self, stream: ChatStream) -> None:
            """Server-sent events, each written (chunked) the moment it is ready."""
            self.send_response(HTTPStatus.OK)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-store")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                for event in stream:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except CLIENT_GONE:
                # The service charges only what it handed over, and stops asking the node.
                stream.cancel()
                self.close_connection = True

        def do_OPTIONS(self) -> None:
            # Envoy routes here only the preflights its CORS filter did not grant.
            origin = self.headers.get("origin", "")
            message = (
                f"CORS: the origin {origin} is not allowed to call this API "
                "(the gateway's R3MES_CORS_ORIGINS lists those that are)"
            )
            self._send_status(HTTPStatus.FORBIDDEN, 7, message)

        def send_response(self, code: int, message: str | None = None) -> None:
            # BaseHTTPRequestHandler's own adds `server: <name> Python/3.x`: replies say nothing
            # about what runs behind the gateway (docs/operations.md).
            self._status = code
            self.send_response_only(code, message)
            self.send_header("date", self.date_time_string())

        def _base(self) -> str:
            # The address the caller used (Envoy passes Host on), so "Try it out" and generated
            # clients call the gateway they read the document from.
            scheme = self.headers.get("x-forwarded-proto", "http")
            host = self.headers.get("host", "127.0.0.1")
            return f"{scheme}://{host}"

        def _send_json(
            self, status: int, body: object, headers: Mapping[str, str] | None = None
        ) -> None:
            self._send(status, "application/json", json.dumps(body, indent=2) + "\n", headers)

        def _send_status(self, status: HTTPStatus, code: int, message: str) -> None:
            """A google.rpc.Status, as the gateway's own refusals are: its code in grpc-status
            too, which Envoy's access log reads."""
            body = {"code": code, "message": message, "details": []}
            self._send_json(status, body, {"grpc-status": str(code)})

        def _send(
            self,
            status: int,
            content_type: str,
            body: str | bytes,
            headers: Mapping[str, str] | None = None,
            cache: bool = False,
        ) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.send_header("cache-control", "max-age=3600" if cache else "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Envoy's access log already has one line per request."""

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: Envoy opening a connection per concurrent
    # stream (64 at once, say) overflowed it, and the dropped SYNs outlasted Envoy's 1 s connect
    # timeout (503 "connection timeout"). Linux caps it at net.core.somaxconn.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], CLIENT_GONE):
            return
        super().handle_error(request, client_address)


def http_server(host: str, port: int, pages: Pages) -> ThreadingHTTPServer:
    return _Server((host, port), handler_class(pages))
