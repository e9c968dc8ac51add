"""The apikeys schema: keys (their SHA-256 digests, never the keys) and ownership challenges."""

from sqlalchemy import Boolean, Column, Index, MetaData, String, Table, Text

from services.core.db import UtcDateTime

SCHEMA = "apikeys"
metadata = MetaData(schema=SCHEMA)

api_keys = Table(
    "api_keys",
    metadata,
    # secrets.token_urlsafe(16): 128 random bits, so ids cannot be enumerated.
    Column("key_id", String(32), primary_key=True),
    Column("wallet_address", String(90), nullable=False),
    Column("name", String(64), nullable=False),
    # SHA-256 of the key, hex; keys are found by it (ValidateAPIKey), hence unique.
    Column("secret_digest", String(64), nullable=False, unique=True),
    Column("key_prefix", String(24), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("expire_time", UtcDateTime, nullable=True),
    Column("revoke_time", UtcDateTime, nullable=True),
    Column("last_used_time", UtcDateTime, nullable=True),
)
# ListAPIKeys pages a wallet's keys newest first; key_id breaks ties.
Index("ix_api_keys_wallet_create_time", api_keys.c.wallet_address, api_keys.c.create_time)

challenges = Table(
    "challenges",
    metadata,
    Column("challenge_id", String(32), primary_key=True),
    Column("wallet_address", String(90), nullable=False),
    Column("message", Text, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
    Column("used", Boolean, nullable=False),
)
Index("ix_challenges_expire_time", challenges.c.expire_time)
