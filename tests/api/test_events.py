"""CloudEvents over HTTP: structured, binary and batch modes, validation, exactly-once resumption."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from flowkeeper.runtime import Engine, run_to_end
from tests.api.conftest import GUARD, WAIT_FOR_APPROVAL, assert_problem, deploy, start

STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def event(event_id: str = "e-1", type: str = "com.example.approved", **extra: Any) -> dict[str, Any]:
    """A valid CloudEvent."""
    return {"specversion": "1.0", "id": event_id, "source": "/tests", "type": type, **extra}


async def waiting_instance(client: httpx.AsyncClient) -> str:
    await deploy(client, WAIT_FOR_APPROVAL, name="approval")
    response = await start(client, "approval", {})
    assert response.json()["status"] == "suspended"
    instance_id: str = response.json()["id"]
    return instance_id


async def test_structured_event_resumes_the_waiting_instance(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    instance_id = await waiting_instance(client)
    response = await client.post(
        "/api/v1/events", content=json.dumps(event(data={"ok": True})), headers=STRUCTURED
    )
    assert response.status_code == 202, response.text
    assert response.json() == {
        "accepted": 1,
        "matched": 1,
        "duplicates": 0,
        "events": [{"id": "e-1", "source": "/tests", "matched": 1, "duplicate": False}],
    }
    done = await run_to_end(engine, instance_id, limit=GUARD)
    assert done.status == "completed"
    again = await client.post("/api/v1/events", content=json.dumps(event()), headers=STRUCTURED)
    assert again.json()["duplicates"] == 1
    assert again.json()["matched"] == 0


async def test_unmatched_event_is_accepted_and_kept(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/events", json=event("e-9", type="com.example.other"))
    assert response.status_code == 202
    assert response.json()["matched"] == 0
    kept = (await client.get("/api/v1/events")).json()
    assert set(kept) == {"items", "nextCursor"}
    [item] = kept["items"]
    assert set(item) == {"id", "source", "type", "receivedOn", "matched", "event"}
    assert (item["id"], item["source"], item["type"], item["matched"]) == (
        "e-9",
        "/tests",
        "com.example.other",
        0,
    )
    assert item["event"]["specversion"] == "1.0"


async def test_twenty_concurrent_deliveries_of_one_event_resume_once(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    instance_id = await waiting_instance(client)
    body = json.dumps(event("once"))
    responses = await asyncio.gather(
        *(client.post("/api/v1/events", content=body, headers=STRUCTURED) for _ in range(20))
    )
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    outcomes = [r.json() for r in responses]
    assert sum(o["matched"] for o in outcomes) == 1
    assert sum(o["duplicates"] for o in outcomes) == 19
    done = await run_to_end(engine, instance_id, limit=GUARD)
    assert done.status == "completed"
    log = (await client.get(f"/api/v1/instances/{instance_id}/log")).json()["items"]
    listen = [i for i in log if i["reference"].startswith("/do/0") and i["event"] == "completed"]
    assert len(listen) == 1


async def test_binary_mode(client: httpx.AsyncClient, engine: Engine) -> None:
    instance_id = await waiting_instance(client)
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "b-1",
        "ce-source": "/binary%20source",
        "ce-type": "com.example.approved",
        "ce-traceparent": "00-abc-def-01",
        "Content-Type": "application/json",
    }
    response = await client.post("/api/v1/events", content=b'{"approved": true}', headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["matched"] == 1
    await run_to_end(engine, instance_id, limit=GUARD)
    [kept] = (await client.get("/api/v1/events")).json()["items"]
    assert kept["source"] == "/binary source"
    assert kept["event"]["data"] == {"approved": True}
    assert kept["event"]["datacontenttype"] == "application/json"
    assert kept["event"]["traceparent"] == "00-abc-def-01"


@pytest.mark.parametrize(
    ("content_type", "body", "field", "value"),
    [
        ("text/plain; charset=utf-8", b"hello", "data", "hello"),
        ("application/octet-stream", b"\x00\x01", "data_base64", base64.b64encode(b"\x00\x01").decode()),
        (None, b"", "data", None),
    ],
)
async def test_binary_mode_data_kinds(
    client: httpx.AsyncClient, content_type: str | None, body: bytes, field: str, value: Any
) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "k", "ce-source": "/s", "ce-type": "t"}
    if content_type:
        headers["Content-Type"] = content_type
    response = await client.post("/api/v1/events", content=body, headers=headers)
    assert response.status_code == 202, response.text
    [kept] = (await client.get("/api/v1/events")).json()["items"]
    assert kept["event"].get(field) == value


async def test_batch_mode(client: httpx.AsyncClient) -> None:
    instance_id = await waiting_instance(client)
    batch = [event("a", type="com.example.other"), event("b"), event("a", type="com.example.other")]
    response = await client.post(
        "/api/v1/events",
        content=json.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {
        "accepted": 3,
        "matched": 1,
        "duplicates": 1,
        "events": [
            {"id": "a", "source": "/tests", "matched": 0, "duplicate": False},
            {"id": "b", "source": "/tests", "matched": 1, "duplicate": False},
            {"id": "a", "source": "/tests", "matched": 0, "duplicate": True},
        ],
    }
    assert instance_id


@pytest.mark.parametrize(
    ("body", "pointer", "fragment"),
    [
        ({"specversion": "1.0", "source": "/s", "type": "t"}, "/id", "'id' is missing"),
        ({"specversion": "1.0", "id": "x", "type": "t"}, "/source", "'source' is missing"),
        ({"specversion": "1.0", "id": "x", "source": "/s"}, "/type", "'type' is missing"),
        ({"id": "x", "source": "/s", "type": "t"}, "/specversion", "'specversion' is missing"),
        ({"specversion": "0.3", "id": "x", "source": "/s", "type": "t"}, "/specversion", "must be '1.0'"),
        ({"specversion": "1.0", "id": "", "source": "/s", "type": "t"}, "/id", "at least 1"),
        ({"specversion": "1.0", "id": 5, "source": "/s", "type": "t"}, "/id", "string"),
        ({"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "data": "\u0000"}, "/data", "NUL"),
        ([], "", "JSON object"),
    ],
)
async def test_invalid_structured_events_name_the_attribute(
    client: httpx.AsyncClient, body: Any, pointer: str, fragment: str
) -> None:
    response = await client.post("/api/v1/events", content=json.dumps(body), headers=STRUCTURED)
    problem = assert_problem(response, 422, "event.invalid")
    assert pointer in [e["pointer"] for e in problem["errors"]], problem
    assert fragment in json.dumps(problem), problem


async def test_invalid_binary_and_batch_events(client: httpx.AsyncClient) -> None:
    missing = await client.post(
        "/api/v1/events",
        content=b"{}",
        headers={"ce-id": "x", "ce-type": "t", "Content-Type": "application/json"},
    )
    problem = assert_problem(missing, 422, "event.invalid")
    assert {e["header"] for e in problem["errors"]} == {"ce-source", "ce-specversion"}
    wrong_version = await client.post(
        "/api/v1/events",
        content=b"",
        headers={"ce-id": "x", "ce-type": "t", "ce-source": "s", "ce-specversion": "2"},
    )
    problem = assert_problem(wrong_version, 422, "request.invalid")
    assert [e["header"] for e in problem["errors"]] == ["ce-specversion"]
    too_long = await client.post(
        "/api/v1/events", content=json.dumps(event()), headers={**STRUCTURED, "ce-type": "t" * 256}
    )
    assert_problem(too_long, 422, "request.invalid")
    batch = [event("a"), {"specversion": "1.0", "id": "b", "source": "/s"}]
    bad_batch = await client.post(
        "/api/v1/events",
        content=json.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert [e["pointer"] for e in assert_problem(bad_batch, 422, "event.invalid")["errors"]] == ["/1/type"]
    not_array = await client.post(
        "/api/v1/events",
        content=json.dumps(event()),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert_problem(not_array, 422, "event.invalid")
    assert (await client.get("/api/v1/events")).json()["items"] == []  # nothing of a bad request was kept


async def test_malformed_bodies_and_content_types(client: httpx.AsyncClient) -> None:
    assert_problem(
        await client.post("/api/v1/events", content=b"{", headers=STRUCTURED), 400, "request.malformed"
    )
    assert_problem(
        await client.post("/api/v1/events", content=b"", headers=STRUCTURED), 400, "request.malformed"
    )
    binary_bad_json = await client.post(
        "/api/v1/events",
        content=b"{oops",
        headers={
            "ce-id": "x",
            "ce-type": "t",
            "ce-source": "s",
            "ce-specversion": "1.0",
            "Content-Type": "application/json",
        },
    )
    assert_problem(binary_bad_json, 400, "request.malformed")
    # Neither structured nor batch: binary mode, which needs the ce-* headers.
    for headers in ({"Content-Type": "text/plain"}, {}):
        plain = await client.post("/api/v1/events", content=b"hello" if headers else b"", headers=headers)
        problem = assert_problem(plain, 422, "event.invalid")
        assert {e["header"] for e in problem["errors"]} == {"ce-id", "ce-source", "ce-type", "ce-specversion"}


async def test_list_events_with_cursor(client: httpx.AsyncClient) -> None:
    for index in range(5):
        await client.post("/api/v1/events", json=event(f"e{index}", type="com.example.other"))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/events", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"e{i}" for i in range(5)]
    assert_problem(
        await client.get("/api/v1/events", params={"cursor": "%%%"}), 400, "request.invalid_cursor"
    )
    assert_problem(await client.get("/api/v1/events", params={"limit": 5000}), 422, "request.invalid")
