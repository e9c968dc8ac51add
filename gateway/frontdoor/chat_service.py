"""The service the front door asks for chats, known by its API: the OpenAI door turns each request
into one of its RPCs, and the console shows the prices it charges. The front door is a client of
that API (its generated code), so what it names is the proto service, never a service folder;
which registered service implements it, and so where it is reached and what its settings are,
the registry says (a service renamed or moved needs no edit here)."""

from __future__ import annotations

from r3mes.serving.v1 import serving_pb2

from services.core.registry import implementing
from services.core.servicespec import ServiceSpec

SERVING = serving_pb2.DESCRIPTOR.services_by_name["ServingService"].full_name


def chat_service() -> ServiceSpec:
    """The registered service that implements SERVING."""
    return implementing(SERVING)
