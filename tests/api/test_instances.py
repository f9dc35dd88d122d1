"""Instances over HTTP: idempotent start, reads, listing with cursors, the log, control actions."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from flowkeeper.runtime import Engine
from tests.api.conftest import FAIL, GREET, GUARD, WAIT_FOR_APPROVAL, assert_problem, deploy, start

INSTANCE_FIELDS = {
    "id",
    "definition",
    "status",
    "input",
    "output",
    "error",
    "currentActivityId",
    "bookmarks",
    "createdOn",
    "updatedOn",
    "startedOn",
    "completedOn",
    "parentId",
}


async def finished(client: httpx.AsyncClient, engine: Engine, instance_id: str) -> dict[str, Any]:
    """The instance once it is terminal (waits on the engine, not on a clock)."""
    await asyncio.wait_for(engine.wait_for(instance_id), GUARD)
    response = await client.get(f"/api/v1/instances/{instance_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_start_answers_201_with_the_instance(client: httpx.AsyncClient, engine: Engine) -> None:
    await deploy(client, GREET)
    response = await start(client, "greet", {"name": "Ada"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == INSTANCE_FIELDS
    assert body["definition"] == {"namespace": "tests", "name": "greet", "version": "1.0.0"}
    assert body["input"] == {"name": "Ada"}
    assert body["status"] in ("pending", "running", "completed")
    assert response.headers["location"] == f"/api/v1/instances/{body['id']}"
    done = await finished(client, engine, body["id"])
    assert done["status"] == "completed"
    assert done["output"] == {"greeting": "hello Ada"}
    assert done["completedOn"] and done["startedOn"] and done["createdOn"] and done["updatedOn"]
    assert done["error"] is None and done["parentId"] is None


async def test_client_chosen_id_is_idempotent(client: httpx.AsyncClient) -> None:
    await deploy(client, GREET)
    first = await start(client, "greet", {"name": "Ada"}, id="order-42")
    assert first.status_code == 201
    assert first.json()["id"] == "order-42"
    again = await start(client, "greet", {"name": "Ada"}, id="order-42")
    assert again.status_code == 200
    assert again.json()["id"] == "order-42"
    other = await start(client, "greet", {"name": "Bob"}, id="order-42")
    assert_problem(other, 409, "instance.conflict")


async def test_twenty_concurrent_identical_starts_create_one_instance(client: httpx.AsyncClient) -> None:
    await deploy(client, GREET)
    body = {"definition": {"namespace": "tests", "name": "greet"}, "input": {"name": "Ada"}}
    headers = {"Idempotency-Key": "key-20"}
    responses = await asyncio.gather(
        *(client.post("/api/v1/instances", json=body, headers=headers) for _ in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses if r.status_code not in (200, 201)]
    assert len({r.json()["id"] for r in responses}) == 1
    listing = (await client.get("/api/v1/instances", params={"name": "greet"})).json()
    assert len(listing["items"]) == 1
    different = await client.post(
        "/api/v1/instances",
        json={**body, "input": {"name": "Bob"}},
        headers=headers,
    )
    assert_problem(different, 409, "instance.conflict")


async def test_input_violating_the_schema_answers_422(client: httpx.AsyncClient) -> None:
    await deploy(client, GREET)
    problem = assert_problem(await start(client, "greet", {"nom": "Ada"}), 422, "input.invalid")
    assert "name" in problem["detail"]


async def test_unknown_definition_answers_404(client: httpx.AsyncClient) -> None:
    assert_problem(await start(client, "nothing", {}), 404, "definition.not_found")
    await deploy(client, GREET)
    response = await client.post(
        "/api/v1/instances",
        json={"definition": {"namespace": "tests", "name": "greet", "version": "2.0.0"}, "input": {}},
    )
    assert_problem(response, 404, "definition.not_found")


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"input": {}}, "/definition"),
        ({"definition": {"namespace": "tests"}, "input": {}}, "/definition/name"),
        ({"definition": {"namespace": "tests", "name": 7}}, "/definition/name"),
        ({"definition": {"namespace": "tests", "name": "a b"}}, "/definition/name"),
        ({"definition": {"namespace": "tests", "name": "greet"}, "id": "has/slash"}, "/id"),
        ({"definition": {"namespace": "tests", "name": "greet"}, "surprise": 1}, "/surprise"),
        ({"definition": {"namespace": "tests", "name": "greet"}, "input": {"a": "nul\u0000"}}, "/input/a"),
        ([1, 2], ""),
    ],
)
async def test_invalid_start_requests_name_the_field(
    client: httpx.AsyncClient, body: Any, pointer: str
) -> None:
    await deploy(client, GREET)
    problem = assert_problem(await client.post("/api/v1/instances", json=body), 422, "request.invalid")
    assert pointer in [e.get("pointer") for e in problem["errors"]], problem


async def test_malformed_json_and_wrong_content_type(client: httpx.AsyncClient) -> None:
    malformed = await client.post(
        "/api/v1/instances", content=b'{"definition": ', headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in assert_problem(malformed, 400, "request.malformed")["detail"]
    nan = await client.post(
        "/api/v1/instances",
        content=b'{"definition": {"namespace": "tests", "name": "greet"}, "input": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code in (400, 422), nan.text
    assert_problem(nan, nan.status_code)
    deep = await client.post(
        "/api/v1/instances",
        content=b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert deep.status_code in (400, 422), deep.text
    wrong = await client.post(
        "/api/v1/instances", content=b"definition: x", headers={"Content-Type": "application/yaml"}
    )
    assert_problem(wrong, 415, "request.unsupported_media_type")
    key = await client.post(
        "/api/v1/instances",
        json={"definition": {"namespace": "tests", "name": "greet"}},
        headers={"Idempotency-Key": "x" * 300},
    )
    assert assert_problem(key, 422, "request.invalid")["errors"][0]["header"] == "Idempotency-Key"


async def test_get_unknown_instance_answers_404(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.get("/api/v1/instances/no-such-id"), 404, "instance.not_found")
    assert problem["type"] == "https://flowkeeper.dev/problems/instance-not-found"
    assert_problem(await client.get("/api/v1/instances/no-such-id/log"), 404, "instance.not_found")
    for action in ("cancel", "suspend", "resume", "retry"):
        assert_problem(await client.post(f"/api/v1/instances/no-such-id/{action}"), 404, "instance.not_found")


async def test_waiting_instance_shows_its_bookmark(client: httpx.AsyncClient) -> None:
    await deploy(client, WAIT_FOR_APPROVAL, name="approval")
    started = (await start(client, "approval", {})).json()
    body = (await client.get(f"/api/v1/instances/{started['id']}")).json()
    assert body["status"] == "suspended"
    assert body["currentActivityId"]
    [bookmark] = body["bookmarks"]
    assert set(bookmark) == {"id", "activityId", "kind", "filter", "isConsumed", "createdOn"}
    assert bookmark["kind"] == "event"
    assert bookmark["isConsumed"] is False
    assert bookmark["activityId"].startswith("/do/0")
    # The start's answer showed the same, without reading the bookmarks back.
    assert started["bookmarks"] == body["bookmarks"]


async def test_log_lists_activity_events_in_order(client: httpx.AsyncClient, engine: Engine) -> None:
    await deploy(client, GREET)
    instance_id = (await start(client, "greet", {"name": "Ada"})).json()["id"]
    await finished(client, engine, instance_id)
    items = (await client.get(f"/api/v1/instances/{instance_id}/log")).json()["items"]
    assert items
    assert all(set(i) == {"seq", "reference", "name", "type", "event", "at", "detail"} for i in items)
    assert [i["seq"] for i in items] == sorted(i["seq"] for i in items)
    assert [(i["reference"], i["type"], i["event"]) for i in items] == [
        ("/", "workflow", "started"),
        ("/do/0/greet", "set", "started"),
        ("/do/0/greet", "set", "completed"),
        ("/", "workflow", "completed"),
    ]


async def test_cancel_suspend_resume_and_illegal_transitions(client: httpx.AsyncClient) -> None:
    await deploy(client, WAIT_FOR_APPROVAL, name="approval")
    instance_id = (await start(client, "approval", {})).json()["id"]
    suspended = await client.post(f"/api/v1/instances/{instance_id}/suspend")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    assert any(b["kind"] == "manual" for b in suspended.json()["bookmarks"])
    assert_problem(
        await client.post(f"/api/v1/instances/{instance_id}/suspend"), 409, "instance.invalid_transition"
    )
    resumed = await client.post(f"/api/v1/instances/{instance_id}/resume")
    assert resumed.status_code == 200
    assert not any(b["kind"] == "manual" for b in resumed.json()["bookmarks"])
    assert_problem(
        await client.post(f"/api/v1/instances/{instance_id}/resume"), 409, "instance.invalid_transition"
    )
    assert_problem(
        await client.post(f"/api/v1/instances/{instance_id}/retry"), 409, "instance.invalid_transition"
    )
    cancelled = await client.post(
        f"/api/v1/instances/{instance_id}/cancel", json={"reason": "no longer needed"}
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["bookmarks"] == []
    problem = assert_problem(
        await client.post(f"/api/v1/instances/{instance_id}/cancel"), 409, "instance.invalid_transition"
    )
    assert problem["type"] == "https://flowkeeper.dev/problems/instance-invalid-transition"
    log = (await client.get(f"/api/v1/instances/{instance_id}/log")).json()["items"]
    assert {"suspended", "resumed", "cancelled"} <= {i["event"] for i in log}
    assert any(i["detail"] == {"reason": "no longer needed"} for i in log if i["event"] == "cancelled")


async def test_cancel_body_must_be_json(client: httpx.AsyncClient) -> None:
    await deploy(client, WAIT_FOR_APPROVAL, name="approval")
    instance_id = (await start(client, "approval", {})).json()["id"]
    response = await client.post(
        f"/api/v1/instances/{instance_id}/cancel", content=b"reason=x", headers={"Content-Type": "text/plain"}
    )
    assert_problem(response, 415, "request.unsupported_media_type")
    assert_problem(
        await client.post(f"/api/v1/instances/{instance_id}/cancel", json={"reason": 5}),
        422,
        "request.invalid",
    )


async def test_retry_a_failed_instance(client: httpx.AsyncClient, engine: Engine) -> None:
    await deploy(client, FAIL, name="fail")
    instance_id = (await start(client, "fail", {})).json()["id"]
    failed = await finished(client, engine, instance_id)
    assert failed["status"] == "failed"
    assert failed["error"]["status"] == 400
    retried = await client.post(f"/api/v1/instances/{instance_id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] in ("running", "pending", "failed")
    assert retried.json()["error"] is None or retried.json()["status"] == "failed"


async def test_list_filters_and_cursor_pagination(client: httpx.AsyncClient, engine: Engine) -> None:
    await deploy(client, GREET)
    await deploy(client, WAIT_FOR_APPROVAL, name="approval")
    ids = [(await start(client, "greet", {"name": f"n{i}"})).json()["id"] for i in range(5)]
    waiting = (await start(client, "approval", {})).json()["id"]
    for instance_id in ids:
        await asyncio.wait_for(engine.wait_for(instance_id), GUARD)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, "namespace": "tests"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/instances", params=params)).json()
        assert set(page) == {"items", "nextCursor"}
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted([*ids, waiting])
    assert len(seen) == len(set(seen))
    assert "bookmarks" not in page["items"][0] if page["items"] else True
    suspended = (await client.get("/api/v1/instances", params={"status": "suspended"})).json()["items"]
    assert [i["id"] for i in suspended] == [waiting]
    completed = (
        await client.get("/api/v1/instances", params={"status": "completed", "name": "greet"})
    ).json()
    assert sorted(i["id"] for i in completed["items"]) == sorted(ids)
    newest = (await client.get("/api/v1/instances")).json()["items"][0]
    after = await client.get("/api/v1/instances", params={"createdAfter": newest["createdOn"]})
    assert after.json()["items"] == []
    before = await client.get("/api/v1/instances", params={"createdBefore": "2000-01-01T00:00:00+02:00"})
    assert before.json()["items"] == []
    assert_problem(
        await client.get("/api/v1/instances", params={"cursor": "not-a-cursor"}),
        400,
        "request.invalid_cursor",
    )
    assert_problem(
        await client.get("/api/v1/instances", params={"status": "sleeping"}), 422, "request.invalid"
    )
    assert_problem(await client.get("/api/v1/instances", params={"limit": 0}), 422, "request.invalid")
    for bad in ("yesterday", "2000-01-01T00:00:00", "2000-01-01", "0.5", "2000-13-01T00:00:00Z"):
        problem = assert_problem(await client.get("/api/v1/instances", params={"createdAfter": bad}), 422)
        assert problem["errors"][0]["parameter"] == "createdAfter"
