"""The TLS settings every outbound HTTP client of a process shares."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_context() -> ssl.SSLContext:
    """httpx's verifying context (certifi's roots, whatever the environment says, as our
    clients ask the environment nothing), built once per process: loading the roots costs
    about 30 ms of CPU, which every new client would otherwise pay again. A context may be
    shared by any number of connections, threads and event loops."""
    return httpx.create_ssl_context(trust_env=False)
