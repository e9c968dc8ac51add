"""Create the users table.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("wallet_address", sa.String(90), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        schema="users",
    )


def downgrade() -> None:
    op.drop_table("users", schema="users")
