"""The outbox of miner events: every new miner and every change of a miner's newest report time
writes an event (the wallet, its last report time) in the same transaction, by a trigger on
miners. users keeps its read model of mining status (is a miner, last mining time) from these.

Revision ID: 0002
Revises: 0001
"""

from services.core.outbox import migrate_down, migrate_up

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "mining"
# What users shows of a miner (its read model), as when this migration was written.
COLUMNS = ("last_report_time",)


def upgrade() -> None:
    migrate_up(SCHEMA, "miners", "wallet_address", COLUMNS)


def downgrade() -> None:
    migrate_down(SCHEMA, "miners", "wallet_address", COLUMNS)
