"""The chain indexer: an optional component that records the blocks of a CometBFT chain.

Off unless `R3MES_CHAIN_RPC_URL` is set. It reads the chain's height from `/status` and each
block from `/block?height=N` (CometBFT's JSON-RPC over HTTP, with httpx) and records it through
the same use case as RecordBlock, under the idempotency key `block-<height>`: after a restart
it resumes after the highest recorded block, and a block it meets again is replayed, never
recorded twice.

CometBFT names a block's proposer by its validator address (hex), not by a remes wallet: the
operator maps proposers to wallets (`R3MES_CHAIN_PROPOSER_WALLETS`); a block whose proposer has
no wallet is skipped, logged once per proposer.

It never takes the service down: it runs as a background job whose failures (chain down, an
HTTP error, an answer it cannot read) are logged on the first failure and on recovery and are
published in health as `mining.chain-indexer` NOT_SERVING; its progress (lagging so many blocks,
caught up) is logged when it changes. The URL is an operator setting and trusted, so unlike
URLs that callers send, loopback and private addresses are allowed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import httpx

from services.core.background import PeriodicJob
from services.core.tls import client_context
from services.mining.domain import BlockAlreadyExists, NewBlock
from services.mining.settings import MiningSettings
from services.mining.usecases import MiningUseCases

logger = logging.getLogger(__name__)

JOB_NAME = "chain-indexer"
# CometBFT times carry nanoseconds; Python's datetime keeps microseconds.
_FRACTION = re.compile(r"(\.\d{6})\d+")


class IndexerState(Enum):
    STARTING = "starting"
    LAGGING = "lagging"
    CAUGHT_UP = "caught_up"
    FAILING = "failing"


class ChainRpcError(Exception):
    """The chain answered something the indexer cannot use."""


@dataclass(frozen=True)
class ChainBlock:
    height: int
    block_hash: str
    proposer: str
    block_time: datetime


class ChainIndexer:
    def __init__(
        self,
        client: httpx.AsyncClient,
        use_cases: MiningUseCases,
        *,
        proposer_wallets: dict[str, str],
        reward_micro_credits: int,
        start_height: int,
        blocks_per_poll: int,
        poll_interval_seconds: float,
    ) -> None:
        self._client = client
        self._use_cases = use_cases
        self._wallets = {proposer.upper(): wallet for proposer, wallet in proposer_wallets.items()}
        self._reward = reward_micro_credits
        self._start_height = start_height
        self._blocks_per_poll = blocks_per_poll
        self._interval = poll_interval_seconds
        self._next_height: int | None = None
        self._unmapped_seen: set[str] = set()
        self.state = IndexerState.STARTING
        self.behind = 0

    @classmethod
    def from_settings(cls, settings: MiningSettings, use_cases: MiningUseCases) -> ChainIndexer:
        assert settings.chain_rpc_url is not None
        client = httpx.AsyncClient(
            base_url=settings.chain_rpc_url,
            timeout=settings.chain_rpc_timeout_seconds,
            # The endpoint is the operator's; proxies from the environment are not asked.
            trust_env=False,
            verify=client_context(),
        )
        return cls(
            client,
            use_cases,
            proposer_wallets=settings.chain_proposer_wallets,
            reward_micro_credits=settings.chain_block_reward_micro_credits,
            start_height=settings.chain_start_height,
            blocks_per_poll=settings.chain_blocks_per_poll,
            poll_interval_seconds=settings.chain_poll_interval_seconds,
        )

    def job(self) -> PeriodicJob:
        return PeriodicJob(JOB_NAME, self._interval, self.catch_up)

    async def close(self) -> None:
        await self._client.aclose()

    async def catch_up(self) -> int:
        """Record blocks until the chain's height, re-reading it every `blocks_per_poll`
        blocks; returns how many blocks were recorded. Raises when the chain or storage fails
        (the job logs it and turns health NOT_SERVING); the next run resumes where it stopped."""
        recorded = 0
        try:
            if self._next_height is None:
                highest = await self._use_cases.highest_block()
                self._next_height = max(highest + 1, self._start_height)
            while True:
                latest = await self._latest_height()
                last = min(latest, self._next_height + self._blocks_per_poll - 1)
                while self._next_height <= last:
                    recorded += await self._record(await self._block(self._next_height))
                    self._next_height += 1
                behind = latest - self._next_height + 1
                if behind <= 0:
                    self._enter(IndexerState.CAUGHT_UP, 0, latest)
                    return recorded
                self._enter(IndexerState.LAGGING, behind, latest)
        except Exception:
            self.state = IndexerState.FAILING  # logged by the job, once, with the traceback
            raise

    def _enter(self, state: IndexerState, behind: int, latest: int) -> None:
        self.behind = behind
        if state is self.state:
            return
        self.state = state
        if state is IndexerState.LAGGING:
            logger.warning(
                "chain indexer lagging", extra={"blocks_behind": behind, "chain_height": latest}
            )
        else:
            logger.info("chain indexer caught up", extra={"chain_height": latest})

    async def _record(self, block: ChainBlock) -> int:
        wallet = self._wallets.get(block.proposer.upper())
        if wallet is None:
            if block.proposer not in self._unmapped_seen:
                self._unmapped_seen.add(block.proposer)
                logger.warning(
                    "skipping blocks of a proposer without a wallet",
                    extra={"proposer": block.proposer, "height": block.height},
                )
            return 0
        try:
            await self._use_cases.record_block(
                NewBlock(
                    height=block.height,
                    block_hash=block.block_hash,
                    miner_wallet_address=wallet,
                    reward_micro_credits=self._reward,
                    block_time=block.block_time,
                    idempotency_key=f"block-{block.height}",
                )
            )
        except BlockAlreadyExists:
            # Recorded by another caller under its own key: the height is taken, move on.
            logger.warning(
                "block already recorded by another caller", extra={"height": block.height}
            )
            return 0
        return 1

    async def _latest_height(self) -> int:
        result = await self._call("/status", {})
        try:
            return int(result["sync_info"]["latest_block_height"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainRpcError("/status has no sync_info.latest_block_height") from exc

    async def _block(self, height: int) -> ChainBlock:
        result = await self._call("/block", {"height": str(height)})
        try:
            header = result["block"]["header"]
            return ChainBlock(
                height=int(header["height"]),
                block_hash=str(result["block_id"]["hash"]).lower(),
                proposer=str(header["proposer_address"]).upper(),
                block_time=_chain_time(str(header["time"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainRpcError(f"/block?height={height} is not a block") from exc

    async def _call(self, path: str, params: dict[str, str]) -> Any:
        response = await self._client.get(path, params=params)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict) or "result" not in body:
            raise ChainRpcError(f"{path} answered without a result: {str(body)[:200]}")
        return body["result"]


def _chain_time(text: str) -> datetime:
    moment = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    if moment.tzinfo is None:
        raise ValueError("a block time without a zone")
    return moment.astimezone(UTC)
