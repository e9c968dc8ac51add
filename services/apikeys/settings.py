"""The apikeys service's own settings, read also by every process that checks API keys."""

from __future__ import annotations

from pydantic import Field

from services.core.settings import SettingsBase


class APIKeysSettings(SettingsBase):
    apikeys_max_active_per_wallet: int = Field(
        10, ge=1, le=1000, description="Most active (not revoked, not expired) keys per wallet."
    )
    apikeys_challenge_ttl_seconds: float = Field(
        300.0,
        ge=30,
        le=3600,
        description="How long an ownership challenge may be answered after it is issued.",
    )
    apikeys_cache_ttl_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="How long a service trusts a ValidateAPIKey answer: the longest a revoked or "
        "deleted key keeps working anywhere (with redis_url, revocations arrive at once).",
    )
    apikeys_refused_cache_ttl_seconds: float = Field(
        3.0,
        gt=0,
        le=60,
        description="How long a service remembers that a key is unknown, revoked or expired, "
        "so the same wrong key is not asked about on every call (a new key works at once: its "
        "secret was never refused).",
    )
    apikeys_cache_max_entries: int = Field(
        10000, ge=1, description="Most ValidateAPIKey answers a service keeps (least recent go)."
    )
    apikeys_last_used_flush_seconds: float = Field(
        10.0,
        gt=0,
        description="How often the apikeys service writes the keys' last use times, batched.",
    )
    apikeys_invalidation_channel: str = Field(
        "r3mes.apikeys.withdrawn",
        min_length=1,
        description="Redis pub/sub channel on which revoked and deleted keys are announced.",
    )
