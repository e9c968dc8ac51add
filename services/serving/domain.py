"""The rules of serving: node and adapter names, freshness, prices, and what a chat costs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from services.core.errors import (
    AlreadyExists,
    ErrorDetails,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)

MAX_MODELS = 16
MAX_ADAPTERS = 16
MAX_MESSAGES = 64
DEFAULT_MAX_TOKENS = 256
# What a chat template adds per message (role markers, separators): generous, it only bounds.
TEMPLATE_TOKENS_PER_MESSAGE = 8
ROLES = frozenset({"system", "user", "assistant"})
# Model names as servers spell them: `llama-3.1-8b`, `meta-llama/Llama-3.1-8B`, `llama3:8b`.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_LORA_NAME = re.compile(r"[a-z][a-z0-9._-]{2,63}")


class NodeStatus(Enum):
    ONLINE = "online"
    DRAINING = "draining"


@dataclass(frozen=True)
class ServingNode:
    node_id: str
    wallet_address: str
    endpoint_url: str
    models: tuple[str, ...]
    lora_adapters: tuple[str, ...]
    status: NodeStatus
    load: int
    create_time: datetime
    heartbeat_time: datetime

    def fresh_at(self, now: datetime, offline_after: timedelta) -> bool:
        return self.status is NodeStatus.ONLINE and now - self.heartbeat_time <= offline_after

    def serves(self, model: str, adapter: str) -> bool:
        return model in self.models and (not adapter or adapter in self.lora_adapters)


@dataclass(frozen=True)
class LoRA:
    name: str
    base_model: str
    content_id: str
    description: str
    active: bool
    create_time: datetime


class ServingNodeNotFound(NotFound):
    reason = "SERVING_NODE_NOT_FOUND"

    def __init__(self, node_id: str) -> None:
        super().__init__(f"no serving node {node_id} of this wallet")


class LoRAAlreadyExists(AlreadyExists):
    reason = "LORA_ALREADY_EXISTS"

    def __init__(self, name: str) -> None:
        super().__init__(f"a LoRA adapter named {name} is already registered")


class LoRANotRegistered(FailedPrecondition):
    reason = "LORA_NOT_REGISTERED"

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"LoRA adapters not registered (or inactive): {', '.join(names)}")


class LoRABaseModelNotServed(FailedPrecondition):
    reason = "LORA_BASE_MODEL_NOT_SERVED"

    def __init__(self, adapter: str, base_model: str) -> None:
        super().__init__(
            f"LoRA adapter {adapter} adapts {base_model}, which the node does not serve"
        )


class ModelNotServed(NotFound):
    reason = "MODEL_NOT_SERVED"

    def __init__(self, what: str) -> None:
        super().__init__(f"no registered serving node serves {what}")


class NoServingNodes(Unavailable):
    reason = "NO_SERVING_NODES"

    def __init__(self, what: str, tried: int) -> None:
        super().__init__(
            f"no fresh serving node could answer for {what} ({tried} tried); nothing was charged"
        )


class CreditsUnavailable(Unavailable):
    reason = "CREDITS_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("the credits service cannot be reached; nothing was charged, retry")


class SettlementRefused(FailedPrecondition):
    """Credits refused a capture, release or grant: retrying would not change its answer."""

    reason = "SETTLEMENT_REFUSED"


class InsufficientCredits(FailedPrecondition):
    reason = "INSUFFICIENT_CREDITS"

    def __init__(self, price: int, available: int | None) -> None:
        self.available = available
        balance = "less" if available is None else f"{available} micro-credits available"
        metadata = {"price_micro_credits": str(price)}
        if available is not None:
            metadata["available_micro_credits"] = str(available)
        super().__init__(
            f"this chat may cost up to {price} micro-credits and the wallet has {balance}; "
            "nothing was reserved (lower max_tokens or add credits)",
            details=ErrorDetails(metadata=metadata),
        )


def check_model_names(field: str, names: list[str], *, required: bool) -> tuple[str, ...]:
    violations = [
        FieldViolation(f"{field}[{i}]", "must be 1 to 128 of A-Z a-z 0-9 . _ : / -")
        for i, name in enumerate(names)
        if not _MODEL_NAME.fullmatch(name)
    ]
    if required and not names:
        violations.append(FieldViolation(field, "is required"))
    if len(names) > MAX_MODELS:
        violations.append(FieldViolation(field, f"must hold at most {MAX_MODELS} names"))
    if violations:
        raise InvalidArgument.for_fields(violations)
    return tuple(dict.fromkeys(names))


def check_lora_name(field: str, name: str) -> str:
    if not _LORA_NAME.fullmatch(name):
        raise InvalidArgument.for_field(
            field, "must be 3 to 64 of a-z 0-9 . _ -, starting with a lowercase letter"
        )
    return name


def check_adapter_names(field: str, names: list[str]) -> tuple[str, ...]:
    if len(names) > MAX_ADAPTERS:
        raise InvalidArgument.for_field(field, f"must hold at most {MAX_ADAPTERS} names")
    return tuple(dict.fromkeys(check_lora_name(f"{field}[{i}]", n) for i, n in enumerate(names)))


def check_adapters_fit(
    models: tuple[str, ...], adapters: list[LoRA], claimed: tuple[str, ...]
) -> None:
    """A node claims only registered, active adapters of models it serves."""
    known = {lora.name: lora for lora in adapters if lora.active}
    missing = [name for name in claimed if name not in known]
    if missing:
        raise LoRANotRegistered(missing)
    for name in claimed:
        if known[name].base_model not in models:
            raise LoRABaseModelNotServed(name, known[name].base_model)


@dataclass(frozen=True)
class Message:
    role: str
    content: str


def check_messages(messages: list[Message]) -> None:
    if len(messages) > MAX_MESSAGES:
        raise InvalidArgument.for_field("messages", f"must hold at most {MAX_MESSAGES} messages")
    violations = [
        FieldViolation(f"messages[{i}].role", "must be system, user or assistant")
        for i, message in enumerate(messages)
        if message.role not in ROLES
    ]
    if violations:
        raise InvalidArgument.for_fields(violations)


def prompt_token_bound(messages: list[Message]) -> int:
    """The most prompt tokens these messages can be: byte-level tokenizers never make more
    tokens than bytes, plus what a chat template adds per message."""
    return sum(len(m.content.encode()) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages)


@dataclass(frozen=True)
class Price:
    """Micro-credits per token."""

    prompt: int
    completion: int

    def most(self, prompt_bound: int, max_tokens: int) -> int:
        return self.prompt * prompt_bound + self.completion * max_tokens


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Settlement:
    """A chat's charge that credits could not settle when the chat ended: the capture of
    `charge` from its hold, then the node owner's `share` (none: no owner to pay). Both steps
    are asked again under the chat's own idempotency keys, so a step that had in fact gone
    through is answered as it was, never applied twice."""

    chat_id: str
    reservation_id: str
    charge: int
    usage: Usage
    owner_wallet: str | None
    share: int
    create_time: datetime
    # The capture went through: only the share is left (so the capture is counted once).
    confirmed: bool = False


def charged_usage(
    reported: Usage | None, received_chunks: int, prompt_bound: int, max_tokens: int
) -> Usage:
    """What the wallet pays for. A node that finished reports its usage; it is believed up to
    the bounds. Without a report (the node failed, the client left) only the chunks the client
    received count, and no prompt tokens: the answer was cut short by no fault of the wallet's
    own, or the wallet chose to stop and pays what reached it."""
    if reported is None:
        return Usage(0, min(received_chunks, max_tokens))
    return Usage(
        min(max(reported.prompt_tokens, 0), prompt_bound),
        min(max(reported.completion_tokens, 0), max_tokens),
    )


def charge_of(price: Price, usage: Usage, reserved: int) -> int:
    return min(
        price.prompt * usage.prompt_tokens + price.completion * usage.completion_tokens, reserved
    )


def node_share(charge: int, share_percent: int) -> int:
    return charge * share_percent // 100
