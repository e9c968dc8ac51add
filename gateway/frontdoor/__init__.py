"""The front door: what the gateway port answers besides the API itself.

One small process of the suite, behind Envoy (which cannot aggregate health or serve a page):

- HTTP on R3MES_FRONTDOOR_PORT: `/` (what this is), `/docs` (Swagger UI from the
  swagger-ui-bundle-v2 package, no outside network), `/openapi.json` (gateway/openapi.json with a
  `servers` entry for the address the caller used) and `/healthz` (the gRPC health of every
  service: 200, or 503 naming those not serving);
- Prometheus metrics at `/metrics` on R3MES_FRONTDOOR_METRICS_PORT, when set
  (gateway/frontdoor/metrics.py);
- HTTP on R3MES_CONSOLE_PORT, when set: the web console, an origin of its own
  (gateway/frontdoor/console.py);
- gRPC on R3MES_FRONTDOOR_GRPC_PORT: server reflection (v1 and v1alpha) of every service at
  once, so `grpcurl -plaintext <gateway> list` and `describe` work through the gateway.

Start it with `python -m gateway.frontdoor`; `make run`, runner/local_stack.py and deploy/ do.
"""
