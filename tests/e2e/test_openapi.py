"""gateway/openapi.json: valid OpenAPI, in step with the protos, describing every REST route."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from gateway.openapi import DEFAULT_DESCRIPTOR, DEFAULT_OUTPUT, read_descriptor_set, render, routes
from gateway.proto_index import ProtoIndex
from services.core.registry import SERVICES

HTTP_VERBS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DEFAULT_OUTPUT.read_text())
    return loaded


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, verb, operation)
        for path, item in document["paths"].items()
        for verb, operation in item.items()
        if verb in HTTP_VERBS
    ]


def test_the_committed_openapi_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_the_committed_openapi_document_matches_the_protos() -> None:
    assert DEFAULT_OUTPUT.read_text() == render(DEFAULT_DESCRIPTOR), (
        "gateway/openapi.json is stale: run `make openapi`"
    )


def test_every_http_annotation_of_every_service_is_an_operation(document: dict[str, Any]) -> None:
    index = ProtoIndex.of(read_descriptor_set(DEFAULT_DESCRIPTOR))
    annotated = {(r.verb, r.openapi_path) for r in routes(index)}

    described = {(verb, path) for path, verb, _ in operations(document)}

    assert described == annotated
    assert ("post", "/v1/users") in described
    services = {r.method.service for r in routes(index)}
    assert services == {spec.proto_service for spec in SERVICES}


def test_every_operation_declares_its_path_parameters_and_the_error_body(
    document: dict[str, Any],
) -> None:
    for path, verb, operation in operations(document):
        in_path = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == in_path, f"{verb} {path}"
        for code in ("400", "404", "409", "429", "500", "501", "503", "504"):
            error = operation["responses"][code]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Status"}, f"{verb} {path} {code}"
        assert operation["description"], f"{verb} {path} has no description"


def test_credential_errors_are_listed_only_where_a_key_is_needed(
    document: dict[str, Any],
) -> None:
    list_keys = document["paths"]["/v1/wallets/{wallet_address}/apikeys"]["get"]
    get_user = document["paths"]["/v1/users/{wallet_address}"]["get"]

    assert {"401", "403"} <= set(list_keys["responses"])
    assert not {"401", "403", "413"} & set(get_user["responses"])
    assert "413" in document["paths"]["/v1/users"]["post"]["responses"]


def test_internal_only_rpcs_are_left_out_of_the_public_document(document: dict[str, Any]) -> None:
    access = {operation["x-r3mes-access"] for _, _, operation in operations(document)}
    grpc_paths = " ".join(operation["description"] for _, _, operation in operations(document))

    assert access == {"public", "own_wallet"}
    assert "GrantCredits" not in grpc_paths
    assert "RecordBlock" not in grpc_paths


def test_schemas_carry_the_names_a_generated_client_would_give_its_classes(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]

    assert {"User", "CreateUserRequest", "GetUserResponse", "Status", "ErrorInfo"} <= set(schemas)
    assert not [name for name in schemas if "." in name]


def test_64_bit_integers_are_described_as_strings(document: dict[str, Any]) -> None:
    user = document["components"]["schemas"]["User"]

    assert user["properties"]["available_micro_credits"]["type"] == "string"
    assert user["properties"]["available_micro_credits"]["format"] == "int64"
    assert user["properties"]["create_time"]["format"] == "date-time"


def test_the_error_body_lists_the_standard_details(document: dict[str, Any]) -> None:
    status = document["components"]["schemas"]["Status"]
    variants = status["properties"]["details"]["items"]["anyOf"]

    assert {"$ref": "#/components/schemas/BadRequest"} in variants
    assert {"$ref": "#/components/schemas/ErrorInfo"} in variants
    assert status["required"] == ["code", "message", "details"]


def test_a_get_route_takes_its_other_fields_as_query_parameters(document: dict[str, Any]) -> None:
    list_blocks = document["paths"]["/v1/blocks"]["get"]

    query = {p["name"] for p in list_blocks["parameters"] if p["in"] == "query"}

    assert {"page_size", "page_token"} <= query


def test_a_body_route_with_path_variables_leaves_them_out_of_the_body(
    document: dict[str, Any],
) -> None:
    create_key = document["paths"]["/v1/wallets/{wallet_address}/apikeys"]["post"]

    body = create_key["requestBody"]["content"]["application/json"]["schema"]

    assert "wallet_address" not in body["properties"]
    assert "name" in body["properties"]


def request_fields(
    document: dict[str, Any], operation: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The operation's parameters and the schemas of its body's fields, by name."""
    body: dict[str, Any] = {}
    if "requestBody" in operation:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        body = schema.get("properties", {})
    return operation.get("parameters", []), body


def test_every_request_field_has_an_example(document: dict[str, Any]) -> None:
    missing = []
    for path, verb, operation in operations(document):
        parameters, body = request_fields(document, operation)
        missing += [f"{verb} {path} {p['name']}" for p in parameters if "example" not in p]
        missing += [f"{verb} {path} body {n}" for n, s in body.items() if "examples" not in s]

    assert missing == []


async def test_every_operation_sent_with_its_examples_passes_validation(
    document: dict[str, Any], rest: httpx.AsyncClient
) -> None:
    # As Swagger UI's "Execute" sends them untouched, anonymously: validation comes before
    # authorization, so an invalid example would be a 400 even where a key is needed (401).
    answers = {}
    for path, verb, operation in operations(document):
        parameters, body = request_fields(document, operation)
        url = path
        query = {}
        for parameter in parameters:
            if parameter["in"] == "path":
                url = url.replace("{" + parameter["name"] + "}", str(parameter["example"]))
            elif parameter["example"] != "":
                query[parameter["name"]] = parameter["example"]
        json_body = {name: schema["examples"][0] for name, schema in body.items()}
        response = await rest.request(
            verb, url, params=query, json=json_body if "requestBody" in operation else None
        )
        answers[operation["operationId"]] = response.status_code

    assert [name for name, status in answers.items() if status == 400] == []
    assert answers["CreateAPIKeyWithSignature"] == 404  # CHALLENGE_NOT_FOUND: it was validated
    assert answers["ListAPIKeys"] == 401
    assert answers["GetEarningsHistory"] == 200
