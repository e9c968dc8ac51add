"""The serving service's own series: what its chats served and charged, and their settlements
that credits could not complete at once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TOKENS_SERVED = Counter(
    "r3mes_serving_tokens_served_total",
    "Completion pieces that reached the clients of this process's chats.",
)
TOKENS_CHARGED = Counter(
    "r3mes_serving_tokens_charged_total",
    "Tokens the wallets of this process's chats were charged for, by kind (prompt, completion).",
    ["kind"],
)
MICRO_CREDITS_CHARGED = Counter(
    "r3mes_serving_micro_credits_charged_total",
    "Micro-credits captured from the wallets of this process's chats.",
)
SETTLEMENT_FAILURES = Counter(
    "r3mes_serving_settlement_failures_total",
    "Steps of a chat's settlement that credits did not complete when the chat ended, even "
    "retried, by step: confirm and grant are left to the settlement job; a failed rollback's "
    "hold expires back to the wallet by itself.",
    ["step"],
)
DEFERRED_SETTLED = Counter(
    "r3mes_serving_deferred_settlements_total",
    "Settlements the settlement job ended, by outcome: settled (captured, share granted), "
    "refused (credits refused a step, logged: a refused capture's hold had expired back to "
    "the wallet), abandoned (still failing a day on; logged).",
    ["outcome"],
)
SETTLEMENTS_PENDING = Gauge(
    "r3mes_serving_settlements_pending",
    "Settlements waiting for the settlement job after its last run (every replica reads the "
    "same table: read with max).",
)
