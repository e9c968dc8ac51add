"""deploy/compose.yaml keeps the shape deploy/README.md promises, and is what the registry
generates (python -m tools.compose)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from services.core.registry import NAMES
from tools.compose import COMPOSE_FILE, DEFAULT_OUTPUT, PROMETHEUS_FILE, files

COMPOSE = DEFAULT_OUTPUT / COMPOSE_FILE
SERVICES = NAMES


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_the_committed_compose_files_are_the_ones_the_registry_generates() -> None:
    stale = [path for path, text in files().items() if (DEFAULT_OUTPUT / path).read_text() != text]

    assert stale == [], "run: python -m tools.compose"


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


def test_every_service_container_the_gateway_and_the_front_door_serve_metrics_for_prometheus(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    for name in SERVICES:
        assert services[name]["environment"]["R3MES_METRICS_PORT"] == "9464"
    assert services["gateway"]["environment"]["R3MES_GATEWAY_METRICS_PORT"] == "9463"
    assert services["frontdoor"]["environment"]["R3MES_FRONTDOOR_METRICS_PORT"] == "9464"


def test_prometheus_scrapes_every_container_on_the_port_it_serves_metrics_on(
    compose: dict[str, Any],
) -> None:
    config = yaml.safe_load((DEFAULT_OUTPUT / PROMETHEUS_FILE).read_text())
    services = compose["services"]
    scraped: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for found in job.get("dns_sd_configs", []):
            scraped.update((name, str(found["port"])) for name in found["names"])
        for static in job.get("static_configs", []):
            scraped.update(target.split(":") for target in static["targets"])
    serving = {name: services[name]["environment"]["R3MES_METRICS_PORT"] for name in SERVICES}
    serving["gateway"] = services["gateway"]["environment"]["R3MES_GATEWAY_METRICS_PORT"]
    serving["frontdoor"] = services["frontdoor"]["environment"]["R3MES_FRONTDOOR_METRICS_PORT"]

    assert scraped == serving
    assert set(services["prometheus"]["depends_on"]) == set(serving)


def test_only_the_gateway_is_published(compose: dict[str, Any]) -> None:
    published = {name for name, service in compose["services"].items() if "ports" in service}

    assert published == {"gateway"}


def test_the_services_trust_forwarded_addresses_from_the_gateway_and_the_front_door_alone(
    compose: dict[str, Any],
) -> None:
    # The front door's OpenAI-compatible door passes its callers' addresses on, as Envoy does.
    proxies = [
        compose["services"][name]["networks"]["backend"]["ipv4_address"]
        for name in ("gateway", "frontdoor")
    ]

    trusted = compose["services"]["users"]["environment"]["R3MES_TRUSTED_PROXIES"]

    assert yaml.safe_load(trusted) == [f"{address}/32" for address in proxies]


def test_the_gateway_reaches_a_front_door_of_its_own_on_the_backend_network(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    assert services["frontdoor"]["command"] == ["python", "-m", "gateway.frontdoor"]
    assert "ports" not in services["frontdoor"]
    assert services["gateway"]["environment"]["R3MES_FRONTDOOR_HOST"] == "frontdoor"
    assert "frontdoor" in services["gateway"]["depends_on"]


def test_every_service_hears_revoked_keys_on_the_compose_redis(compose: dict[str, Any]) -> None:
    for name in SERVICES:
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


def test_every_service_container_is_health_checked_over_grpc_and_has_resource_limits(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    for name in SERVICES:
        healthcheck = services[name]["healthcheck"]
        assert healthcheck["test"] == ["CMD", "python", "-m", "services.core.healthcheck"]
        assert services[name]["deploy"]["resources"]["limits"] == {"cpus": "1", "memory": "512M"}
    for name in ("gateway", "frontdoor"):
        assert set(services[name]["depends_on"]) >= set(SERVICES), name
        for service in SERVICES:
            condition = services[name]["depends_on"][service]["condition"]
            assert condition == "service_healthy", name


def test_every_container_has_limits_and_every_one_that_keeps_running_a_health_check(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    running = {name for name, service in services.items() if "restart" in service}
    # The one container that runs once and exits: health means nothing to it, its exit does.
    waiting_on_migrate = {
        name: service["depends_on"]["migrate"]["condition"]
        for name, service in services.items()
        if "migrate" in service.get("depends_on", {})
    }

    assert set(services) - running == {"migrate"}
    for name in running:
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for name, service in services.items():
        assert service["deploy"]["resources"]["limits"], name
    assert waiting_on_migrate == dict.fromkeys(SERVICES, "service_completed_successfully")


def test_the_front_door_is_health_checked_on_its_own_grpc_health_not_on_every_services(
    compose: dict[str, Any],
) -> None:
    healthcheck = compose["services"]["frontdoor"]["healthcheck"]

    assert healthcheck["test"] == ["CMD", "python", "-m", "gateway.frontdoor.healthcheck"]


def test_prometheus_scrapes_every_registered_service_and_the_gateway_with_the_alerts_loaded(
    compose: dict[str, Any],
) -> None:
    prometheus = compose["services"]["prometheus"]
    mounted, inside = prometheus["volumes"][0].split(":")[:2]
    config = yaml.safe_load((COMPOSE.parent / mounted).read_text())
    metrics_port = compose["services"]["users"]["environment"]["R3MES_METRICS_PORT"]

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (discovery,) = jobs["r3mes-services"]["dns_sd_configs"]
    gateway_port = compose["services"]["gateway"]["environment"]["R3MES_GATEWAY_METRICS_PORT"]
    assert jobs["gateway"]["static_configs"] == [{"targets": [f"gateway:{gateway_port}"]}]
    assert config["rule_files"] == ["alerts.yml"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    assert inside == "/etc/prometheus/prometheus.yml"
    assert f"--config.file={inside}" in prometheus["command"]
    assert discovery["names"] == list(SERVICES)
    assert discovery["port"] == int(metrics_port)
    assert "ports" not in prometheus
