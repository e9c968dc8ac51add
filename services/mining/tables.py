"""The mining schema: raw reports (pruned after a retention), per-day rollups and per-miner
totals (kept for good, updated in the report's own transaction), blocks, idempotency keys, and
the outbox of miner events (written by a trigger on miners: migration 0002)."""

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from services.core.db import UtcDateTime
from services.core.idempotency import idempotency_table
from services.core.outbox import outbox_table

SCHEMA = "mining"
metadata = MetaData(schema=SCHEMA)

# SQLite numbers rows itself only for an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
RowId = BigInteger().with_variant(Integer(), "sqlite")

reports = Table(
    "reports",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    # A bech32 address is at most 90 characters (BIP-173).
    Column("wallet_address", String(90), nullable=False),
    Column("hashrate", Float(precision=53), nullable=False),
    Column("earned_micro_credits", BigInteger, nullable=False),
    Column("observe_time", UtcDateTime, nullable=False),
    Column("record_time", UtcDateTime, nullable=False),
)
# The pruner deletes by age; no read path scans raw reports.
Index("ix_reports_observe_time", reports.c.observe_time)

day_rollups = Table(
    "day_rollups",
    metadata,
    Column("wallet_address", String(90), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("report_count", BigInteger, nullable=False),
    Column("earned_micro_credits", BigInteger, nullable=False),
    Column("hashrate_sum", Float(precision=53), nullable=False),
    Column("hashrate_max", Float(precision=53), nullable=False),
    # On SQLite the rows live in primary-key order, so a wallet's days are read together.
    sqlite_with_rowid=False,
)

miners = Table(
    "miners",
    metadata,
    Column("wallet_address", String(90), primary_key=True),
    Column("first_report_time", UtcDateTime, nullable=False),
    Column("last_report_time", UtcDateTime, nullable=False),
    Column("last_hashrate", Float(precision=53), nullable=False),
    Column("total_earned_micro_credits", BigInteger, nullable=False),
    Column("report_count", BigInteger, nullable=False),
)
# Active miners and the network hashrate are the miners with a recent last report.
Index("ix_miners_last_report_time", miners.c.last_report_time)

blocks = Table(
    "blocks",
    metadata,
    Column("height", BigInteger, primary_key=True, autoincrement=False),
    Column("block_hash", String(128), nullable=False),
    Column("miner_wallet_address", String(90), nullable=False),
    Column("reward_micro_credits", BigInteger, nullable=False),
    Column("block_time", UtcDateTime, nullable=False),
    Column("record_time", UtcDateTime, nullable=False),
)
# One miner's blocks, highest first (ListBlocks with a miner, GetMinerStats' blocks_found).
Index("ix_blocks_miner_height", blocks.c.miner_wallet_address, blocks.c.height)

idempotency_keys = idempotency_table(metadata)

# Every miner's first and newest report, as events for users' read model (services.core.outbox).
outbox = outbox_table(metadata)
