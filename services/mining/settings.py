"""The mining service's own settings: report retention and the optional chain indexer."""

from __future__ import annotations

import string

from pydantic import Field, field_validator

from services.core import validators
from services.core.settings import SettingsBase


class MiningSettings(SettingsBase):
    mining_report_retention_days: int = Field(
        180,
        ge=1,
        description="Raw mining reports older than this (by observe time) are pruned; the "
        "per-day rollups and per-miner totals every read uses are kept.",
    )
    mining_prune_interval_seconds: float = Field(
        3600.0, gt=0, description="How often mining prunes old raw reports."
    )
    chain_rpc_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="CometBFT RPC endpoint (http or https) whose blocks the mining service "
        "records. Unset: no indexer. An operator setting, trusted: loopback and private "
        "addresses are allowed.",
    )
    chain_poll_interval_seconds: float = Field(
        5.0, gt=0, description="Pause of the indexer between polls once caught up or failing."
    )
    chain_rpc_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline of each request of the indexer to the chain."
    )
    chain_blocks_per_poll: int = Field(
        100,
        ge=1,
        le=10000,
        description="Blocks the indexer records between two reads of the chain's height.",
    )
    chain_start_height: int = Field(
        1, ge=1, description="First block the indexer records when none is recorded yet."
    )
    chain_proposer_wallets: dict[str, str] = Field(
        {},
        description="Proposer address (hex, as in block headers) -> remes wallet credited with "
        "the block, as JSON. Blocks of other proposers are skipped (logged once per proposer).",
    )
    chain_block_reward_micro_credits: int = Field(
        0, ge=0, le=10**15, description="Reward recorded with each indexed block."
    )

    @field_validator("chain_proposer_wallets")
    @classmethod
    def _proposer_wallets(cls, mapping: dict[str, str]) -> dict[str, str]:
        # Headers spell proposers in uppercase hex; wallets are checked like any request's.
        checked = {}
        for proposer, wallet in mapping.items():
            if not proposer or any(c not in string.hexdigits for c in proposer):
                raise ValueError(f"proposer {proposer!r} is not a hex address")
            checked[proposer.upper()] = validators.wallet_address(wallet)
        return checked
