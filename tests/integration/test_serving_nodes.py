"""Serving nodes belong to the wallet that registered them; their endpoints pass the SSRF rules
at registration and again at every connection; they claim only registered adapters."""

from __future__ import annotations

import grpc
import pytest
from r3mes.serving.v1 import serving_pb2

from services.serving import nodes
from tests.integration.apikeys_support import INTERNAL
from tests.integration.rpc import failure_of
from tests.integration.serving_support import Network, chat
from tools.reference_node import DEFAULT_MODEL

CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
PUBLIC = "93.184.215.14"


def registration(
    wallet: str, url: str, lora_adapters: list[str] | None = None
) -> serving_pb2.RegisterServingNodeRequest:
    return serving_pb2.RegisterServingNodeRequest(
        wallet_address=wallet,
        endpoint_url=url,
        models=[DEFAULT_MODEL],
        lora_adapters=lora_adapters or [],
    )


async def test_wallet_b_can_neither_beat_for_nor_remove_wallet_a_node(network: Network) -> None:
    a, b = await network.wallet(), await network.wallet()
    _, node_id = await network.node(a)
    serving = network.suite.serving

    refusals = []
    for call in (
        serving.Heartbeat(
            serving_pb2.HeartbeatRequest(wallet_address=a.address, node_id=node_id, load=99),
            metadata=b.key,
        ),
        serving.Heartbeat(
            serving_pb2.HeartbeatRequest(wallet_address=b.address, node_id=node_id, load=99),
            metadata=b.key,
        ),
        serving.DeregisterServingNode(
            serving_pb2.DeregisterServingNodeRequest(wallet_address=a.address, node_id=node_id),
            metadata=b.key,
        ),
        serving.DeregisterServingNode(
            serving_pb2.DeregisterServingNodeRequest(wallet_address=b.address, node_id=node_id),
            metadata=b.key,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        refusals.append(failure_of(refused.value).reason)

    assert refusals == ["WRONG_WALLET", "SERVING_NODE_NOT_FOUND"] * 2
    listed = await serving.ListServingNodes(serving_pb2.ListServingNodesRequest())
    assert [(n.node_id, n.load, n.fresh) for n in listed.nodes] == [(node_id, 0, True)]


async def test_the_owner_beats_lists_and_removes_its_node_and_silence_takes_it_offline(
    network: Network,
) -> None:
    owner = await network.wallet()
    _, node_id = await network.node(owner)
    serving = network.suite.serving
    fresh = serving_pb2.ListServingNodesRequest(model=DEFAULT_MODEL, fresh_only=True)

    network.clock.advance(seconds=61)
    silent = await serving.ListServingNodes(fresh)
    beat = serving_pb2.HeartbeatRequest(wallet_address=owner.address, node_id=node_id, load=40)
    await serving.Heartbeat(beat, metadata=owner.key)
    back = await serving.ListServingNodes(fresh)
    other_model = await serving.ListServingNodes(serving_pb2.ListServingNodesRequest(model="x"))
    await serving.DeregisterServingNode(
        serving_pb2.DeregisterServingNodeRequest(wallet_address=owner.address, node_id=node_id),
        metadata=owner.key,
    )
    gone = await serving.ListServingNodes(serving_pb2.ListServingNodesRequest())

    assert list(silent.nodes) == []
    assert [(n.node_id, n.load, n.fresh) for n in back.nodes] == [(node_id, 40, True)]
    assert list(other_model.nodes) == []
    assert list(gone.nodes) == []


async def test_a_silent_node_gets_no_chat(network: Network) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    node, _ = await network.node(owner)
    network.clock.advance(seconds=61)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(network, client)

    assert failure_of(refused.value).reason == "NO_SERVING_NODES"
    assert node.requests == 0
    assert (await network.balance(client)).available_micro_credits == 10_000


async def test_nodes_list_in_pages(network: Network) -> None:
    owner = await network.wallet()
    ids = [(await network.node(owner))[1] for _ in range(3)]
    serving = network.suite.serving

    first = await serving.ListServingNodes(serving_pb2.ListServingNodesRequest(page_size=2))
    second = await serving.ListServingNodes(
        serving_pb2.ListServingNodesRequest(page_size=2, page_token=first.next_page_token)
    )

    assert sorted(n.node_id for n in [*first.nodes, *second.nodes]) == sorted(ids)
    assert second.next_page_token == ""


SSRF_CORPUS = [
    "http://169.254.169.254/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/v1",
    "http://[::ffff:10.0.0.1]:8000/v1",
    "http://2852039166/v1",
    "http://0251.0376.0251.0376/v1",
    "http://0x0a000001:8000/v1",
    "http://10.0.0.1:8000/v1",
    "http://192.168.1.1:8080/v1",
    "http://[fe80::1]:8000/v1",
    "http://[::1]:8000/v1",
    "http://localhost:8000/v1",
    "http://user:pass@node.example.org/v1",
    "ftp://node.example.org/v1",
    "http://node.example.org:22/v1",
]


@pytest.mark.parametrize("url", SSRF_CORPUS)
async def test_an_endpoint_outside_the_allowed_addresses_is_refused_at_registration(
    network: Network, url: str
) -> None:
    owner = await network.wallet()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await network.suite.serving.RegisterServingNode(
            registration(owner.address, url), metadata=owner.key
        )

    failure = failure_of(refused.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert list(failure.bad_fields) == ["endpoint_url"]


async def test_a_name_resolving_to_loopback_is_refused_though_loopback_addresses_are_allowed(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await network.wallet()
    await network.node(owner)  # registered by its address, 127.0.0.1: allowed
    answers = {"node.example.org": ["127.0.0.1"], "mixed.example.org": [PUBLIC, "10.1.2.3"]}

    async def resolve(host: str, port: int) -> list[str]:
        return answers.get(host, [])

    monkeypatch.setattr(nodes, "resolve_host", resolve)
    reasons = []
    for name in ("node.example.org", "mixed.example.org", "nowhere.example.org"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await network.suite.serving.RegisterServingNode(
                registration(owner.address, f"http://{name}:8000/v1"), metadata=owner.key
            )
        reasons.append(failure_of(refused.value).bad_fields["endpoint_url"])

    assert (
        reasons[0]
        == reasons[1]
        == ("must not point to a loopback, private, link-local or other non-public address")
    )
    assert reasons[2] == "does not resolve to any address"


async def test_a_name_re_pointed_at_a_private_address_after_registration_is_never_reached(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    answers = {"node.example.org": [PUBLIC]}

    async def resolve(host: str, port: int) -> list[str]:
        return answers.get(host, [])

    monkeypatch.setattr(nodes, "resolve_host", resolve)
    await network.suite.serving.RegisterServingNode(
        registration(owner.address, "http://node.example.org:8000/v1"), metadata=owner.key
    )
    node, _ = await network.node(owner)
    node.fail_before_first_token = True  # so only the re-pointed name could answer
    answers["node.example.org"] = ["127.0.0.1"]  # DNS rebinding: now it points inside

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(network, client)

    assert failure_of(refused.value).reason == "NO_SERVING_NODES"
    assert (await network.balance(client)).available_micro_credits == 10_000
    await network.ledger_is_exact()


async def test_redirects_are_not_followed(network: Network) -> None:
    """A node answering 3xx is a node that failed: the chat goes on to the next."""
    owner, client = await network.wallet(), await network.wallet(credits=10_000)
    redirecting, _ = await network.node(owner, redirect_to="http://169.254.169.254/")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(network, client)

    assert failure_of(refused.value).reason == "NO_SERVING_NODES"
    assert redirecting.requests == 1
    await network.ledger_is_exact()


async def test_nodes_claim_only_registered_adapters_of_models_they_serve(network: Network) -> None:
    owner = await network.wallet()
    serving = network.suite.serving
    lora = serving_pb2.RegisterLoRARequest(
        name="legal-v1", base_model=DEFAULT_MODEL, content_id=CID_V1, description="contracts"
    )
    await serving.RegisterLoRA(lora, metadata=INTERNAL)
    other = serving_pb2.RegisterLoRARequest(name="poems-v0", base_model="other", content_id=CID_V0)
    await serving.RegisterLoRA(other, metadata=INTERNAL)

    reasons = []
    for adapters in (["unknown-v1"], ["poems-v0"]):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await serving.RegisterServingNode(
                registration(owner.address, "http://127.0.0.1:9/v1", lora_adapters=adapters),
                metadata=owner.key,
            )
        reasons.append(failure_of(refused.value).reason)
    registered = await serving.RegisterServingNode(
        registration(owner.address, "http://127.0.0.1:9/v1", lora_adapters=["legal-v1"]),
        metadata=owner.key,
    )
    by_adapter = await serving.ListServingNodes(
        serving_pb2.ListServingNodesRequest(lora_adapter="legal-v1")
    )
    loras = await serving.ListLoRAs(serving_pb2.ListLoRAsRequest())

    assert reasons == ["LORA_NOT_REGISTERED", "LORA_BASE_MODEL_NOT_SERVED"]
    assert [n.node_id for n in by_adapter.nodes] == [registered.node.node_id]
    assert [(x.name, x.content_id) for x in loras.loras] == [
        ("legal-v1", CID_V1),
        ("poems-v0", CID_V0),
    ]


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"name": "Legal", "content_id": CID_V1}, "name"),
        ({"name": "ok-name", "content_id": "Qm123"}, "content_id"),
        ({"name": "ok-name", "content_id": "bafy"}, "content_id"),
    ],
)
async def test_adapters_need_a_lowercase_name_and_an_ipfs_cid(
    network: Network, fields: dict[str, str], bad: str
) -> None:
    request = serving_pb2.RegisterLoRARequest(base_model=DEFAULT_MODEL, **fields)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await network.suite.serving.RegisterLoRA(request, metadata=INTERNAL)

    assert list(failure_of(refused.value).bad_fields) == [bad]


async def test_a_wallet_key_cannot_register_adapters(network: Network) -> None:
    owner = await network.wallet()
    request = serving_pb2.RegisterLoRARequest(
        name="mine-v1", base_model=DEFAULT_MODEL, content_id=CID_V1
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await network.suite.serving.RegisterLoRA(request, metadata=owner.key)

    assert failure_of(refused.value).reason == "INTERNAL_ONLY"
