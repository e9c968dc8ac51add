"""Create reports, day rollups, miners, blocks and idempotency keys.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from services.core.idempotency import idempotency_columns

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "mining"


def _time(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _wallet(name: str, *, primary_key: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(90), primary_key=primary_key, nullable=False)


def _double(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Float(precision=53), nullable=False)


def _int(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger, nullable=False)


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        _wallet("wallet_address"),
        _double("hashrate"),
        _int("earned_micro_credits"),
        _time("observe_time"),
        _time("record_time"),
        schema=SCHEMA,
    )
    op.create_index("ix_reports_observe_time", "reports", ["observe_time"], schema=SCHEMA)
    op.create_table(
        "day_rollups",
        _wallet("wallet_address", primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        _int("report_count"),
        _int("earned_micro_credits"),
        _double("hashrate_sum"),
        _double("hashrate_max"),
        schema=SCHEMA,
        sqlite_with_rowid=False,
    )
    op.create_table(
        "miners",
        _wallet("wallet_address", primary_key=True),
        _time("first_report_time"),
        _time("last_report_time"),
        _double("last_hashrate"),
        _int("total_earned_micro_credits"),
        _int("report_count"),
        schema=SCHEMA,
    )
    op.create_index("ix_miners_last_report_time", "miners", ["last_report_time"], schema=SCHEMA)
    op.create_table(
        "blocks",
        sa.Column("height", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("block_hash", sa.String(128), nullable=False),
        _wallet("miner_wallet_address"),
        _int("reward_micro_credits"),
        _time("block_time"),
        _time("record_time"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_blocks_miner_height", "blocks", ["miner_wallet_address", "height"], schema=SCHEMA
    )
    op.create_table("idempotency_keys", *idempotency_columns(), schema=SCHEMA)
    op.create_index(
        "ix_idempotency_keys_create_time", "idempotency_keys", ["create_time"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_create_time", "idempotency_keys", schema=SCHEMA)
    op.drop_table("idempotency_keys", schema=SCHEMA)
    op.drop_index("ix_blocks_miner_height", "blocks", schema=SCHEMA)
    op.drop_table("blocks", schema=SCHEMA)
    op.drop_index("ix_miners_last_report_time", "miners", schema=SCHEMA)
    op.drop_table("miners", schema=SCHEMA)
    op.drop_table("day_rollups", schema=SCHEMA)
    op.drop_index("ix_reports_observe_time", "reports", schema=SCHEMA)
    op.drop_table("reports", schema=SCHEMA)
