"""Create the nodes, offers and loras tables.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = "serving"


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(32), primary_key=True),
        sa.Column("wallet_address", sa.String(90), nullable=False),
        sa.Column("endpoint_url", sa.String(2048), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("load", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_time", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_nodes_create_time", "nodes", ["create_time", "node_id"], schema=SCHEMA)
    op.create_table(
        "offers",
        sa.Column("node_id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        schema=SCHEMA,
    )
    op.create_index("ix_offers_kind_name", "offers", ["kind", "name"], schema=SCHEMA)
    op.create_table(
        "loras",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("base_model", sa.String(128), nullable=False),
        sa.Column("content_id", sa.String(128), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("loras", schema=SCHEMA)
    op.drop_index("ix_offers_kind_name", "offers", schema=SCHEMA)
    op.drop_table("offers", schema=SCHEMA)
    op.drop_index("ix_nodes_create_time", "nodes", schema=SCHEMA)
    op.drop_table("nodes", schema=SCHEMA)
