"""Users: the account of a wallet and the network's statistics. No grpc, no sqlalchemy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


class UserNotFound(NotFound):
    reason = "USER_NOT_FOUND"

    def __init__(self, wallet_address: str) -> None:
        super().__init__(f"no user has wallet {wallet_address}")


class UserAlreadyExists(AlreadyExists):
    reason = "USER_ALREADY_EXISTS"

    def __init__(self, wallet_address: str) -> None:
        super().__init__(f"wallet {wallet_address} is already registered")
