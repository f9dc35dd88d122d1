"""The OpenAPI document: every route, every answer documented, problems for errors, camelCase."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from flowkeeper.api import create_app
from flowkeeper.config import Settings
from flowkeeper.runtime import Engine

ROUTES = {
    ("post", "/api/v1/definitions"),
    ("get", "/api/v1/definitions"),
    ("get", "/api/v1/definitions/{namespace}/{name}"),
    ("get", "/api/v1/definitions/{namespace}/{name}/{version}"),
    ("post", "/api/v1/instances"),
    ("get", "/api/v1/instances"),
    ("get", "/api/v1/instances/{id}"),
    ("get", "/api/v1/instances/{id}/log"),
    ("post", "/api/v1/instances/{id}/cancel"),
    ("post", "/api/v1/instances/{id}/suspend"),
    ("post", "/api/v1/instances/{id}/resume"),
    ("post", "/api/v1/instances/{id}/retry"),
    ("post", "/api/v1/events"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/outbox"),
    ("get", "/api/v1/outbox/{id}"),
    ("post", "/api/v1/outbox/{id}/requeue"),
    ("get", "/health"),
    ("get", "/health/ready"),
    ("get", "/health/live"),
    ("get", "/metrics"),
}
PROBLEM = {"$ref": "#/components/schemas/Problem"}
#: Names that are not ours to camelCase (CloudEvents attribute names).
FOREIGN = {"data_base64"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose engine is never called (the document needs none)."""
    app = create_app(cast(Engine, SimpleNamespace()), settings=Settings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://flowkeeper.test"
    ) as client:
        yield client


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()]


async def test_every_route_is_documented(document: dict[str, Any]) -> None:
    assert {(method, path) for method, path, _ in operations(document)} == ROUTES


async def test_every_operation_has_a_summary_and_description(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        assert op.get("summary"), (method, path)
        assert op.get("description"), (method, path)


async def test_errors_are_documented_as_problems(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        responses = op["responses"]
        if path.startswith("/api/"):
            assert {"422", "500", "503"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")) and not path.startswith("/health"):
                assert response["content"] == {"application/problem+json": {"schema": PROBLEM}}, (
                    method,
                    path,
                )
    assert "HTTPValidationError" not in document["components"]["schemas"]


async def test_documented_codes_per_route(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert {"200", "201", "409", "415", "413", "422"} <= set(
        paths["/api/v1/definitions"]["post"]["responses"]
    )
    assert {"200", "201", "404", "409", "415", "422"} <= set(paths["/api/v1/instances"]["post"]["responses"])
    assert {"202", "400", "413", "422"} <= set(paths["/api/v1/events"]["post"]["responses"])
    assert {"200", "400"} <= set(paths["/api/v1/instances"]["get"]["responses"])
    for action in ("cancel", "suspend", "resume", "retry"):
        assert {"200", "404", "409"} <= set(paths[f"/api/v1/instances/{{id}}/{action}"]["post"]["responses"])
    assert {"200", "503"} <= set(paths["/health/ready"]["get"]["responses"])


async def test_request_bodies_cover_the_media_types(document: dict[str, Any]) -> None:
    paths = document["paths"]
    deploy = paths["/api/v1/definitions"]["post"]["requestBody"]["content"]
    assert set(deploy) == {"application/json", "application/yaml", "application/x-yaml", "text/yaml"}
    events = paths["/api/v1/events"]["post"]["requestBody"]["content"]
    assert {"application/cloudevents+json", "application/cloudevents-batch+json", "application/json"} <= set(
        events
    )
    headers = {p["name"] for p in paths["/api/v1/events"]["post"]["parameters"] if p["in"] == "header"}
    assert headers == {"ce-id", "ce-source", "ce-type", "ce-specversion"}
    start = paths["/api/v1/instances"]["post"]
    assert start["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StartInstance"
    }
    assert [p["name"] for p in start["parameters"]] == ["Idempotency-Key"]
    listing = {p["name"] for p in paths["/api/v1/instances"]["get"]["parameters"]}
    assert listing == {"status", "namespace", "name", "createdAfter", "createdBefore", "limit", "cursor"}


async def test_field_names_are_camel_case(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        for field in schema.get("properties", {}):
            assert field in FOREIGN or re.fullmatch(r"[a-z][a-zA-Z0-9]*", field), (name, field)
    instance = document["components"]["schemas"]["InstanceOut"]["properties"]
    assert {"currentActivityId", "createdOn", "updatedOn", "startedOn", "completedOn", "parentId"} <= set(
        instance
    )


async def test_links_lead_from_a_start_to_the_instance(document: dict[str, Any]) -> None:
    links = document["paths"]["/api/v1/instances"]["post"]["responses"]["201"]["links"]
    operation_ids = {op.get("operationId") for _, _, op in operations(document)}
    assert {link["operationId"] for link in links.values()} <= operation_ids


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text
