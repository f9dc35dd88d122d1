"""Bookmarks (event lookup, exactly-once resume) and durable timers (firing on the database clock)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from flowkeeper.records import BookmarkKind, InstanceStatus
from flowkeeper.store import Store

MINUTE = timedelta(minutes=1)


async def _candidates(store: Store, event_type: str) -> set[str]:
    found, unknown = await store.event_candidates(event_type, [], set())
    assert unknown == set()
    return {b.id for b in found}


async def test_event_candidates_by_type_or_any_type(store: Store, make) -> None:
    _, ping = await make.suspended_on(store, event_type="com.example.ping")
    _, anything = await make.suspended_on(store, event_type=None)
    await make.suspended_on(store, event_type="com.example.other")
    await make.suspended_on(store, BookmarkKind.MANUAL, event_type=None)  # not an event bookmark
    found, _ = await store.event_candidates("com.example.ping", [], set())
    assert {b.id for b in found} == {ping.id, anything.id}
    assert next(b for b in found if b.id == ping.id).filter == ping.filter
    assert await _candidates(store, "com.example.unknown") == {anything.id}
    # Consumed bookmarks are no longer candidates.
    assert await store.resume_bookmark(ping.id, {"data": 1})
    assert await _candidates(store, "com.example.ping") == {anything.id}


async def test_resume_consumes_once_and_makes_the_instance_runnable(store: Store, make) -> None:
    instance, bookmark = await make.suspended_on(store)
    assert await store.claim_instances("w2", MINUTE, 10) == []
    assert await store.resume_bookmark(bookmark.id, {"data": {"n": 1}})
    assert not await store.resume_bookmark(bookmark.id, {"data": {"n": 2}})
    assert not await store.resume_bookmark("no-such-bookmark", {})
    [stored] = await store.list_bookmarks(instance.id)
    assert stored.is_consumed
    assert stored.payload == {"data": {"n": 1}}
    assert stored.consumed_on is not None
    assert await store.list_bookmarks(instance.id, consumed=False) == []
    assert (await store.get_instance(instance.id)).status is InstanceStatus.RUNNING
    assert [i.id for i in await store.claim_instances("w2", MINUTE, 10)] == [instance.id]


async def test_resume_does_not_revive_a_finished_instance(store: Store, make) -> None:
    instance = await make.claimed(store)
    bookmark = make.bookmark(instance.id)
    await store.checkpoint(
        make.checkpoint(
            instance, status=InstanceStatus.CANCELLED, new_bookmarks=(bookmark,), release_lease=True
        )
    )
    assert await store.resume_bookmark(bookmark.id, {})
    assert (await store.get_instance(instance.id)).status is InstanceStatus.CANCELLED


async def test_twenty_concurrent_resumers_exactly_one_wins(store: Store, store_factory, make) -> None:
    instance, bookmark = await make.suspended_on(store)
    stores = [store, await store_factory()]
    results = await asyncio.gather(
        *(stores[n % 2].resume_bookmark(bookmark.id, {"by": n}) for n in range(20))
    )
    assert results.count(True) == 1
    winner = results.index(True)
    [stored] = await store.list_bookmarks(instance.id)
    assert stored.payload == {"by": winner}


async def test_list_bookmarks_oldest_first(store: Store, make) -> None:
    instance = await make.claimed(store)
    first = make.bookmark(instance.id)
    instance = await store.checkpoint(make.checkpoint(instance, new_bookmarks=(first,)))
    second = make.bookmark(instance.id)
    await store.checkpoint(make.checkpoint(instance, new_bookmarks=(second,)))
    assert [b.id for b in await store.list_bookmarks(instance.id)] == [first.id, second.id]


async def test_only_due_timers_fire(store: Store, make) -> None:
    now = await store.now()
    due_instance, due_bookmark, due = await make.waiting_on_timer(store, now - timedelta(seconds=1))
    later_instance, _, later = await make.waiting_on_timer(store, now + timedelta(hours=1))
    fired = await store.fire_due_timers(100)
    assert [t.id for t in fired] == [due.id]
    assert fired[0].due_at == due.due_at
    assert await store.list_timers(due_instance.id) == []
    assert [t.id for t in await store.list_timers(later_instance.id)] == [later.id]
    [bookmark] = await store.list_bookmarks(due_instance.id)
    assert bookmark.id == due_bookmark.id
    assert bookmark.is_consumed
    assert bookmark.payload["timer"] == due.id
    assert datetime.fromisoformat(bookmark.payload["firedAt"]) >= due.due_at
    assert (await store.get_instance(due_instance.id)).status is InstanceStatus.RUNNING
    assert (await store.get_instance(later_instance.id)).status is InstanceStatus.SUSPENDED
    assert await store.fire_due_timers(100) == []  # each timer fires once


async def test_fire_uses_the_database_clock_unless_told(store: Store, make) -> None:
    now = await store.now()
    instance, _, timer = await make.waiting_on_timer(store, now + timedelta(days=1))
    assert await store.fire_due_timers(10) == []
    fired = await store.fire_due_timers(10, now=now + timedelta(days=2))
    assert [t.id for t in fired] == [timer.id]
    [bookmark] = await store.list_bookmarks(instance.id)
    assert datetime.fromisoformat(bookmark.payload["firedAt"]) == now + timedelta(days=2)


async def test_fire_respects_the_limit_earliest_first(store: Store, make) -> None:
    now = await store.now()
    timers = [(await make.waiting_on_timer(store, now - timedelta(minutes=m)))[2] for m in (1, 3, 2)]
    first = await store.fire_due_timers(2)
    assert [t.id for t in first] == [timers[1].id, timers[2].id]
    assert [t.id for t in await store.fire_due_timers(2)] == [timers[0].id]


async def test_concurrent_timer_services_fire_each_timer_once(store: Store, store_factory, make) -> None:
    now = await store.now()
    ids = {(await make.waiting_on_timer(store, now - timedelta(seconds=1)))[2].id for _ in range(12)}
    other = await store_factory()

    async def drain(s: Store) -> list[str]:
        fired: list[str] = []
        while batch := await s.fire_due_timers(2):
            fired += [t.id for t in batch]
        return fired

    results = await asyncio.gather(drain(store), drain(other), drain(store), drain(other))
    fired = [t for r in results for t in r]
    assert sorted(fired) == sorted(ids)


async def test_next_timer_due(store: Store, make) -> None:
    assert await store.next_timer_due() is None
    now = await store.now()
    a, _, early = await make.waiting_on_timer(store, now + timedelta(minutes=5))
    b, _, late = await make.waiting_on_timer(store, now + timedelta(minutes=10))
    assert await store.next_timer_due() == early.due_at
    assert await store.next_timer_due([b.id]) == late.due_at
    assert await store.next_timer_due([a.id, b.id]) == early.due_at
    assert await store.next_timer_due([]) is None
    assert await store.next_timer_due(["unknown"]) is None
