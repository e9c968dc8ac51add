"""deploy/compose.yaml keeps the shape deploy/README.md promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.registry import NAMES

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
SERVICES = NAMES


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_the_compose_file_runs_the_databases_the_services_and_the_gateway(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    assert {"postgres", "redis", "migrate", "gateway", *SERVICES} <= set(services)
    for name in SERVICES:
        # The same image and command for each; the setting chooses the service.
        assert services[name]["command"] == ["python", "-m", "services"]
        assert services[name]["environment"]["R3MES_SERVICES"] == name
        assert services[name]["environment"]["R3MES_TOPOLOGY"] == "split"
        assert services[name]["environment"][f"R3MES_{name.upper()}_TARGET"].startswith(name)
        assert "replicas" in services[name]["deploy"]


def test_the_gateway_config_is_rendered_by_the_same_code_as_make_run(
    compose: dict[str, Any],
) -> None:
    assert compose["services"]["gateway"]["command"][:3] == ["python", "-m", "gateway.serve"]


def test_every_service_container_and_the_gateway_serve_metrics_for_prometheus(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    for name in SERVICES:
        assert services[name]["environment"]["R3MES_METRICS_PORT"] == "9464"
    assert services["gateway"]["environment"]["R3MES_GATEWAY_METRICS_PORT"] == "9463"


def test_only_the_gateway_is_published(compose: dict[str, Any]) -> None:
    published = {name for name, service in compose["services"].items() if "ports" in service}

    assert published == {"gateway"}


def test_the_services_trust_forwarded_addresses_from_the_gateway_alone(
    compose: dict[str, Any],
) -> None:
    gateway_address = compose["services"]["gateway"]["networks"]["backend"]["ipv4_address"]

    trusted = compose["services"]["users"]["environment"]["R3MES_TRUSTED_PROXIES"]

    assert yaml.safe_load(trusted) == [f"{gateway_address}/32"]


def test_the_gateway_reaches_a_front_door_of_its_own_on_the_backend_network(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    assert services["frontdoor"]["command"] == ["python", "-m", "gateway.frontdoor"]
    assert "ports" not in services["frontdoor"]
    assert services["gateway"]["environment"]["R3MES_FRONTDOOR_HOST"] == "frontdoor"
    assert "frontdoor" in services["gateway"]["depends_on"]


def test_every_service_hears_revoked_keys_on_the_compose_redis(compose: dict[str, Any]) -> None:
    for name in ("users", "apikeys", "mining", "credits"):
        environment = compose["services"][name]["environment"]
        assert environment["R3MES_REDIS_URL"] == "redis://redis:6379/0"


def test_the_gateway_and_every_service_hold_the_same_gateway_secret(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    for name in ("gateway", *SERVICES):
        assert "gateway_secret" in services[name]["secrets"], name
        secret_file = services[name]["environment"]["R3MES_GATEWAY_SECRET_FILE"]
        assert secret_file == "/run/secrets/gateway_secret", name
    assert compose["secrets"]["gateway_secret"] == {"file": "./secrets/gateway_secret"}
