"""Create accounts, reservations, the ledger and the idempotency keys of the credits service.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from services.core.idempotency import idempotency_columns

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "credits"
WALLET = sa.String(90)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("wallet_address", WALLET, primary_key=True),
        sa.Column("available", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("available >= 0", name="available_not_negative"),
        sa.CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        schema=SCHEMA,
    )
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.String(64), primary_key=True),
        sa.Column("wallet_address", WALLET, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("captured", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("close_time", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("captured >= 0 AND captured <= amount", name="captured_within_amount"),
        sa.CheckConstraint(
            "state IN ('HELD', 'CONFIRMED', 'ROLLED_BACK', 'EXPIRED')", name="state_known"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_reservations_state_expire_time",
        "reservations",
        ["state", "expire_time"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_reservations_wallet_state_expire_time",
        "reservations",
        ["wallet_address", "state", "expire_time"],
        schema=SCHEMA,
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "sequence",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("entry_id", sa.String(64), nullable=False, unique=True),
        sa.Column("wallet_address", WALLET, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=True),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('GRANT', 'DEDUCTION', 'CAPTURE')", name="kind_known"),
        sa.CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_ledger_entries_wallet_sequence",
        "ledger_entries",
        ["wallet_address", "sequence"],
        schema=SCHEMA,
    )
    op.create_table("idempotency_keys", *idempotency_columns(), schema=SCHEMA)
    op.create_index(
        "ix_idempotency_keys_create_time", "idempotency_keys", ["create_time"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_create_time", "idempotency_keys", schema=SCHEMA)
    op.drop_table("idempotency_keys", schema=SCHEMA)
    op.drop_index("ix_ledger_entries_wallet_sequence", "ledger_entries", schema=SCHEMA)
    op.drop_table("ledger_entries", schema=SCHEMA)
    op.drop_index("ix_reservations_wallet_state_expire_time", "reservations", schema=SCHEMA)
    op.drop_index("ix_reservations_state_expire_time", "reservations", schema=SCHEMA)
    op.drop_table("reservations", schema=SCHEMA)
    op.drop_table("accounts", schema=SCHEMA)
