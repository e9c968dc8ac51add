"""The users service's own settings: where GetUser reads balances and mining statuses from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.core.settings import SettingsBase


class UsersSettings(SettingsBase):
    users_read_model: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Where GetUser reads the balance and mining status: on, from users' read "
        "model kept from credits' and mining's events (needs redis_url); off, by asking "
        "credits and mining on every call. auto: on when redis_url is set and credits or "
        "mining runs in another process or the database is PostgreSQL (where each co-hosted "
        "answer is still a statement of its own), else off.",
    )
    users_read_model_staleness_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="The read model answers GetUser only while its consumer has read the "
        "streams within this long (else credits and mining are asked): with the relays "
        "running, a change shows in GetUser within about this long.",
    )
