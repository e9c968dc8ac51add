"""The gateway side's settings (gateway/settings.py): the same R3MES_* variables as when the
kernel held them, read by the gateway side only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from services.core.settings import Settings

GATEWAY_VARIABLES = {
    "R3MES_GATEWAY_PORT": "9080",
    "R3MES_GATEWAY_ROUTE_TIMEOUT_SECONDS": "20",
    "R3MES_CORS_ORIGINS": '["https://app.example"]',
    "R3MES_CONSOLE_PORT": "9083",
    "R3MES_CANARIES": '{"credits": {"target": "10.0.0.7:50054", "weight": 5}}',
}


def test_the_gateway_side_reads_its_variables_and_the_kernels_from_one_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, value in {**GATEWAY_VARIABLES, "R3MES_CREDITS_PORT": "6004"}.items():
        monkeypatch.setenv(variable, value)

    gateway = GatewaySettings(_env_file=None)

    assert gateway.gateway_port == 9080
    assert gateway.gateway_route_timeout_seconds == 20.0
    assert gateway.cors_origins == ["https://app.example"]
    assert gateway.console_origins() == ["http://127.0.0.1:9083", "http://localhost:9083"]
    assert gateway.console_gateway() == "http://127.0.0.1:9080"
    assert gateway.canaries["credits"].weight == 5
    assert gateway.target_of("credits") == "127.0.0.1:6004"


def test_a_service_process_settings_hold_none_of_the_gateway_sides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, value in GATEWAY_VARIABLES.items():
        monkeypatch.setenv(variable, value)

    kernel = Settings(_env_file=None).model_dump()

    assert {"gateway_port", "cors_origins", "console_port", "canaries"} & set(kernel) == set()
    assert "gateway_secret" in kernel  # services check it, so it stays the kernel's


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("R3MES_GATEWAY_PORT", "0"),
        ("R3MES_MAX_REQUEST_BYTES", "100"),
        ("R3MES_CANARIES", '{"credits": {"target": "no-port", "weight": 5}}'),
    ],
)
def test_a_gateway_setting_out_of_range_is_refused_as_before(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError, match=variable.removeprefix("R3MES_").lower()):
        GatewaySettings(_env_file=None)
