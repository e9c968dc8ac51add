"""The rendered Envoy configuration: accepted by Envoy itself, and shaped as the design says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.call_checks import NAME as CALL_CHECKS
from gateway.catalog import UPSTREAMS
from gateway.frontdoor.envoy import door_routes
from gateway.paths import ROOT
from gateway.render import DEFAULT_DESCRIPTOR, build_config, write_config
from gateway.serve import envoy_binary
from gateway.settings import Canary, GatewaySettings
from services.core.registry import NAMES, SERVICES

TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"


def settings(**values: Any) -> GatewaySettings:
    return GatewaySettings(_env_file=None, **values)


def connection_manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    manager: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


def filter_names(config: dict[str, Any]) -> list[str]:
    return [f["name"] for f in connection_manager(config)["http_filters"]]


CANARY = {"mining": Canary(target="127.0.0.1:50063", weight=5)}
COLLECTOR = "http://otel-collector.observability:4317"


@pytest.mark.parametrize(
    ("canaries", "collector"),
    [({}, None), (CANARY, None), ({}, COLLECTOR)],
    ids=["as by default", "with a canary", "with a trace collector"],
)
def test_envoy_accepts_the_rendered_configuration(
    tmp_path: Path, canaries: dict[str, Canary], collector: str | None
) -> None:
    config = write_config(
        settings(canaries=canaries, otlp_endpoint=collector),
        DEFAULT_DESCRIPTOR,
        tmp_path / "envoy.yaml",
    )

    checked = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_transcoder_serves_every_registered_service_with_the_agreed_options() -> None:
    config = build_config(settings(), DEFAULT_DESCRIPTOR)

    transcoder = next(
        f for f in connection_manager(config)["http_filters"] if f["name"] == TRANSCODER
    )["typed_config"]

    assert transcoder["services"] == [spec.proto_service for spec in SERVICES]
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["ignore_unknown_query_parameters"] is True
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["print_options"]["always_print_primitive_fields"] is True


def test_internal_headers_are_stripped_before_any_filter_that_reads_headers() -> None:
    names = filter_names(build_config(settings(), DEFAULT_DESCRIPTOR))

    assert names[0] == "envoy.filters.http.cors"
    assert names.index("r3mes.strip_internal_headers") < names.index(TRANSCODER)
    assert names[-1] == "envoy.filters.http.router"


def test_call_checks_see_grpc_web_calls_as_grpc_and_rest_calls_before_transcoding() -> None:
    names = filter_names(build_config(settings(), DEFAULT_DESCRIPTOR))

    checks = names.index(CALL_CHECKS)
    assert names.index("envoy.filters.http.buffer") < checks
    assert names.index("envoy.filters.http.grpc_web") < checks < names.index(TRANSCODER)


def test_the_admin_endpoint_listens_on_loopback_only() -> None:
    config = build_config(
        settings(listen_host="0.0.0.0", gateway_admin_port=19901),  # noqa: S104 - the point
        DEFAULT_DESCRIPTOR,
    )

    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 19901,
    }


def test_the_trusted_hops_setting_reaches_envoy() -> None:
    manager = connection_manager(build_config(settings(gateway_trusted_hops=1), DEFAULT_DESCRIPTOR))

    assert manager["use_remote_address"] is True
    assert manager["xff_num_trusted_hops"] == 1


def test_an_upstream_named_by_dns_becomes_a_dns_cluster_of_all_its_addresses() -> None:
    config = build_config(
        settings(targets={"users": "users:50051", "mining": "10.0.0.7:50053"}), DEFAULT_DESCRIPTOR
    )
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}

    assert clusters["users"]["cluster_type"]["name"] == "envoy.cluster.dns"
    assert clusters["mining"]["type"] == "STATIC"
    for upstream in UPSTREAMS:
        cluster = clusters[upstream.name]
        health_check = cluster["health_checks"][0]["grpc_health_check"]
        assert health_check == {"service_name": upstream.proto_service}
        protocol = cluster["typed_extension_protocol_options"]
        assert "http2_protocol_options" in next(iter(protocol.values()))["explicit_http_config"]


def test_a_target_listing_several_addresses_becomes_one_cluster_with_a_host_each() -> None:
    replicas = "ipv4:127.0.0.1:50054,10.0.0.8:50064"
    config = build_config(settings(targets={"credits": replicas}), DEFAULT_DESCRIPTOR)
    credits = next(c for c in config["static_resources"]["clusters"] if c["name"] == "credits")

    hosts = [
        e["endpoint"]["address"]["socket_address"]
        for e in credits["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert credits["type"] == "STATIC"
    assert hosts == [
        {"address": "127.0.0.1", "port_value": 50054},
        {"address": "10.0.0.8", "port_value": 50064},
    ]
    with pytest.raises(ValueError, match="lists IP addresses"):
        build_config(settings(targets={"credits": "ipv4:credits:50054"}), DEFAULT_DESCRIPTOR)


def cluster_addresses(config: dict[str, Any]) -> dict[str, tuple[str, int]]:
    addresses = {}
    for cluster in config["static_resources"]["clusters"]:
        if not cluster["load_assignment"]["endpoints"]:  # the collector's, when none is set
            continue
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        socket = endpoint["address"]["socket_address"]
        addresses[cluster["name"]] = (socket["address"], socket["port_value"])
    return addresses


def test_a_moved_port_moves_the_cluster_of_its_service_when_no_target_is_set() -> None:
    split = settings(topology="split", ports={"credits": 62074}, listen_host="0.0.0.0")  # noqa: S104

    addresses = cluster_addresses(build_config(split, DEFAULT_DESCRIPTOR))

    assert addresses["credits"] == ("127.0.0.1", 62074)
    assert addresses["users"] == ("127.0.0.1", 50051)


def test_envoy_sends_its_spans_to_the_collector_set_at_the_sampling_set() -> None:
    config = build_config(
        settings(otlp_endpoint="http://otel-collector:4317", trace_sample_percent=12.5),
        DEFAULT_DESCRIPTOR,
    )

    tracing = connection_manager(config)["tracing"]
    assert tracing["random_sampling"] == {"value": 12.5}
    assert cluster_addresses(config)["opentelemetry_collector"] == ("otel-collector", 4317)


def test_without_a_collector_envoy_still_starts_traces_but_samples_and_sends_none() -> None:
    config = build_config(settings(), DEFAULT_DESCRIPTOR)

    tracing = connection_manager(config)["tracing"]
    assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"
    assert tracing["random_sampling"] == {"value": 0}
    (collector,) = [
        c for c in config["static_resources"]["clusters"] if c["name"] == "opentelemetry_collector"
    ]
    assert collector["load_assignment"]["endpoints"] == []


def test_in_one_process_every_cluster_reaches_the_one_port_and_a_set_target_wins() -> None:
    one = settings(
        topology="one-process", ports={"users": 62051}, targets={"mining": "10.0.0.7:50053"}
    )

    addresses = cluster_addresses(build_config(one, DEFAULT_DESCRIPTOR))

    assert {name: addresses[name] for name in NAMES} == {
        **dict.fromkeys(NAMES, ("127.0.0.1", 62051)),
        "mining": ("10.0.0.7", 50053),
    }


def test_the_gateway_sends_services_one_client_address_of_its_own_choosing() -> None:
    config = build_config(settings(), DEFAULT_DESCRIPTOR)
    virtual_host = connection_manager(config)["route_config"]["virtual_hosts"][0]

    added = {h["header"]["key"]: h for h in virtual_host["request_headers_to_add"]}

    assert added["x-forwarded-for"]["header"]["value"] == (
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
    )
    assert added["x-forwarded-for"]["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
    assert "x-r3mes-internal-token" in virtual_host["request_headers_to_remove"]


def test_a_call_the_gateway_retries_goes_to_a_replica_it_has_not_tried() -> None:
    # Under load the round robin hands a replica that just died to several attempts of one
    # call: without the predicate a GetUser ended UNAVAILABLE through all three (test_faults).
    config = build_config(settings(), DEFAULT_DESCRIPTOR)
    routes = connection_manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    services = [r["route"] for r in routes if r.get("route", {}).get("cluster") in NAMES]

    assert len(services) == len(NAMES)
    for route in services:
        predicates = route["retry_policy"]["retry_host_predicate"]
        assert [p["name"] for p in predicates] == ["envoy.retry_host_predicates.previous_hosts"]


def test_every_call_to_a_service_carries_the_gateway_secret_and_the_file_is_envoys_alone(
    tmp_path: Path,
) -> None:
    secret = "a-gateway-secret-of-32-characters"
    configured = settings(gateway_secret=secret)
    routes = connection_manager(build_config(configured, DEFAULT_DESCRIPTOR))["route_config"]
    service_routes = [
        route
        for route in routes["virtual_hosts"][0]["routes"]
        if route.get("route", {}).get("cluster") in NAMES
    ]

    assert len(service_routes) == len(NAMES)
    for route in service_routes:
        [added] = route["request_headers_to_add"]
        assert added["header"] == {"key": "x-r3mes-gateway-secret", "value": secret}
        assert added["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
    written = write_config(configured, DEFAULT_DESCRIPTOR, tmp_path / "envoy.yaml")
    assert written.stat().st_mode & 0o777 == 0o600


def test_a_gateway_secret_envoy_could_not_send_as_written_is_refused() -> None:
    with pytest.raises(ValueError, match="gateway secret"):
        build_config(settings(gateway_secret="100%-not-a-format"), DEFAULT_DESCRIPTOR)


def documented_gateway_limits() -> dict[str, str]:
    """Envoy field -> value, from the table of docs/operations.md's "Gateway limits"."""
    text = OPERATIONS_DOC.read_text()
    section = text.split("## Gateway limits", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    limits = {}
    for cells in rows[1:]:  # the first row is the heading
        field, value = (re.fullmatch(r"\s*`([^`]+)`\s*", cell) for cell in cells[1:3])
        assert field, cells
        assert value, cells
        limits[field.group(1)] = value.group(1)
    return limits


def values_at(tree: Any, path: list[str]) -> list[Any]:
    """Every value reached by `path` (keys nested in that order) anywhere in `tree`."""
    found = []
    if isinstance(tree, dict):
        node: Any = tree
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            found.append(node)
        children = list(tree.values())
    else:
        children = tree if isinstance(tree, list) else []
    for child in children:
        found += values_at(child, path)
    return found


def test_the_documented_gateway_limits_are_the_rendered_ones() -> None:
    config = build_config(settings(), DEFAULT_DESCRIPTOR)
    documented = documented_gateway_limits()
    # The OpenAI-compatible door's routes have timeouts of their own, documented beside them.
    (host,) = values_at(config, ["virtual_hosts"])[0]
    host["routes"] = [route for route in host["routes"] if route not in door_routes()]

    assert len(documented) >= 10
    for field, value in documented.items():
        rendered = values_at(config, field.split("."))
        assert rendered, f"{field} is not in the rendered configuration"
        assert {str(v) for v in rendered} == {value}, field


def test_a_canary_of_a_service_the_registry_does_not_know_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="R3MES_CANARIES names unknown services: minning"):
        build_config(settings(canaries={"minning": CANARY["mining"]}), DEFAULT_DESCRIPTOR)


def _streams_per_connection(config: dict[str, Any]) -> dict[str, Any]:
    clusters = config["static_resources"]["clusters"]
    return {
        cluster["name"]: next(iter(cluster["typed_extension_protocol_options"].values()))[
            "explicit_http_config"
        ]["http2_protocol_options"].get("max_concurrent_streams")
        for cluster in clusters
        if cluster["name"] in {upstream.name for upstream in UPSTREAMS}
    }


def test_services_of_several_workers_get_4_calls_per_connection_and_of_one_the_default() -> None:
    several = _streams_per_connection(build_config(settings(workers=2), DEFAULT_DESCRIPTOR))
    one = _streams_per_connection(build_config(settings(), DEFAULT_DESCRIPTOR))

    assert set(several.values()) == {4}
    assert set(one.values()) == {None}
    assert len(several) == len(UPSTREAMS)
