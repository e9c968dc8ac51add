"""The serving service's own settings: prices, nodes and the addresses they may have."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, Field, field_validator

from services.core.settings import SettingsBase


class ServingPrice(BaseModel):
    """Micro-credits per token of one model or adapter."""

    prompt: int = Field(ge=0, le=10**9)
    completion: int = Field(ge=0, le=10**9)


class ServingSettings(SettingsBase):
    serving_prices: dict[str, ServingPrice] = Field(
        {},
        description="Price per token of each model or LoRA adapter, in micro-credits, as JSON: "
        '{"llama-3.1-8b": {"prompt": 1, "completion": 3}}. An adapter is priced by its own '
        "name, a model or adapter not listed at the defaults below.",
    )
    serving_default_prompt_price_micro_credits: int = Field(
        1, ge=0, le=10**9, description="Price per prompt token of models not in serving_prices."
    )
    serving_default_completion_price_micro_credits: int = Field(
        2,
        ge=0,
        le=10**9,
        description="Price per completion token of models not in serving_prices.",
    )
    serving_node_share_percent: int = Field(
        70,
        ge=0,
        le=100,
        description="Share of each confirmed charge credited to the node's owner (rounded down).",
    )
    serving_node_offline_after_seconds: float = Field(
        60.0,
        gt=0,
        description="A node not heard from (registration or heartbeat) for this long is offline: "
        "no traffic until it beats again.",
    )
    serving_node_failure_cooldown_seconds: float = Field(
        30.0,
        ge=0,
        description="A node that failed a chat before its first token gets no traffic from this "
        "process for this long.",
    )
    serving_node_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest wait for a node: to connect, for its first token, between tokens.",
    )
    serving_endpoint_ports: list[int] = Field(
        [80, 443, 8000, 8080, 11434],
        description="Ports a node endpoint on a public address may use (vLLM 8000, llama.cpp "
        "8080, Ollama 11434).",
    )
    serving_private_networks: list[str] = Field(
        [],
        description="Networks (CIDRs) a node endpoint may name by IP address although they are "
        "not public, on any port: an operator setting (`make run` and the tests allow "
        "127.0.0.0/8). A host name must always resolve to public addresses only.",
    )

    @field_validator("serving_private_networks")
    @classmethod
    def _private_networks(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            ipaddress.ip_network(cidr, strict=False)
        return cidrs
