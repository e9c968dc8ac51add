"""OpenAPI 3.1 of the REST API, generated from the protos' google.api.http annotations.

    python -m gateway.openapi [--descriptor build/r3mes.binpb] [--out gateway/openapi.json]

Every route Envoy's transcoder serves is described: path and query parameters, the request body,
the response, and the error body (google.rpc.Status), with the proto comments as descriptions.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from r3mes.common.v1 import options_pb2

from gateway.openapi_schemas import (
    WELL_KNOWN,
    Schema,
    SchemaBuilder,
    is_required,
)
from gateway.proto_index import MessageInfo, MethodInfo, ProtoIndex

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DESCRIPTOR = ROOT / "build" / "r3mes.binpb"
DEFAULT_OUTPUT = ROOT / "gateway" / "openapi.json"
OPENAPI_VERSION = "3.1.0"
API_VERSION = "v1"
STATUS = "google.rpc.Status"
FieldProto = descriptor_pb2.FieldDescriptorProto

# `{wallet_address}` or `{name=projects/*}`: a variable of a google.api.http path template.
_VARIABLE = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=([^}]*))?\}")
_QUERY_DEPTH = 3

_STATUS_DESCRIPTION = """The body of every error: the gRPC status of the call, rendered by the \
gateway with the canonical HTTP status (INVALID_ARGUMENT 400, UNAUTHENTICATED 401, \
PERMISSION_DENIED 403, NOT_FOUND 404, ALREADY_EXISTS and ABORTED 409, FAILED_PRECONDITION 400, \
RESOURCE_EXHAUSTED 429, UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, INTERNAL 500).

`code` is the google.rpc.Code number; `details` always holds a google.rpc.ErrorInfo whose `reason` \
is stable (UPPER_SNAKE) and, where it fits, a BadRequest naming each bad field, a RetryInfo, a \
QuotaFailure or a PreconditionFailure. Errors of the gateway itself (unknown path 404, body too \
large 413, service unreachable 503) have the same shape with empty `details`."""

_ERROR_DETAILS = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
)

# HTTP status -> when the gateway answers it (docs/api.md, "Errors", has the full mapping).
_ERRORS: dict[str, str] = {
    "400": "INVALID_ARGUMENT (a BadRequest detail names each bad field), FAILED_PRECONDITION "
    "or OUT_OF_RANGE; or a body that is not valid JSON.",
    "401": "UNAUTHENTICATED: no API key was sent, or the key sent was not accepted.",
    "403": "PERMISSION_DENIED: the API key belongs to another wallet.",
    "404": "NOT_FOUND: what the call names does not exist (the ErrorInfo reason says what, "
    "e.g. USER_NOT_FOUND).",
    "409": "ALREADY_EXISTS, or ABORTED by a concurrent call (safe to retry).",
    "413": "The request body is larger than the gateway accepts (R3MES_MAX_REQUEST_BYTES).",
    "429": "RESOURCE_EXHAUSTED: a rate limit, with RetryInfo and QuotaFailure details.",
    "500": "INTERNAL or UNKNOWN: the message carries an incident id, nothing else.",
    "501": "UNIMPLEMENTED: the call is declared but not built yet.",
    "503": "UNAVAILABLE: a service or its storage cannot be reached; retry later.",
    "504": "DEADLINE_EXCEEDED: the call took longer than the gateway allows.",
}
_CREDENTIAL_ERRORS = ("401", "403")
_BODY_ERRORS = ("413",)
_ACCESS_NAMES: dict[options_pb2.Access.ValueType, str] = {
    options_pb2.ACCESS_PUBLIC: "public",
    options_pb2.ACCESS_OWN_WALLET: "own_wallet",
    options_pb2.ACCESS_INTERNAL: "internal",
}


@dataclass(frozen=True)
class Route:
    """One HTTP binding of an RPC."""

    method: MethodInfo
    verb: str
    template: str
    body: str
    response_body: str

    @property
    def openapi_path(self) -> str:
        return _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", self.template)

    def path_variables(self) -> list[tuple[str, str | None]]:
        """(field path, segment pattern or None) of each variable."""
        return [(m.group(1), m.group(2)) for m in _VARIABLE.finditer(self.template)]


def _bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str, str]]:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        yield rule.custom.kind.lower(), rule.custom.path, rule.body, rule.response_body
    elif pattern is not None:
        yield pattern, getattr(rule, pattern), rule.body, rule.response_body
    for extra in rule.additional_bindings:
        yield from _bindings(extra)


def routes(index: ProtoIndex) -> list[Route]:
    """The public REST routes. Internal-only RPCs keep their HTTP binding in the protos but are
    left out: through the gateway they refuse every caller, so a client must not see them."""
    found = []
    for method in index.iter_methods():
        if not method.proto.options.HasExtension(annotations_pb2.http):
            continue
        if _access(method) == options_pb2.ACCESS_INTERNAL:
            continue
        rule = method.proto.options.Extensions[annotations_pb2.http]
        for verb, template, body, response_body in _bindings(rule):
            found.append(Route(method, verb, template, body, response_body))
    return found


class OperationBuilder:
    def __init__(self, index: ProtoIndex, schemas: SchemaBuilder) -> None:
        self.index = index
        self.schemas = schemas

    def operation(self, route: Route, operation_id: str) -> dict[str, Any]:
        method = route.method
        request = self.index.message(method.proto.input_type)
        access = _access(method)
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "tags": [method.service.rsplit(".", 1)[-1]],
            "summary": _first_sentence(method.comment) or method.proto.name,
            "description": "\n\n".join(
                part
                for part in (method.comment, f"gRPC: `/{method.service}/{method.proto.name}`.")
                if part
            ),
            "x-r3mes-access": _ACCESS_NAMES.get(access, "unspecified"),
        }
        parameters = self._path_parameters(route, request) + self._query_parameters(route, request)
        if parameters:
            operation["parameters"] = parameters
        if route.body:
            operation["requestBody"] = self._request_body(route, request)
        if access == options_pb2.ACCESS_OWN_WALLET:
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
        else:
            operation["security"] = []
        operation["responses"] = {
            "200": {
                "description": "The call succeeded.",
                "content": {"application/json": {"schema": self._response_schema(route)}},
            },
            **self._error_responses(route, access),
        }
        return operation

    def _error_responses(
        self, route: Route, access: options_pb2.Access.ValueType
    ) -> dict[str, Any]:
        """Every status the gateway may answer this call with, each a google.rpc.Status, so a
        generated client parses errors into the same type as it does replies."""
        skip = set(_CREDENTIAL_ERRORS) if access != options_pb2.ACCESS_OWN_WALLET else set()
        if not route.body:
            skip.update(_BODY_ERRORS)
        status = self.schemas.ref(STATUS)
        return {
            code: {"description": text, "content": {"application/json": {"schema": status}}}
            for code, text in _ERRORS.items()
            if code not in skip
        }

    def _path_parameters(self, route: Route, request: MessageInfo) -> list[dict[str, Any]]:
        parameters = []
        for field_path, pattern in route.path_variables():
            field, comment = self._field_at(request, field_path)
            schema = self.schemas.with_request_example(field, self.schemas.field_schema(field))
            schema.pop("description", None)
            schema.pop("readOnly", None)
            description = comment
            if pattern and "/" in pattern:
                description += f"\n\nMatches `{pattern}`: it may contain `/`."
            parameter = {
                "name": field_path,
                "in": "path",
                "required": True,
                "description": description,
                "schema": schema,
            }
            parameters.append(_with_example(parameter))
        return parameters

    def _query_parameters(self, route: Route, request: MessageInfo) -> list[dict[str, Any]]:
        if route.body == "*":
            return []
        bound = {path for path, _ in route.path_variables()}
        if route.body:
            bound.add(route.body)
        return list(self._query_fields(request, "", bound, _QUERY_DEPTH))

    def _query_fields(
        self, message: MessageInfo, prefix: str, bound: set[str], depth: int
    ) -> Iterator[dict[str, Any]]:
        for field in message.proto.field:
            name = prefix + field.name
            if name in bound:
                continue
            comment = message.field_comments[field.name]
            nested = self._nested_message(field)
            if nested is not None:
                if depth > 1:
                    yield from self._query_fields(nested, name + ".", bound, depth - 1)
                continue
            schema = self.schemas.with_request_example(field, self.schemas.field_schema(field))
            schema.pop("description", None)
            if schema.pop("readOnly", False):
                continue
            parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
            if is_required(field):
                parameter["required"] = True
            if comment:
                parameter["description"] = comment
            if field.label == FieldProto.LABEL_REPEATED:
                parameter.update(style="form", explode=True)
            yield _with_example(parameter)

    def _nested_message(self, field: FieldProto) -> MessageInfo | None:
        """A message field spelled as dotted query parameters (not a well-known type, not a map)."""
        if field.type != FieldProto.TYPE_MESSAGE or field.type_name.lstrip(".") in WELL_KNOWN:
            return None
        if field.label == FieldProto.LABEL_REPEATED:
            return None
        return self.index.message(field.type_name)

    def _field_at(self, message: MessageInfo, field_path: str) -> tuple[FieldProto, str]:
        *parents, last = field_path.split(".")
        for name in parents:
            message = self.index.message(_field_named(message, name).type_name)
        return _field_named(message, last), message.field_comments[last]

    def _request_body(self, route: Route, request: MessageInfo) -> dict[str, Any]:
        if route.body == "*":
            top_level_bound = frozenset(p for p, _ in route.path_variables() if "." not in p)
            if top_level_bound:
                schema = self.schemas.message_schema(request, omit=top_level_bound)
                self.schemas.with_request_examples(request, schema)
            else:
                schema = self.schemas.ref(request.full_name)
                self.schemas.with_request_examples(
                    request, self.schemas.component(request.full_name)
                )
        else:
            field, comment = self._field_at(request, route.body)
            schema = self.schemas.with_request_example(
                field, self.schemas.field_schema(field, comment)
            )
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    def _response_schema(self, route: Route) -> Schema:
        response = self.index.message(route.method.proto.output_type)
        if route.response_body:
            field, comment = self._field_at(response, route.response_body)
            return self.schemas.field_schema(field, comment)
        return self.schemas.ref(response.full_name)


def _with_example(parameter: dict[str, Any]) -> dict[str, Any]:
    """The schema's example as the parameter's own: Swagger UI fills a parameter's field from its
    `example` (not from its schema's `examples`)."""
    examples = parameter["schema"].get("examples")
    if examples:
        parameter["example"] = examples[0]
    return parameter


def _field_named(message: MessageInfo, name: str) -> FieldProto:
    for field in message.proto.field:
        if field.name == name:
            return field
    raise KeyError(f"{message.full_name} has no field {name!r}")


def _access(method: MethodInfo) -> options_pb2.Access.ValueType:
    if not method.proto.options.HasExtension(options_pb2.access):
        return options_pb2.ACCESS_UNSPECIFIED
    return method.proto.options.Extensions[options_pb2.access].access


def _first_sentence(comment: str) -> str:
    first_paragraph = " ".join(comment.split("\n\n", 1)[0].split())
    sentence, end, _ = first_paragraph.partition(". ")
    return f"{sentence}." if end else sentence


def _error_schemas(schemas: SchemaBuilder) -> None:
    """google.rpc.Status, its details as the gateway prints them (each with its `@type`)."""
    schemas.ref(STATUS)
    variants = []
    for detail in _ERROR_DETAILS:
        name = detail.DESCRIPTOR.full_name
        variants.append(schemas.ref(name))
        component = schemas.component(name)
        component["properties"] = {
            "@type": {"const": f"type.googleapis.com/{name}"},
            **component["properties"],
        }
        component["required"] = ["@type"]
    status = schemas.component(STATUS)
    status["description"] = _STATUS_DESCRIPTION
    status["properties"]["details"]["items"] = {
        "anyOf": [*variants, WELL_KNOWN["google.protobuf.Any"]]
    }
    status["required"] = ["code", "message", "details"]


def build_document(files: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    index = ProtoIndex.of(files)
    schemas = SchemaBuilder(index)
    operations = OperationBuilder(index, schemas)
    _error_schemas(schemas)
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: dict[str, int] = {}
    services_of: dict[str, set[str]] = {}
    for route in routes(index):
        services_of.setdefault(route.method.proto.name, set()).add(route.method.service)
    for route in routes(index):
        # The RPC's name (`CreateUser`), what a generated client names its function after;
        # prefixed by the service only if two services share it.
        base_id = route.method.proto.name
        if len(services_of[base_id]) > 1:
            base_id = f"{route.method.service.rsplit('.', 1)[-1]}_{base_id}"
        seen_ids[base_id] = seen_ids.get(base_id, 0) + 1
        operation_id = base_id if seen_ids[base_id] == 1 else f"{base_id}_{seen_ids[base_id]}"
        paths.setdefault(route.openapi_path, {})[route.verb] = operations.operation(
            route, operation_id
        )
    tags = [
        {"name": service.short_name, "description": service.comment}
        for service in index.services.values()
        if any(r.method.service == service.full_name for r in routes(index))
    ]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "R3MES API",
            "version": API_VERSION,
            "description": (
                "HTTP/JSON API of the R3MES services, served by the Envoy gateway's gRPC-JSON "
                "transcoder. Field names are the proto field names; 64-bit integers are strings; "
                "amounts are integer micro-credits (1 credit = 1,000,000). docs/api.md explains "
                "the mapping to gRPC."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "`make run`"}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "Bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The API key as a bearer token: "
                    "`Authorization: Bearer r3mes_...`.",
                },
            },
        },
    }


def read_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make protos` first")
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def render(descriptor: Path) -> str:
    return json.dumps(build_document(read_descriptor_set(descriptor)), indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--out", type=Path, help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    text = render(args.descriptor)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
