"""Create the api_keys and challenges tables.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "apikeys"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("wallet_address", sa.String(90), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(24), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_time", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_api_keys_wallet_create_time",
        "api_keys",
        ["wallet_address", "create_time"],
        schema=SCHEMA,
    )
    op.create_table(
        "challenges",
        sa.Column("challenge_id", sa.String(32), primary_key=True),
        sa.Column("wallet_address", sa.String(90), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_challenges_expire_time", "challenges", ["expire_time"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_challenges_expire_time", "challenges", schema=SCHEMA)
    op.drop_table("challenges", schema=SCHEMA)
    op.drop_index("ix_api_keys_wallet_create_time", "api_keys", schema=SCHEMA)
    op.drop_table("api_keys", schema=SCHEMA)
