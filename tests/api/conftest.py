"""Fixtures of the API tests: the app over a real Engine on the ``store`` (SQLite and PostgreSQL).

``client`` talks to the app in-process (httpx ``ASGITransport``); ``make_client(...)``
builds another app over the same engine with other settings, a registry or a health
probe. ``definition(...)`` writes the small DSL documents the tests deploy.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.api import HealthProbe, create_app
from flowkeeper.config import Settings
from flowkeeper.runtime import Engine
from flowkeeper.store import Store

#: The longest a test waits for an instance to reach a state (a guard, not a measurement).
GUARD = 30.0

HEADER = """\
document:
  dsl: '1.0.0'
  namespace: tests
  name: {name}
  version: '{version}'
"""

#: A workflow that completes at once: its output is ``{"greeting": "hello <name>"}``.
GREET = """\
input:
  schema:
    format: json
    document:
      type: object
      required: [name]
      properties:
        name: {type: string}
do:
  - greet:
      set:
        greeting: '${ "hello " + .name }'
"""

#: A workflow that waits for one ``com.example.approved`` event, then ends with its data.
WAIT_FOR_APPROVAL = """\
do:
  - approval:
      listen:
        to:
          one:
            with: {type: com.example.approved}
"""

#: A workflow that fails at once.
FAIL = """\
do:
  - boom:
      raise:
        error:
          type: https://example.com/errors/boom
          status: 400
          title: Boom
"""


def definition(body: str, name: str = "greet", version: str = "1.0.0") -> str:
    """A definition's YAML: the ``document`` header, then ``body``."""
    return HEADER.format(name=name, version=version) + textwrap.dedent(body)


@pytest.fixture
async def engine(store: Store) -> AsyncIterator[Engine]:
    """A real engine on the test's store (runs instances in this process)."""
    engine = Engine(
        store, Activities(ActivityOptions(timeout=10.0), FunctionRegistry(entry_point_group=None))
    )
    try:
        yield engine
    finally:
        await engine.aclose()


ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def make_client(engine: Engine) -> AsyncIterator[ClientFactory]:
    """``make_client(settings=..., registry=..., health=...)`` -> an AsyncClient on a new app."""
    clients: list[httpx.AsyncClient] = []

    def build(
        *,
        settings: Settings | None = None,
        registry: CollectorRegistry | None = None,
        health: HealthProbe | None = None,
        raise_app_exceptions: bool = True,
        **app_engine: Any,
    ) -> httpx.AsyncClient:
        app = create_app(
            app_engine.get("engine", engine),
            settings=settings or Settings(),
            registry=registry,
            health=health,
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        client = httpx.AsyncClient(transport=transport, base_url="http://flowkeeper.test")
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: ClientFactory) -> httpx.AsyncClient:
    """A client of the app with default settings."""
    return make_client()


async def deploy(client: httpx.AsyncClient, body: str, name: str = "greet", version: str = "1.0.0") -> Any:
    """Deploy a definition through the API (YAML); returns the response JSON."""
    response = await client.post(
        "/api/v1/definitions",
        content=definition(body, name, version),
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


async def start(client: httpx.AsyncClient, name: str, input: Any = None, **extra: Any) -> httpx.Response:
    """POST /api/v1/instances for the latest ``tests/<name>``."""
    body: dict[str, Any] = {"definition": {"namespace": "tests", "name": name}, "input": input, **extra}
    return await client.post("/api/v1/instances", json=body)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and code); returns it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["type"].startswith(("https://flowkeeper.dev/problems/", "about:blank"))
    assert problem["instance"] == response.request.url.path
    if code is not None:
        assert problem["code"] == code, problem
    return problem
