"""The users schema: one row per registered wallet."""

from sqlalchemy import Column, DateTime, MetaData, String, Table

SCHEMA = "users"
metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    # A bech32 address is at most 90 characters (BIP-173).
    Column("wallet_address", String(90), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
