"""The apikeys service's own series: how often a presented key was checked from the cache of
the process it reached (every service checks keys through services.apikeys.authentication)."""

from __future__ import annotations

from prometheus_client import Counter

APIKEY_CACHE_LOOKUPS = Counter(
    "r3mes_apikey_cache_lookups_total",
    "API-key checks answered from this process's cache (hit) or asked of apikeys (miss).",
    ("result",),
)
CACHE_HITS = APIKEY_CACHE_LOOKUPS.labels("hit")
CACHE_MISSES = APIKEY_CACHE_LOOKUPS.labels("miss")
