"""What the serving tests share: the whole suite with reference nodes, wallets holding keys and
credits, chats, and the ledger read back exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from r3mes.credits.v1 import credits_pb2
from r3mes.serving.v1 import serving_pb2

from services.core.settings import Settings
from services.core.testing import FakeClock, new_wallet_address
from tests.integration.apikeys_support import INTERNAL, as_key, issue_key
from tests.integration.credits_support import check_invariants, new_key
from tests.integration.topologies import Suite, running_suite
from tools.reference_node import DEFAULT_MODEL, ReferenceNode

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Wallet:
    address: str
    key: Metadata


@dataclass
class Network:
    """A running suite, its clock, and the reference nodes started for it."""

    suite: Suite
    settings: Settings
    clock: FakeClock
    nodes: list[ReferenceNode] = field(default_factory=list)
    _stack: AsyncExitStack | None = None

    async def wallet(self, credits: int = 0) -> Wallet:
        address = new_wallet_address()
        issued = await issue_key(self.suite.apikeys, address)
        if credits:
            grant = credits_pb2.GrantCreditsRequest(
                wallet_address=address, amount_micro_credits=credits, idempotency_key=new_key()
            )
            await self.suite.credits.GrantCredits(grant, metadata=INTERNAL)
        return Wallet(address, as_key(issued.secret))

    async def node(self, owner: Wallet, **knobs: object) -> tuple[ReferenceNode, str]:
        """A reference node started and registered by `owner`; its node id."""
        node = ReferenceNode(**knobs)  # type: ignore[arg-type]
        await node.start()
        assert self._stack is not None
        self._stack.push_async_callback(node.stop)
        self.nodes.append(node)
        registered = await self.suite.serving.RegisterServingNode(
            serving_pb2.RegisterServingNodeRequest(
                wallet_address=owner.address, endpoint_url=node.url, models=[DEFAULT_MODEL]
            ),
            metadata=owner.key,
        )
        return node, registered.node.node_id

    async def balance(self, wallet: Wallet) -> credits_pb2.Balance:
        request = credits_pb2.GetBalanceRequest(wallet_address=wallet.address)
        # As an operator (exempt from rate limits): tests poll it while a chat settles.
        return (await self.suite.credits.GetBalance(request, metadata=INTERNAL)).balance

    async def ledger_is_exact(self) -> None:
        await check_invariants(self.settings, self.suite.credits, self.clock())


@asynccontextmanager
async def running_network(
    settings: Settings, topology: str = "one-process"
) -> AsyncIterator[Network]:
    clock = FakeClock()
    async with AsyncExitStack() as stack, running_suite(settings, topology, clock) as suite:
        network = Network(suite, settings, clock, _stack=stack)
        yield network


def chat_request(
    wallet: Wallet | None = None, max_tokens: int = 0, content: str = "hello node"
) -> serving_pb2.StreamChatCompletionRequest:
    return serving_pb2.StreamChatCompletionRequest(
        wallet_address=wallet.address if wallet else "",
        model=DEFAULT_MODEL,
        messages=[serving_pb2.ChatMessage(role="user", content=content)],
        max_tokens=max_tokens,
    )


async def chat(
    network: Network, wallet: Wallet, max_tokens: int = 0
) -> list[serving_pb2.StreamChatCompletionResponse]:
    call = network.suite.serving.StreamChatCompletion(
        chat_request(max_tokens=max_tokens), metadata=wallet.key
    )
    return [chunk async for chunk in call]
