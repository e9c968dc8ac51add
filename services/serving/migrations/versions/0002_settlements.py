"""Create the settlements table: chats' charges credits could not settle when the chat ended,
which the settlement job settles later.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "serving"


def upgrade() -> None:
    op.create_table(
        "settlements",
        sa.Column("chat_id", sa.String(64), primary_key=True),
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("charge", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("owner_wallet", sa.String(90), nullable=True),
        sa.Column("share", sa.BigInteger, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_settlements_create_time", "settlements", ["create_time"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_settlements_create_time", "settlements", schema=SCHEMA)
    op.drop_table("settlements", schema=SCHEMA)
