"""Users: the account of a wallet and the network's statistics. No grpc, no sqlalchemy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from services.core.errors import AlreadyExists, NotFound


@dataclass(frozen=True)
class User:
    wallet_address: str
    created_at: datetime


@dataclass(frozen=True)
class Balance:
    """What the credits service says a wallet holds, in micro-credits."""

    available_micro_credits: int
    reserved_micro_credits: int


@dataclass(frozen=True)
class MiningStatus:
    """What the mining service says of a wallet; a wallet that never mined is no miner."""

    is_miner: bool
    last_mining_time: datetime | None = None


NOT_A_MINER = MiningStatus(is_miner=False)


@dataclass(frozen=True)
class MiningSummary:
    active_miners: int
    block_height: int


@dataclass(frozen=True)
class UserProfile:
    """A user as GetUser shows it; what a peer could not tell is None (unknown), never zero."""

    user: User
    balance: Balance | None = None
    mining: MiningStatus | None = None


@dataclass(frozen=True)
class NetworkStats:
    total_users: int
    total_micro_credits: int | None = None
    mining: MiningSummary | None = None


StateT = TypeVar("StateT")


@dataclass(frozen=True)
class Known(Generic[StateT]):
    """What a peer's event told of a wallet (services.core.events): its state and version."""

    wallet_address: str
    version: int
    state: StateT


def balance_of_event(payload: Mapping[str, Any]) -> Balance:
    """A balance event of credits: both figures exact integers (JSON numbers, never floats)."""
    return Balance(_micro_credits(payload, "available"), _micro_credits(payload, "reserved"))


def mining_status_of_event(payload: Mapping[str, Any]) -> MiningStatus:
    """A miner event of mining: the wallet has reported, so it is a miner."""
    last = datetime.fromisoformat(str(payload["last_report_time"]))
    return MiningStatus(is_miner=True, last_mining_time=_utc(last))


def _micro_credits(payload: Mapping[str, Any], name: str) -> int:
    value = payload[name]
    if type(value) is not int or value < 0:
        raise ValueError(f"a balance event's {name} must be a whole number of micro-credits")
    return value


def _utc(moment: datetime) -> datetime:
    # SQLite's trigger writes UTC without a zone; PostgreSQL's has one.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class UserNotFound(NotFound):
    reason = "USER_NOT_FOUND"

    def __init__(self, wallet_address: str) -> None:
        super().__init__(f"no user has wallet {wallet_address}")


class UserAlreadyExists(AlreadyExists):
    reason = "USER_ALREADY_EXISTS"

    def __init__(self, wallet_address: str) -> None:
        super().__init__(f"wallet {wallet_address} is already registered")
