"""The serving schema: nodes, what each serves (one row per model or adapter, so that nodes are
found by what they serve through an index), LoRA adapters, and the chats' settlements that
credits could not complete when their chat ended."""

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table

from services.core.db import UtcDateTime

SCHEMA = "serving"
metadata = MetaData(schema=SCHEMA)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(32), primary_key=True),
    Column("wallet_address", String(90), nullable=False),
    Column("endpoint_url", String(2048), nullable=False),
    Column("status", String(16), nullable=False),
    Column("load", Integer, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("heartbeat_time", UtcDateTime, nullable=False),
)
# ListServingNodes pages oldest registration first; node_id breaks ties.
Index("ix_nodes_create_time", nodes.c.create_time, nodes.c.node_id)

offers = Table(
    "offers",
    metadata,
    # Removed with its node, in the same unit of work.
    Column("node_id", String(32), primary_key=True),
    # "model" or "adapter"
    Column("kind", String(8), primary_key=True),
    Column("name", String(128), primary_key=True),
)
Index("ix_offers_kind_name", offers.c.kind, offers.c.name)

loras = Table(
    "loras",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("base_model", String(128), nullable=False),
    Column("content_id", String(128), nullable=False),
    Column("description", String(256), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)

settlements = Table(
    "settlements",
    metadata,
    Column("chat_id", String(64), primary_key=True),
    Column("reservation_id", String(64), nullable=False),
    Column("charge", BigInteger, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("owner_wallet", String(90), nullable=True),
    Column("share", BigInteger, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("confirmed", Boolean, nullable=False),
)
# The settlement job takes the oldest first.
Index("ix_settlements_create_time", settlements.c.create_time)
