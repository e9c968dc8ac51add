"""The HTTP side of the front door: `/`, `/docs`, `/openapi.json` and `/healthz`.

Python's own http.server is enough here: a handful of GETs behind Envoy, which does the
connection handling, limits and access log.
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
from gateway.frontdoor.health import Report

SWAGGER_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
DOCS_PREFIX = "/docs/"
FAVICON_PATH = "/favicon.ico"
# Browsers ask for /favicon.ico on every page; "no icon", cached for a day, ends those requests
# without the 404 a browser's console shows as an error.
FAVICON_CACHE_CONTROL = "public, max-age=86400"
# A client that hangs up before its answer is sent (`make run`'s health poll gives up after a
# while) is no error of the front door's.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError)

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

    @classmethod
    def load(cls, openapi_path: Path, check_health: Callable[[], Report]) -> Pages:
        return cls(json.loads(openapi_path.read_text()), check_health)

    def openapi_for(self, base_url: str) -> dict[str, Any]:
        return {**self.openapi, "servers": [{"url": base_url, "description": "this gateway"}]}


def _asset(name: str) -> Path | None:
    """Only the files the docs page loads, never a path a caller made up."""
    if name not in SWAGGER_ASSETS:
        return None
    return Path(str(swagger_ui_path)) / name


def handler_class(pages: Pages) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
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
            self.send_response_only(code, message)
            self.send_header("date", self.date_time_string())

        def _base(self) -> str:
            # The address the caller used (Envoy passes Host on), so "Try it out" and generated
            # clients call the gateway they read the document from.
            scheme = self.headers.get("x-forwarded-proto", "http")
            host = self.headers.get("host", "127.0.0.1")
            return f"{scheme}://{host}"

        def _send_json(
            self, status: HTTPStatus, body: object, headers: Mapping[str, str] | None = None
        ) -> None:
            self._send(status, "application/json", json.dumps(body, indent=2) + "\n", headers)

        def _send_status(self, status: HTTPStatus, code: int, message: str) -> None:
            """A google.rpc.Status, as the gateway's own refusals are: its code in grpc-status
            too, which Envoy's access log reads."""
            body = {"code": code, "message": message, "details": []}
            self._send_json(status, body, {"grpc-status": str(code)})

        def _send(
            self,
            status: HTTPStatus,
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

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], CLIENT_GONE):
            return
        super().handle_error(request, client_address)


def http_server(host: str, port: int, pages: Pages) -> ThreadingHTTPServer:
    return _Server((host, port), handler_class(pages))
