"""The credits schema: one account per wallet, its reservations, its append-only ledger, and the
outbox of balance events (written by a trigger on accounts: migration 0003)."""

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from services.core.db import UtcDateTime
from services.core.idempotency import idempotency_table
from services.core.outbox import outbox_table

SCHEMA = "credits"
metadata = MetaData(schema=SCHEMA)

# A bech32 address is at most 90 characters (BIP-173).
WALLET = String(90)
# SQLite numbers its rows itself only for an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
SEQUENCE = BigInteger().with_variant(Integer, "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("wallet_address", WALLET, primary_key=True),
    # Micro-credits. `reserved` is the sum of the wallet's HELD reservations, expired or not.
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    # The last line of defence: no statement may ever leave a negative balance.
    CheckConstraint("available >= 0", name="available_not_negative"),
    CheckConstraint("reserved >= 0", name="reserved_not_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("reservation_id", String(64), primary_key=True),
    Column("wallet_address", WALLET, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("captured", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("description", String(256), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
    Column("close_time", UtcDateTime, nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("captured >= 0 AND captured <= amount", name="captured_within_amount"),
    CheckConstraint("state IN ('HELD', 'CONFIRMED', 'ROLLED_BACK', 'EXPIRED')", name="state_known"),
)
# The sweeper's and every read's question: which holds of (a wallet) are past their time.
Index("ix_reservations_state_expire_time", reservations.c.state, reservations.c.expire_time)
Index(
    "ix_reservations_wallet_state_expire_time",
    reservations.c.wallet_address,
    reservations.c.state,
    reservations.c.expire_time,
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    # Monotonic: orders a wallet's entries (newest first) and keys its pages.
    Column("sequence", SEQUENCE, primary_key=True, autoincrement=True),
    Column("entry_id", String(64), nullable=False, unique=True),
    Column("wallet_address", WALLET, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("reservation_id", String(64), nullable=True),
    Column("description", String(256), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    CheckConstraint("kind IN ('GRANT', 'DEDUCTION', 'CAPTURE')", name="kind_known"),
    CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
)
Index(
    "ix_ledger_entries_wallet_sequence", ledger_entries.c.wallet_address, ledger_entries.c.sequence
)

idempotency_keys = idempotency_table(metadata)

# Every change of an account's balance, as events for users' read model (services.core.outbox).
outbox = outbox_table(metadata)
