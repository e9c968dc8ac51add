"""The outbox of balance events: every insert or change of an account's available or reserved
credits writes an event (the wallet, both figures after the change) in the same transaction, by
a trigger, whichever writes it: the money moves' functions of 0002 on PostgreSQL, the Python
sequences on SQLite, the sweeper. users keeps its read model of balances from these.

Revision ID: 0003
Revises: 0002
"""

from services.core.outbox import migrate_down, migrate_up

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "credits"
# What users shows of an account (its read model), as when this migration was written.
COLUMNS = ("available", "reserved")


def upgrade() -> None:
    migrate_up(SCHEMA, "accounts", "wallet_address", COLUMNS)


def downgrade() -> None:
    migrate_down(SCHEMA, "accounts", "wallet_address", COLUMNS)
