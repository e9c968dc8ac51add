"""The serving service's own series: what its chats served and charged."""

from __future__ import annotations

from prometheus_client import Counter

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
