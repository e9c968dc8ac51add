"""The users schema: one row per registered wallet, and the read model of balances and mining
statuses kept from credits' and mining's events."""

from sqlalchemy import BigInteger, Boolean, Column, MetaData, String, Table

from services.core.db import UtcDateTime

SCHEMA = "users"
metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    # A bech32 address is at most 90 characters (BIP-173).
    Column("wallet_address", String(90), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# The read model (docs/architecture.md, "users' read model"): what credits and mining last told of
# a wallet through their events, or what they answered when asked (version 0). `version` is the
# event's outbox sequence number: an older event never overwrites a newer one.
balances = Table(
    "balances",
    metadata,
    Column("wallet_address", String(90), primary_key=True),
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
)

mining_statuses = Table(
    "mining_statuses",
    metadata,
    Column("wallet_address", String(90), primary_key=True),
    Column("is_miner", Boolean, nullable=False),
    Column("last_mining_time", UtcDateTime, nullable=True),
    Column("version", BigInteger, nullable=False),
)

# Where the read model stands in each stream of events, written with what it applied.
stream_positions = Table(
    "stream_positions",
    metadata,
    Column("stream", String(200), primary_key=True),
    Column("position", String(64), nullable=False),
)
