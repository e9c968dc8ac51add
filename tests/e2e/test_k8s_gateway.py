"""The gateway as deploy/k8s runs it: Envoy on a config rendered beforehand (a ConfigMap) that
holds no gateway secret, reading it from Envoy's environment instead, and the services still
believe the client addresses it forwards."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.render import DEFAULT_DESCRIPTOR, GATEWAY_SECRET_FROM_ENVIRONMENT, render
from gateway.settings import GatewaySettings
from runner.local_stack import LocalStack, running_stack
from tests.e2e.test_ratelimit_gateway import POLICIES
from tests.integration.ratelimited import says_ratelimit

READ_QUOTA = 4  # GetNetworkStats per hour and client address, in POLICIES


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work_dir = tmp_path_factory.mktemp("k8s-gateway")
    policies = work_dir / "policies.yaml"
    policies.write_text(POLICIES)
    environment = {"R3MES_RATELIMIT_POLICIES_FILE": str(policies)}
    with running_stack(
        work_dir, internal_token="e2e-token", with_envoy=False, extra_environment=environment
    ) as running:
        config = work_dir / "configmap-envoy.yaml"
        config.write_text(config_map_text(running))
        running.start_front_door()
        running.start_envoy(rendered=config)
        running.wait_until_ready(60.0)
        yield running


def config_map_text(stack: LocalStack) -> str:
    """What tools.k8s puts in the ConfigMap, for this stack's ports and targets."""
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in stack.environment.items():
            patch.setenv(variable, value)
        settings = GatewaySettings(_env_file=None)
    return render(
        settings, DEFAULT_DESCRIPTOR.resolve(), gateway_secret=GATEWAY_SECRET_FROM_ENVIRONMENT
    )


def client_at(stack: LocalStack, address: str) -> httpx.AsyncClient:
    # Connections from `address` (any of 127/8): Envoy forwards it as the client's address.
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=stack.rest_url, transport=transport, timeout=10.0)


async def test_clients_behind_a_gateway_whose_config_holds_no_secret_keep_buckets_of_their_own(
    stack: LocalStack,
) -> None:
    remaining = []
    for address in ("127.0.0.21", "127.0.0.22"):
        async with client_at(stack, address) as rest:
            reply = await rest.get("/v1/network/stats")
        assert reply.status_code == 200, reply.text
        remaining.append(reply.headers["ratelimit"])

    # Had the services not recognized the secret, both calls would be charged to Envoy's own
    # address, one bucket: the second would have one call fewer left.
    left = READ_QUOTA - 1
    assert all(says_ratelimit(header, "read", left, 900) for header in remaining), remaining


def test_the_rendered_config_names_the_gateway_secret_without_holding_it(
    stack: LocalStack,
) -> None:
    config = (stack.work_dir / "configmap-envoy.yaml").read_text()

    assert stack.environment["R3MES_GATEWAY_SECRET"] not in config
    assert GATEWAY_SECRET_FROM_ENVIRONMENT in config
