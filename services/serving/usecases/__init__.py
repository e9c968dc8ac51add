"""The operations of the serving service: nodes, adapters, and chats paid exactly.

A chat: price it, find the fresh nodes that serve it (nothing is reserved when there is none),
reserve the most it can cost, then ask the least loaded node (while the hold is written, for a
wallet whose last hold left it enough: `recent`); a node that fails before its
first token is skipped for a while and the next one is asked. Once a token has reached the
client the answer stays with that node. When the answer ends, however it ends, the wallet is
charged for what it received (services.serving.domain.charged_usage), the rest of the hold is
released, and the node's owner is credited its share (`settlement`).

- `chat`: the chat's terms (request, events, policy, the peers it needs as Protocols);
- `operations`: `ServingUseCases`, what the servicer calls;
- `recent`: what the process remembers between chats (the nodes of a model, each wallet's
  credits at its last hold) to start the next one sooner;
- `settlement`: capturing, releasing and sharing a chat's charge, and the job that settles
  what credits did not answer at the chat's end.
"""

from services.serving.usecases.chat import (
    RESERVATION_TTL_SECONDS,
    ChatEnded,
    ChatRequest,
    ChatStarted,
    FinishReason,
    Held,
    NodeHealth,
    Piece,
    ServingPolicy,
)
from services.serving.usecases.operations import ServingUseCases
from services.serving.usecases.settlement import SETTLEMENT_INTERVAL_SECONDS, SETTLEMENT_JOB

__all__ = [
    "RESERVATION_TTL_SECONDS",
    "SETTLEMENT_INTERVAL_SECONDS",
    "SETTLEMENT_JOB",
    "ChatEnded",
    "ChatRequest",
    "ChatStarted",
    "FinishReason",
    "Held",
    "NodeHealth",
    "Piece",
    "ServingPolicy",
    "ServingUseCases",
]
