"""Errors are problems: the class-to-status map, the last resort, unknown routes, the body limit."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from flowkeeper.api import create_app
from flowkeeper.config import Settings
from flowkeeper.errors import (
    ConcurrencyConflict,
    ConfigurationError,
    DefinitionConflict,
    DefinitionError,
    DefinitionNotFound,
    FlowkeeperError,
    InputValidationError,
    InstanceConflict,
    InstanceNotFound,
    InvalidTransition,
    Problem,
    SchemaOutdated,
    StoreError,
    StoreUnavailable,
    WorkflowError,
)
from tests.api.conftest import GREET, ClientFactory, assert_problem, definition


def raising_client(error: BaseException) -> httpx.AsyncClient:
    """A client of an app whose store raises ``error`` on every definition read."""

    async def get_definition(*args: Any, **kwargs: Any) -> Any:
        raise error

    engine: Any = SimpleNamespace(store=SimpleNamespace(get_definition=get_definition))
    app = create_app(engine, settings=Settings())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://flowkeeper.test")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (DefinitionError([Problem("/do/0", "bad task"), Problem("/do/1", "worse")]), 422),
        (DefinitionNotFound("no definition tests/x"), 404),
        (DefinitionConflict("tests/x 1.0.0 exists with other content"), 409),
        (InstanceNotFound("no instance i"), 404),
        (InstanceConflict("id i was used for another request"), 409),
        (InvalidTransition("instance i is completed"), 409),
        (InputValidationError("input: 'name' is required"), 422),
        (ConfigurationError("server.port: must be a number"), 400),
        (WorkflowError("validation", 400, title="Validation Error", detail="bad input"), 422),
        (ConcurrencyConflict("lost a race"), 409),
        (FlowkeeperError("some other error"), 400),
    ],
)
async def test_flowkeeper_errors_map_by_class(error: FlowkeeperError, status: int) -> None:
    async with raising_client(error) as client:
        problem = assert_problem(await client.get("/api/v1/definitions/tests/x"), status, error.code)
    assert problem["type"] == "https://flowkeeper.dev/problems/" + error.code.replace(".", "-").replace(
        "_", "-"
    )
    assert problem["detail"]
    if isinstance(error, DefinitionError):
        assert problem["errors"] == [
            {"pointer": "/do/0", "message": "bad task"},
            {"pointer": "/do/1", "message": "worse"},
        ]
    else:
        assert "errors" not in problem


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StoreUnavailable("database unavailable during get: OSError: password=hunter2"), 503),
        (SchemaOutdated("schema at 0001, code expects 0002 (password=hunter2)"), 503),
        (StoreError("database error during get: DataError: password=hunter2"), 500),
        (RuntimeError("internal detail password=hunter2"), 500),
        (KeyError("hunter2"), 500),
    ],
)
async def test_server_side_failures_hide_internals(
    error: Exception, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with raising_client(error) as client:
        response = await client.get("/api/v1/definitions/tests/x")
    problem = assert_problem(response, status)
    assert "hunter2" not in response.text
    assert problem["detail"] in ("internal error", "the database is unavailable; try again later")
    if status == 503:
        assert response.headers["retry-after"]
    assert any(record.levelname == "ERROR" for record in caplog.records)


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing"), 404, "route.not_found")
    response = await client.delete("/api/v1/definitions")
    assert_problem(response, 405, "method.not_allowed")
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    response = await client.put("/api/v1/instances/some-id")
    assert_problem(response, 405, "method.not_allowed")
    assert response.headers["allow"] == "GET"
    assert (await client.get("/api/v1/instances/some-id/cancel")).headers["allow"] == "POST"


def _cursor(created: str, key: str) -> str:
    raw = json.dumps([created, key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("2020-01-01T00:00:00+00:00", "a\u0000b"),
        _cursor("9999-12-31T23:59:59-23:59", "a"),
        _cursor("0001-01-01T00:00:00+14:00", "a"),
    ],
)
async def test_crafted_cursors_answer_400(client: httpx.AsyncClient, cursor: str) -> None:
    for path in ("/api/v1/instances", "/api/v1/events"):
        assert_problem(await client.get(path, params={"cursor": cursor}), 400, "request.invalid_cursor")


async def test_declared_body_over_the_limit_answers_413_and_stores_nothing(
    make_client: ClientFactory,
) -> None:
    small = make_client(settings=Settings.model_validate({"server": {"max_body_size": 64}}))
    response = await small.post(
        "/api/v1/definitions", content=definition(GREET), headers={"Content-Type": "application/yaml"}
    )
    problem = assert_problem(response, 413, "request.too_large")
    assert "64 bytes" in problem["detail"]
    assert (await small.get("/api/v1/definitions")).json() == {"items": []}
    start = await small.post(
        "/api/v1/instances", json={"definition": {"namespace": "tests", "name": "x" * 60}}
    )
    assert_problem(start, 413, "request.too_large")
    assert (await small.get("/api/v1/instances")).json()["items"] == []


async def test_streamed_body_over_the_limit_answers_413(make_client: ClientFactory) -> None:
    small = make_client(settings=Settings.model_validate({"server": {"max_body_size": 100}}))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 20

    response = await small.post(
        "/api/v1/events", content=chunks(), headers={"Content-Type": "application/cloudevents+json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "request.too_large")
    assert (await small.get("/api/v1/events")).json()["items"] == []


async def test_body_at_the_limit_is_read(make_client: ClientFactory) -> None:
    body = b'{"specversion": "1.0", "id": "a", "source": "/s", "type": "t"}'
    exact = make_client(settings=Settings.model_validate({"server": {"max_body_size": len(body)}}))
    response = await exact.post(
        "/api/v1/events", content=body, headers={"Content-Type": "application/cloudevents+json"}
    )
    assert response.status_code == 202, response.text


async def test_invalid_content_length_answers_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/events",
        content=b"{}",
        headers={"Content-Type": "application/cloudevents+json", "Content-Length": "two"},
    )
    assert_problem(response, 400, "request.malformed")
