"""The outbox routes: list (by status, paged), read, re-queue a dead event; problems for the rest."""

from __future__ import annotations

from datetime import timedelta

import httpx

from flowkeeper.records import OutboxRecord
from flowkeeper.store import Store
from tests.api.conftest import assert_problem, deploy, start
from tests.integration.store.conftest import Make

EMIT = """\
do:
  - announce:
      emit:
        event:
          with:
            source: https://tests
            type: com.example.greeted
            data:
              name: '${ .name }'
"""

FIELDS = {
    "id",
    "instanceId",
    "activityId",
    "status",
    "attempts",
    "nextAttemptAt",
    "lastError",
    "deliveredTo",
    "claimedBy",
    "createdOn",
    "deliveredOn",
    "event",
}


async def rows(store: Store, count: int) -> list[OutboxRecord]:
    make = Make()
    instance = await make.claimed(store)
    now = await store.now()
    records = tuple(make.outbox(instance.id, next_attempt_at=now) for _ in range(count))
    await store.checkpoint(make.checkpoint(instance, outbox=records))
    return list(records)


async def dead(store: Store, count: int = 1) -> list[OutboxRecord]:
    """``count`` dead rows (call before making other rows: it claims whatever is due)."""
    records = await rows(store, count)
    for claimed in await store.claim_outbox("processor", count, timedelta(minutes=1)):
        await store.dead_letter_outbox(claimed.id, "processor", ["audit"], "bus: HTTP 500")
    return records


async def test_an_emitted_event_is_listed_and_read(client: httpx.AsyncClient) -> None:
    await deploy(client, EMIT, name="emitter")
    started = await start(client, "emitter", {"name": "Ada"})
    assert started.json()["status"] == "completed"

    listed = await client.get("/api/v1/outbox")
    assert listed.status_code == 200
    assert listed.json()["nextCursor"] is None
    [item] = listed.json()["items"]
    assert set(item) == FIELDS
    assert item["status"] == "pending"
    assert item["instanceId"] == started.json()["id"]
    assert item["activityId"] == "/do/0/announce"
    assert item["attempts"] == 0
    assert item["deliveredTo"] == []
    assert item["event"]["type"] == "com.example.greeted"
    assert item["event"]["data"] == {"name": "Ada"}
    assert item["id"] == item["event"]["id"]

    read = await client.get(f"/api/v1/outbox/{item['id']}")
    assert read.status_code == 200
    assert read.json() == item


async def test_listing_by_status_and_page_by_page(client: httpx.AsyncClient, store: Store) -> None:
    [gone] = await dead(store)
    pending = await rows(store, 3)

    only_dead = (await client.get("/api/v1/outbox", params={"status": "dead"})).json()
    assert [i["id"] for i in only_dead["items"]] == [gone.id]
    assert only_dead["items"][0]["lastError"] == "bus: HTTP 500"
    assert only_dead["items"][0]["deliveredTo"] == ["audit"]

    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = (await client.get("/api/v1/outbox", params=params)).json()
        seen.extend(i["id"] for i in page["items"])
        if page["nextCursor"] is None:
            break
        params["cursor"] = page["nextCursor"]
    assert sorted(seen) == sorted(r.id for r in [*pending, gone])
    assert len(seen) == 4


async def test_bad_queries_are_problems(client: httpx.AsyncClient) -> None:
    problem = assert_problem(
        await client.get("/api/v1/outbox", params={"status": "lost"}), 422, "request.invalid"
    )
    assert problem["errors"][0]["parameter"] == "status"
    assert_problem(await client.get("/api/v1/outbox", params={"limit": 0}), 422, "request.invalid")
    assert_problem(
        await client.get("/api/v1/outbox", params={"cursor": "nope"}), 400, "request.invalid_cursor"
    )
    assert_problem(await client.get("/api/v1/outbox/no-such-event"), 404, "outbox.not_found")


async def test_requeue_a_dead_event(client: httpx.AsyncClient, store: Store) -> None:
    [record] = await dead(store)
    response = await client.post(f"/api/v1/outbox/{record.id}/requeue")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["attempts"] == 0
    assert body["deliveredTo"] == ["audit"]  # the sinks that had it do not get it twice
    assert body["event"]["id"] == record.event["id"]
    [claimed] = await store.claim_outbox("processor", 10, timedelta(minutes=1))
    assert claimed.id == record.id


async def test_requeue_refuses_what_is_not_dead(client: httpx.AsyncClient, store: Store) -> None:
    [record] = await rows(store, 1)
    problem = assert_problem(
        await client.post(f"/api/v1/outbox/{record.id}/requeue"), 409, "outbox.invalid_transition"
    )
    assert "pending, not dead" in problem["detail"]
    assert_problem(await client.post("/api/v1/outbox/no-such-event/requeue"), 404, "outbox.not_found")
