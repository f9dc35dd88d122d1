"""Kept events and exactly-once delivery: one bookmark consumed once, one delivery per
instance per event, duplicates of an event kept once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select

from flowkeeper.records import EventRecord, InstanceStatus
from flowkeeper.store import Store
from flowkeeper.store.tables import workflow_event_delivery, workflow_instance

MINUTE = timedelta(minutes=1)


def event(n: int | str = 1, type: str = "com.example.ping", **kw) -> EventRecord:
    fields = {
        "key": f"tests/{n}",
        "id": str(n),
        "source": "tests",
        "type": type,
        "event": {"specversion": "1.0", "id": str(n), "source": "tests", "type": type, "data": {"n": n}},
    }
    return EventRecord(**(fields | kw))


async def _deliveries(store: Store) -> int:
    # The port has no listing of deliveries: read the table through the adapter.
    async with store._reading("test") as conn:  # type: ignore[attr-defined]
        return int(
            (await conn.execute(select(func.count()).select_from(workflow_event_delivery))).scalar_one()
        )


async def _matched(store: Store, key: str) -> int:
    [kept] = [e for e in await store.recent_events(await store.now() - timedelta(days=1)) if e.key == key]
    return kept.matched


# -- keeping events --------------------------------------------------------------------------


async def test_record_keeps_an_event_once(store: Store) -> None:
    before = await store.now()
    kept = await store.record_event(event(1))
    assert kept is not None
    assert kept == event(1, received_on=kept.received_on)
    assert kept.received_on is not None
    assert kept.received_on >= before
    assert kept.matched == 0
    assert await store.record_event(event(1, event={"other": "body"})) is None
    assert await store.recent_events(before) == [kept]


async def test_concurrent_records_of_one_key_keep_one(store: Store, store_factory) -> None:
    stores = [store, await store_factory()]
    results = await asyncio.gather(
        *(stores[n % 2].record_event(event("same", event={"by": n})) for n in range(20))
    )
    kept = [r for r in results if r is not None]
    assert len(kept) == 1
    assert await store.recent_events(await store.now() - MINUTE) == kept


async def test_recent_events_since_a_time_and_of_a_type(store: Store) -> None:
    first = await store.record_event(event(1, type="a"))
    second = await store.record_event(event(2, type="b"))
    third = await store.record_event(event(3, type="a"))
    assert first and second and third
    since = await store.now() - MINUTE
    assert await store.recent_events(since) == [first, second, third]
    assert await store.recent_events(since, "a") == [first, third]
    assert await store.recent_events(since, "c") == []
    assert await store.recent_events(await store.now() + MINUTE) == []
    assert await store.recent_events(third.received_on) == [
        e for e in (first, second, third) if e.received_on >= third.received_on
    ]  # type: ignore[operator]


async def test_list_events_newest_first_in_pages(store: Store) -> None:
    kept = [await store.record_event(event(n)) for n in range(5)]
    page, cursor = await store.list_events(limit=2)
    seen = list(page)
    while cursor is not None:
        page, cursor = await store.list_events(limit=2, cursor=cursor)
        seen += page
    assert [e.key for e in seen] == [
        e.key for e in sorted(kept, key=lambda e: (e.received_on, e.key), reverse=True)
    ]  # type: ignore[union-attr]
    assert len(seen) == 5
    assert await store.list_events(limit=10) == (seen, None)
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.list_events(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        await store.list_events(limit=0)


async def test_delete_events_oldest_first_in_batches(store: Store) -> None:
    for n in range(5):
        await store.record_event(event(n))
    cutoff = await store.now() + MINUTE
    assert await store.delete_events(cutoff, limit=2) == 2
    left = await store.recent_events(cutoff - timedelta(days=1))
    assert [e.key for e in left] == ["tests/2", "tests/3", "tests/4"]
    assert await store.delete_events(cutoff - timedelta(days=1)) == 0  # none that old
    assert await store.delete_events(cutoff) == 3
    assert await store.delete_events(cutoff) == 0


# -- delivering events -----------------------------------------------------------------------


async def test_deliver_consumes_the_bookmark_and_wakes_the_instance(store: Store, make) -> None:
    waiting, bookmark = await make.suspended_on(store)
    await store.record_event(event(1))
    assert await store.claim_instances("w2", MINUTE, 10) == []
    assert await store.deliver_event(bookmark.id, "tests/1", {"data": {"n": 1}})
    [stored] = await store.list_bookmarks(waiting.id)
    assert stored.is_consumed
    assert stored.payload == {"data": {"n": 1}}
    assert stored.consumed_on is not None
    assert (await store.get_instance(waiting.id)).status is InstanceStatus.RUNNING
    assert await _matched(store, "tests/1") == 1
    assert await _deliveries(store) == 1
    assert [i.id for i in await store.claim_instances("w2", MINUTE, 10)] == [waiting.id]


async def test_deliver_writes_nothing_when_it_cannot(store: Store, make) -> None:
    waiting, bookmark = await make.suspended_on(store)
    await store.record_event(event(1))
    await store.record_event(event(2))
    assert not await store.deliver_event("no-such-bookmark", "tests/1", {})
    assert not await store.deliver_event(bookmark.id, "no-such-event", {})  # not kept (or dropped)
    assert not (await store.list_bookmarks(waiting.id))[0].is_consumed
    assert await store.deliver_event(bookmark.id, "tests/1", {"n": 1})
    assert not await store.deliver_event(bookmark.id, "tests/2", {"n": 2})  # consumed already
    assert (await store.list_bookmarks(waiting.id))[0].payload == {"n": 1}
    assert await _matched(store, "tests/2") == 0
    assert await _deliveries(store) == 1


async def test_deliver_to_a_running_instance_leaves_it_running(store: Store, make) -> None:
    running = await make.claimed(store)
    bookmark = make.bookmark(running.id)
    running = await store.checkpoint(make.checkpoint(running, new_bookmarks=(bookmark,)))
    await store.record_event(event(1))
    assert await store.deliver_event(bookmark.id, "tests/1", {"n": 1})
    assert await store.get_instance(running.id) == running  # the lease holder goes on


async def test_twenty_concurrent_deliveries_to_one_bookmark_one_wins(
    store: Store, store_factory, make
) -> None:
    waiting, bookmark = await make.suspended_on(store)
    stores = [store, await store_factory()]
    for n in range(3):
        await store.record_event(event(n))
    results = await asyncio.gather(
        *(stores[n % 2].deliver_event(bookmark.id, f"tests/{n % 3}", {"by": n}) for n in range(20))
    )
    assert results.count(True) == 1
    winner = results.index(True)
    [stored] = await store.list_bookmarks(waiting.id)
    assert stored.payload == {"by": winner}
    assert sum([await _matched(store, f"tests/{n}") for n in range(3)]) == 1
    assert await _deliveries(store) == 1
    assert (await store.get_instance(waiting.id)).status is InstanceStatus.RUNNING


async def test_one_event_resumes_one_bookmark_per_instance(store: Store, make) -> None:
    instance = await make.claimed(store)
    first, second = make.bookmark(instance.id), make.bookmark(instance.id)
    await store.checkpoint(
        make.checkpoint(
            instance, status=InstanceStatus.SUSPENDED, new_bookmarks=(first, second), release_lease=True
        )
    )
    await store.record_event(event(1))
    await store.record_event(event(2))
    assert await store.deliver_event(first.id, "tests/1", {"n": 1})
    assert not await store.deliver_event(second.id, "tests/1", {"n": 1})
    assert [b.id for b in await store.list_bookmarks(instance.id, consumed=False)] == [second.id]
    assert await _matched(store, "tests/1") == 1
    # Another event may resume the other bookmark.
    assert await store.deliver_event(second.id, "tests/2", {"n": 2})


async def test_one_event_to_two_bookmarks_of_one_instance_concurrently(
    store: Store, store_factory, make
) -> None:
    other = await store_factory()
    for n in range(10):
        instance = await make.claimed(store)
        first, second = make.bookmark(instance.id), make.bookmark(instance.id)
        await store.checkpoint(
            make.checkpoint(
                instance, status=InstanceStatus.SUSPENDED, new_bookmarks=(first, second), release_lease=True
            )
        )
        await store.record_event(event(n))
        results = await asyncio.gather(
            store.deliver_event(first.id, f"tests/{n}", {"b": 1}),
            other.deliver_event(second.id, f"tests/{n}", {"b": 2}),
        )
        assert results.count(True) == 1
        assert len(await store.list_bookmarks(instance.id, consumed=True)) == 1
        assert await _matched(store, f"tests/{n}") == 1


async def test_one_event_to_many_instances_concurrently(store: Store, store_factory, make) -> None:
    stores = [store, await store_factory()]
    waiting = [await make.suspended_on(store) for _ in range(10)]
    await store.record_event(event(1))
    results = await asyncio.gather(
        *(stores[n % 2].deliver_event(b.id, "tests/1", {"n": n}) for n, (_, b) in enumerate(waiting))
    )
    assert results == [True] * 10
    assert await _matched(store, "tests/1") == 10
    assert await _deliveries(store) == 10
    assert {i.id for i in await store.claim_instances("w2", MINUTE, 100)} == {i.id for i, _ in waiting}


async def test_deliver_racing_retention_cleanup(store: Store, store_factory, make) -> None:
    # The event may be dropped while it is being delivered: either it is delivered
    # (and its delivery goes with it when it is dropped) or not; never an error. A
    # cleaner skips an event a delivery holds (it goes in the next round).
    other = await store_factory()
    for n in range(10):
        waiting, bookmark = await make.suspended_on(store)
        await store.record_event(event(n))
        cutoff = await store.now() + MINUTE
        delivered, deleted = await asyncio.gather(
            store.deliver_event(bookmark.id, f"tests/{n}", {"n": n}),
            other.delete_events(cutoff),
        )
        assert (await store.list_bookmarks(waiting.id))[0].is_consumed is delivered
        assert await _deliveries(store) == (1 if delivered and not deleted else 0)
        assert deleted + await store.delete_events(cutoff) == 1
        assert await _deliveries(store) == 0


async def test_deliveries_go_with_their_event_or_instance(store: Store, make) -> None:
    _, bookmark = await make.suspended_on(store)
    await store.record_event(event(1))
    assert await store.deliver_event(bookmark.id, "tests/1", {})
    assert await _deliveries(store) == 1
    assert await store.delete_events(await store.now() + MINUTE) == 1
    assert await _deliveries(store) == 0
    # Kept again (a redelivery after retention): it may resume another bookmark.
    again, other_bookmark = await make.suspended_on(store)
    await store.record_event(event(1))
    assert await store.deliver_event(other_bookmark.id, "tests/1", {})
    async with store._transaction("test cleanup") as conn:  # type: ignore[attr-defined]
        await conn.execute(delete(workflow_instance).where(workflow_instance.c.id == again.id))
    assert await _deliveries(store) == 0
    assert await _matched(store, "tests/1") == 1


async def test_deliver_to_a_manually_suspended_instance_keeps_it_suspended(store: Store, make) -> None:
    waiting, bookmark = await make.suspended_on(store)
    await store.suspend_instance(waiting.id)
    await store.record_event(event(1))
    assert await store.deliver_event(bookmark.id, "tests/1", {"n": 1})
    assert (await store.get_instance(waiting.id)).status is InstanceStatus.SUSPENDED
    assert await store.claim_instances("w2", MINUTE, 10) == []
    assert (await store.resume_instance(waiting.id)).status is InstanceStatus.RUNNING


async def test_deliver_to_the_manual_bookmark_itself_releases_the_hold(store: Store, make) -> None:
    running = await make.claimed(store)
    await store.suspend_instance(running.id)
    await store.record_event(event(1))
    assert await store.deliver_event(f"{running.id}.manual", "tests/1", {"resume": True})
    assert (await store.get_instance(running.id)).status is InstanceStatus.RUNNING
