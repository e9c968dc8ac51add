"""The users schema: one row per registered wallet."""

from sqlalchemy import Column, MetaData, String, Table

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
