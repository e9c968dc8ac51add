"""The read model of balances and mining statuses, and where it stands in each stream.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "users"
WALLET = sa.String(90)


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("wallet_address", WALLET, primary_key=True),
        sa.Column("available", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "mining_statuses",
        sa.Column("wallet_address", WALLET, primary_key=True),
        sa.Column("is_miner", sa.Boolean, nullable=False),
        sa.Column("last_mining_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "stream_positions",
        sa.Column("stream", sa.String(200), primary_key=True),
        sa.Column("position", sa.String(64), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("stream_positions", schema=SCHEMA)
    op.drop_table("mining_statuses", schema=SCHEMA)
    op.drop_table("balances", schema=SCHEMA)
