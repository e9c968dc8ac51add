"""The web console (web/, docs/console.md) on an origin of its own, R3MES_CONSOLE_PORT: the files
`make web` bundled into web/dist, and /config.json, what the console learns from the settings
(where the gateway is, the chain Keplr is asked for, the prices of chat).

Its own origin, not a path of the gateway's: the console calls the gateway across origins as any
browser application would, so the CORS rules it relies on are the ones deployments use.
Python's SimpleHTTPRequestHandler serves the files: a few static assets on a developer's machine.
"""

from __future__ import annotations

import json
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway.frontdoor.chat_service import chat_service
from gateway.paths import ROOT
from gateway.settings import GatewaySettings

CONSOLE_DIST = ROOT / "web" / "dist"
CONFIG_PATH = "/config.json"
NOT_BUILT = "The console is not built: run `make web` (`make run` builds it)."
# The console holds an API key: it runs only its own scripts, talks only to itself and the
# gateway, and is never framed. (uPlot positions its parts with inline styles.)
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' {gateway}; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


def chat_prices() -> dict[str, Any]:
    """The prices of chat in micro-credits per token, as serving reads them from the same
    R3MES_SERVING_* settings; the gateway knows serving through the registry only, so by the
    names of its settings' fields. The console shows them before a message is sent; the
    charge it shows after is the service's own figure."""
    spec = chat_service()
    assert spec.settings is not None, "the chat service has settings of its own"
    serving = spec.settings().model_dump()
    return {
        "default_price": {
            "prompt": serving["serving_default_prompt_price_micro_credits"],
            "completion": serving["serving_default_completion_price_micro_credits"],
        },
        "prices": serving["serving_prices"],
    }


def console_config(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "gateway_url": settings.console_gateway(),
        "keplr_chain_id": settings.console_keplr_chain_id,
        **chat_prices(),
    }


ALLOWED_METHODS = "GET, HEAD"


class ConsoleHandler(SimpleHTTPRequestHandler):
    """web/dist's files, /config.json, and security headers on every answer."""

    _refused_method = False

    def __init__(self, *args: Any, config: bytes, csp: str, **kwargs: Any) -> None:
        self._config = config
        self._csp = csp
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if not (Path(self.directory) / "index.html").is_file():
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, NOT_BUILT)
        elif self.path.split("?", 1)[0] == CONFIG_PATH:
            self.send_response(HTTPStatus.OK)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(self._config)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            self.wfile.write(self._config)
        else:
            super().do_GET()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server answers a method it has no `do_` for with 501, a server error; the console
        # only reads, so any other method is the client's mistake: 405, naming what is allowed.
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed here"
            self._refused_method = True
        super().send_error(code, message, explain)

    def end_headers(self) -> None:
        if self._refused_method:
            self.send_header("allow", ALLOWED_METHODS)
        self.send_header("content-security-policy", self._csp)
        self.send_header("x-content-type-options", "nosniff")
        self.send_header("referrer-policy", "no-referrer")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Static files: a line per asset would drown the suite's own lines."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A browser opens several connections at once; socketserver's backlog of 5 dropped some.
    request_queue_size = 128


def console_server(
    settings: GatewaySettings, dist: Path = CONSOLE_DIST
) -> ThreadingHTTPServer | None:
    """The console's server on R3MES_CONSOLE_PORT, or None when that is unset."""
    if settings.console_port is None:
        return None
    config = json.dumps(console_config(settings)).encode()
    csp = _CSP.format(gateway=settings.console_gateway())
    handler = partial(ConsoleHandler, config=config, csp=csp, directory=str(dist))
    return _Server((settings.listen_host, settings.console_port), handler)
