"""Health checks (the guide's JSON shape, 200/503) and the Prometheus endpoint."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from flowkeeper.api import ComponentHealth, ServiceHealth
from flowkeeper.api.health import format_duration
from flowkeeper.errors import StoreUnavailable
from flowkeeper.runtime import Engine
from flowkeeper.store.port import SchemaStatus
from tests.api.conftest import ClientFactory

DURATION = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{7}$")
SERVICES = {"outbox-processor", "timer-service", "dispatcher"}


def check_shape(body: dict[str, Any]) -> None:
    assert set(body) == {"status", "totalDuration", "entries"}
    assert body["status"] in ("Healthy", "Degraded", "Unhealthy")
    assert DURATION.match(body["totalDuration"]), body
    for entry in body["entries"].values():
        assert set(entry) <= {"status", "duration", "description"}
        assert entry["status"] in ("Healthy", "Degraded", "Unhealthy")
        assert DURATION.match(entry["duration"]), entry


class Probe:
    """A probe that reports what the test sets (or fails)."""

    def __init__(self, statuses: Mapping[str, ComponentHealth] | None = None, fail: bool = False) -> None:
        self.statuses = dict(statuses or {})
        self.fail = fail

    async def check(self) -> Mapping[str, ComponentHealth]:
        if self.fail:
            raise RuntimeError("probe exploded")
        return self.statuses


def test_durations_are_written_like_a_timespan() -> None:
    assert format_duration(0.0123456) == "00:00:00.0123456"
    assert format_duration(3723.5) == "01:02:03.5000000"
    assert format_duration(-1) == "00:00:00.0000000"


async def test_health_reports_database_and_services(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    check_shape(body)
    assert body["status"] == "Healthy"
    assert set(body["entries"]) == {"database", *SERVICES}
    assert "description" not in body["entries"]["database"]
    for name in SERVICES:
        assert body["entries"][name] == {
            "status": "Healthy",
            "duration": body["entries"][name]["duration"],
            "description": "not running in this process",
        }


async def test_ready_and_live(client: httpx.AsyncClient) -> None:
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    check_shape(ready.json())
    assert set(ready.json()["entries"]) == {"database"}
    live = await client.get("/health/live")
    assert live.status_code == 200
    check_shape(live.json())
    assert live.json()["status"] == "Healthy"


async def test_degraded_service_answers_200_and_unhealthy_503(make_client: ClientFactory) -> None:
    degraded = make_client(health=Probe({"dispatcher": ServiceHealth("Degraded", "last pass failed")}))
    response = await degraded.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "Degraded"
    assert response.json()["entries"]["dispatcher"]["description"] == "last pass failed"
    unhealthy = make_client(health=Probe({"timer-service": ServiceHealth("Unhealthy", "stopped")}))
    response = await unhealthy.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "Unhealthy"
    # Readiness is about the database only.
    assert (await unhealthy.get("/health/ready")).status_code == 200


async def test_failing_probe_makes_services_unhealthy(make_client: ClientFactory) -> None:
    response = await make_client(health=Probe(fail=True)).get("/health")
    assert response.status_code == 503
    body = response.json()
    check_shape(body)
    assert {body["entries"][name]["status"] for name in SERVICES} == {"Unhealthy"}
    assert "RuntimeError" in body["entries"]["dispatcher"]["description"]


async def test_unreachable_database_fails_readiness_but_not_liveness(
    make_client: ClientFactory, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise StoreUnavailable("database unavailable during ping: OSError: refused secret-host")

    monkeypatch.setattr(engine.store, "ping", down)
    client = make_client()
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    check_shape(ready.json())
    assert ready.json()["entries"]["database"]["status"] == "Unhealthy"
    assert "secret-host" not in ready.text
    assert (await client.get("/health")).status_code == 503
    assert (await client.get("/health/live")).status_code == 200


async def test_pending_migrations_fail_readiness(
    make_client: ClientFactory, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def behind() -> SchemaStatus:
        return SchemaStatus(current="0001", head="0002")

    monkeypatch.setattr(engine.store, "schema_status", behind)
    ready = await make_client().get("/health/ready")
    assert ready.status_code == 503
    assert "migrations pending" in ready.json()["entries"]["database"]["description"]


async def test_metrics_serves_the_given_registry(make_client: ClientFactory) -> None:
    registry = CollectorRegistry()
    started = Counter("workflow_instances_started", "Instances started", registry=registry)
    started.inc(3)
    response = await make_client(registry=registry).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "workflow_instances_started_total 3.0" in response.text


async def test_metrics_without_registry_is_empty(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.text == ""
