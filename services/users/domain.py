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
class NetworkStats:
    total_users: int
    active_miners: int = 0
    total_micro_credits: int = 0
    block_height: int = 0


class UserNotFound(NotFound):
    reason = "USER_NOT_FOUND"

    def __init__(self, wallet_address: str) -> None:
        super().__init__(f"no user has wallet {wallet_address}")


class UserAlreadyExists(AlreadyExists):
    reason = "USER_ALREADY_EXISTS"

    def __init__(self, wallet_address: str) -> None:
        super().__init__(f"wallet {wallet_address} is already registered")
