"""The mining service's own series."""

from __future__ import annotations

from prometheus_client import Counter

REPORTS_RECORDED = Counter(
    "r3mes_mining_reports_recorded_total",
    "Mining stats reports recorded by this process (replays of a report recorded before are "
    "not counted).",
)
