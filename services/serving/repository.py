"""Queries of the serving schema."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.core.pagination import Page, PageRequest
from services.core.repository import BaseRepository
from services.serving import tables
from services.serving.domain import (
    LoRA,
    NodeStatus,
    ServingNode,
    ServingNodeNotFound,
    Settlement,
    Usage,
)

MODEL = "model"
ADAPTER = "adapter"


class NodeRepository(BaseRepository[ServingNode]):
    table = tables.nodes

    def to_domain(self, row: Row[Any]) -> ServingNode:
        # What it serves is in `offers`: filled in by `with_offers`.
        return ServingNode(
            node_id=row.node_id,
            wallet_address=row.wallet_address,
            endpoint_url=row.endpoint_url,
            models=(),
            lora_adapters=(),
            status=NodeStatus(row.status),
            load=row.load,
            create_time=row.create_time,
            heartbeat_time=row.heartbeat_time,
        )

    async def add(self, node: ServingNode) -> ServingNode:
        await self.insert(
            {
                "node_id": node.node_id,
                "wallet_address": node.wallet_address,
                "endpoint_url": node.endpoint_url,
                "status": node.status.value,
                "load": node.load,
                "create_time": node.create_time,
                "heartbeat_time": node.heartbeat_time,
            }
        )
        await self._offer(node.node_id, node.models, node.lora_adapters)
        return node

    async def owned(self, wallet_address: str, node_id: str) -> ServingNode:
        node = await self.find(node_id=node_id, wallet_address=wallet_address)
        if node is None:
            raise ServingNodeNotFound(node_id)
        return (await self.with_offers([node]))[0]

    async def beat(
        self,
        node: ServingNode,
        *,
        status: NodeStatus,
        load: int,
        now: datetime,
        offers: tuple[tuple[str, ...], tuple[str, ...]] | None,
    ) -> ServingNode:
        t = self.table
        await self.update_returning(
            t.c.node_id == node.node_id,
            values={"status": status.value, "load": load, "heartbeat_time": now},
        )
        if offers is not None:
            await self.execute(delete(tables.offers).where(tables.offers.c.node_id == node.node_id))
            await self._offer(node.node_id, *offers)
            node = replace(node, models=offers[0], lora_adapters=offers[1])
        return replace(node, status=status, load=load, heartbeat_time=now)

    async def remove(self, wallet_address: str, node_id: str) -> None:
        if not await self.delete_where(node_id=node_id, wallet_address=wallet_address):
            raise ServingNodeNotFound(node_id)
        await self.execute(delete(tables.offers).where(tables.offers.c.node_id == node_id))

    async def page_of(
        self, model: str, adapter: str, fresh_since: datetime | None, page_request: PageRequest
    ) -> Page[ServingNode]:
        t = self.table
        page = await self.page(
            *self._serving(model, adapter, fresh_since),
            key=[t.c.create_time, t.c.node_id],
            size=page_request.size,
            after=page_request.after,
            descending=False,
        )
        return Page(await self.with_offers(page.items), page.next_after)

    async def serving(self, model: str, adapter: str) -> list[ServingNode]:
        """Every node that serves the model (and the adapter), fresh or not (a chat judges
        that itself, against its clock), in one statement: what each serves is left out,
        since a chat needs only where a node is, its state and its load."""
        serving = self._serving(model, adapter, None)
        rows = await self.execute(select(self.table).where(*serving))
        return [self.to_domain(row) for row in rows]

    def _serving(
        self, model: str, adapter: str, fresh_since: datetime | None
    ) -> list[ColumnElement[bool]]:
        t, o = self.table, tables.offers
        conditions: list[ColumnElement[bool]] = []
        for kind, name in ((MODEL, model), (ADAPTER, adapter)):
            if name:
                offering = select(o.c.node_id).where(o.c.kind == kind, o.c.name == name)
                conditions.append(t.c.node_id.in_(offering))
        if fresh_since is not None:
            conditions += [
                t.c.heartbeat_time >= fresh_since,
                t.c.status == NodeStatus.ONLINE.value,
            ]
        return conditions

    async def any_serving(self, model: str, adapter: str) -> bool:
        o = tables.offers
        wanted = [(MODEL, model)] + ([(ADAPTER, adapter)] if adapter else [])
        for kind, name in wanted:
            found = await self.execute(
                select(o.c.node_id).where(o.c.kind == kind, o.c.name == name).limit(1)
            )
            if found.first() is None:
                return False
        return True

    async def with_offers(self, nodes: list[ServingNode]) -> list[ServingNode]:
        if not nodes:
            return []
        o = tables.offers
        rows = await self.execute(
            select(o).where(o.c.node_id.in_([n.node_id for n in nodes])).order_by(o.c.name)
        )
        offered: dict[tuple[str, str], list[str]] = defaultdict(list)
        for row in rows:
            offered[(row.node_id, row.kind)].append(row.name)
        return [
            replace(
                node,
                models=tuple(offered[(node.node_id, MODEL)]),
                lora_adapters=tuple(offered[(node.node_id, ADAPTER)]),
            )
            for node in nodes
        ]

    async def _offer(
        self, node_id: str, models: tuple[str, ...], adapters: tuple[str, ...]
    ) -> None:
        rows = [{"node_id": node_id, "kind": MODEL, "name": m} for m in models]
        rows += [{"node_id": node_id, "kind": ADAPTER, "name": a} for a in adapters]
        if rows:
            await self.execute(insert(tables.offers), rows)


class LoRARepository(BaseRepository[LoRA]):
    table = tables.loras

    def to_domain(self, row: Row[Any]) -> LoRA:
        return LoRA(
            name=row.name,
            base_model=row.base_model,
            content_id=row.content_id,
            description=row.description,
            active=row.active,
            create_time=row.create_time,
        )

    async def add(self, lora: LoRA) -> LoRA | None:
        """The adapter, or None when one of that name exists."""
        return await self.insert_or_ignore(
            {
                "name": lora.name,
                "base_model": lora.base_model,
                "content_id": lora.content_id,
                "description": lora.description,
                "active": lora.active,
                "create_time": lora.create_time,
            }
        )

    async def named(self, names: tuple[str, ...]) -> list[LoRA]:
        if not names:
            return []
        return await self.find_many(self.table.c.name.in_(names))

    async def page_of(self, include_inactive: bool, page_request: PageRequest) -> Page[LoRA]:
        t = self.table
        conditions = [] if include_inactive else [t.c.active.is_(True)]
        return await self.page(
            *conditions,
            key=[t.c.name],
            size=page_request.size,
            after=page_request.after,
            descending=False,
        )


class SettlementRepository(BaseRepository[Settlement]):
    table = tables.settlements

    def to_domain(self, row: Row[Any]) -> Settlement:
        return Settlement(
            chat_id=row.chat_id,
            reservation_id=row.reservation_id,
            charge=row.charge,
            usage=Usage(row.prompt_tokens, row.completion_tokens),
            owner_wallet=row.owner_wallet,
            share=row.share,
            create_time=row.create_time,
            confirmed=row.confirmed,
        )

    async def add(self, settlement: Settlement) -> None:
        """One row per chat: adding it again changes nothing."""
        await self.insert_or_ignore(
            {
                "chat_id": settlement.chat_id,
                "reservation_id": settlement.reservation_id,
                "charge": settlement.charge,
                "prompt_tokens": settlement.usage.prompt_tokens,
                "completion_tokens": settlement.usage.completion_tokens,
                "owner_wallet": settlement.owner_wallet,
                "share": settlement.share,
                "create_time": settlement.create_time,
                "confirmed": settlement.confirmed,
            }
        )

    async def mark_confirmed(self, chat_id: str) -> None:
        await self.update_where({"chat_id": chat_id}, {"confirmed": True})

    async def oldest(self, limit: int) -> list[Settlement]:
        return await self.find_many(order_by=[self.table.c.create_time], limit=limit)

    async def remove(self, chat_id: str) -> None:
        await self.delete_where(chat_id=chat_id)


@dataclass(frozen=True)
class ServingRepositories:
    """Every repository of the serving schema, on one unit of work's connection."""

    nodes: NodeRepository
    loras: LoRARepository
    settlements: SettlementRepository

    @classmethod
    def on(cls, connection: AsyncConnection) -> ServingRepositories:
        return cls(
            nodes=NodeRepository(connection),
            loras=LoRARepository(connection),
            settlements=SettlementRepository(connection),
        )
