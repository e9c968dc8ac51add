"""What serving remembers between chats: the nodes of a model for a second, and each wallet's
credits after its last hold (services.serving.usecases.recent)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.core.testing import FakeMonotonic
from services.serving.domain import NodeStatus, ServingNode
from services.serving.usecases.recent import NODES_MAX_AGE_SECONDS, CreditHints, RecentNodes

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def node(node_id: str) -> ServingNode:
    return ServingNode(
        node_id=node_id,
        wallet_address="remes1owner",
        endpoint_url="http://127.0.0.1:8090/v1",
        models=("m",),
        lora_adapters=(),
        status=NodeStatus.ONLINE,
        load=0,
        create_time=NOW,
        heartbeat_time=NOW,
    )


def test_the_nodes_of_a_model_are_remembered_for_a_second_and_no_longer() -> None:
    ticks = FakeMonotonic()
    recent = RecentNodes(monotonic=ticks)
    recent.put("m", "", [node("a")])

    ticks.now += NODES_MAX_AGE_SECONDS
    within = recent.get("m", "")
    ticks.now += 0.001
    after = recent.get("m", "")

    assert within == [node("a")]
    assert after is None


def test_a_model_no_node_serves_is_never_remembered_so_clients_cannot_grow_the_memory() -> None:
    recent = RecentNodes(monotonic=FakeMonotonic())
    recent.put("a-name-a-client-made-up", "", [])

    assert recent.get("a-name-a-client-made-up", "") is None


def test_clearing_forgets_every_model() -> None:
    recent = RecentNodes(monotonic=FakeMonotonic())
    recent.put("m", "", [node("a")])
    recent.put("m", "adapter", [node("a")])

    recent.clear()

    assert (recent.get("m", ""), recent.get("m", "adapter")) == (None, None)


def test_a_wallet_is_likely_to_pay_only_what_its_last_hold_left_it() -> None:
    hints = CreditHints()
    hints.seen("remes1rich", 1000)

    assert hints.likely_to_pay("remes1rich", 1000)
    assert not hints.likely_to_pay("remes1rich", 1001)
    assert not hints.likely_to_pay("remes1never-seen", 1)


def test_a_refused_hold_makes_the_wallet_pay_first_again() -> None:
    hints = CreditHints()
    hints.seen("remes1w", 1000)
    hints.seen("remes1w", 3)  # its last chat was refused with 3 left

    assert not hints.likely_to_pay("remes1w", 10)
