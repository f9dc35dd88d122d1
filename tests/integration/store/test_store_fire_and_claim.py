"""``fire_and_claim_timers``: due timers fired once (database clock) and their woken
instances claimed for the caller with what their runs resume from (one round trip on
PostgreSQL), with the same rules as ``fire_due_timers``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from flowkeeper.records import BookmarkKind, InstanceStatus
from flowkeeper.store import Store

MINUTE = timedelta(minutes=1)


async def test_fires_due_timers_and_claims_their_instances(store: Store, make) -> None:
    now = await store.now()
    instance, bookmark, due = await make.waiting_on_timer(store, now - timedelta(seconds=1))
    later_instance, _, later = await make.waiting_on_timer(store, now + timedelta(hours=1))

    fired, claimed = await store.fire_and_claim_timers(100, "replica-a", MINUTE)

    assert [t.id for t in fired] == [due.id]
    assert fired[0].due_at == due.due_at
    [delivery] = claimed
    assert delivery.claimed is not None
    assert delivery.claimed == await store.get_instance(instance.id)
    assert delivery.claimed.status is InstanceStatus.RUNNING
    assert delivery.claimed.lease_owner == "replica-a"
    assert delivery.claimed.fencing_token == instance.fencing_token + 1
    [consumed] = delivery.consumed
    assert consumed.id == bookmark.id and consumed.is_consumed
    assert consumed.payload["timer"] == due.id
    assert datetime.fromisoformat(consumed.payload["firedAt"]) >= due.due_at
    assert delivery.timers == ()
    assert [t.id for t in await store.list_timers(later_instance.id)] == [later.id]
    assert await store.fire_and_claim_timers(100, "replica-a", MINUTE) == ([], [])  # once


async def test_fired_but_not_claimed_when_held_or_manually_suspended(store: Store, make) -> None:
    now = await store.now()
    held = await make.claimed(store)  # a run of make's owner holds it, with a due timer
    held_bookmark = make.bookmark(held.id, kind=BookmarkKind.TIMER, event_type=None, filter=None)
    await store.checkpoint(
        make.checkpoint(held, new_bookmarks=(held_bookmark,), new_timers=(make.timer(held_bookmark, now),))
    )
    paused, _, _ = await make.waiting_on_timer(store, now - timedelta(seconds=1))
    await store.suspend_instance(paused.id)

    fired, claimed = await store.fire_and_claim_timers(100, "replica-a", MINUTE)

    assert {t.instance_id for t in fired} == {held.id, paused.id}
    assert claimed == []
    assert (await store.get_instance(held.id)).lease_owner == make.owner
    assert (await store.get_instance(paused.id)).status is InstanceStatus.SUSPENDED


async def test_two_replicas_fire_each_timer_once(store: Store, store_factory, make) -> None:
    now = await store.now()
    waiting = [await make.waiting_on_timer(store, now - timedelta(milliseconds=n)) for n in range(30)]
    other = await store_factory()
    results = await asyncio.gather(
        *(s.fire_and_claim_timers(7, f"replica-{n}", MINUTE) for n, s in enumerate([store, other] * 5))
    )
    fired = [t.id for f, _ in results for t in f]
    claimed = [d.claimed.id for _, c in results for d in c if d.claimed is not None]
    remaining = await store.fire_and_claim_timers(100, "replica-x", MINUTE)
    fired += [t.id for t in remaining[0]]
    claimed += [d.claimed.id for d in remaining[1] if d.claimed is not None]
    assert sorted(fired) == sorted(t.id for _, _, t in waiting)
    assert sorted(claimed) == sorted(i.id for i, _, _ in waiting)


async def test_next_timer_with_the_clock_and_the_due_count(store: Store, make) -> None:
    assert await store.count_due_timers() == 0
    due, now = await store.next_timer_and_now()
    assert due is None and now.tzinfo is not None
    now = await store.now()
    _, _, overdue = await make.waiting_on_timer(store, now - timedelta(seconds=5))
    await make.waiting_on_timer(store, now + timedelta(hours=1))
    due, clock = await store.next_timer_and_now()
    assert due == overdue.due_at
    assert clock >= now
    assert await store.count_due_timers() == 1


async def test_fires_ahead_only_what_it_can_claim(store: Store, make) -> None:
    now = await store.now()
    soon = now + timedelta(seconds=30)
    free, bookmark, early = await make.waiting_on_timer(store, soon)
    held = await make.claimed(store)  # a run of make's owner holds it
    held_bookmark = make.bookmark(held.id, kind=BookmarkKind.TIMER, event_type=None, filter=None)
    await store.checkpoint(
        make.checkpoint(held, new_bookmarks=(held_bookmark,), new_timers=(make.timer(held_bookmark, soon),))
    )
    _, _, beyond = await make.waiting_on_timer(store, now + timedelta(minutes=5))

    assert await store.fire_and_claim_timers(100, "replica-a", MINUTE) == ([], [])  # nothing due
    fired, claimed = await store.fire_and_claim_timers(100, "replica-a", MINUTE, ahead=MINUTE)

    # The free instance's timer fires ahead, claimed for the caller, dated its due time;
    # the held one's waits for its due time, as does the one beyond ``ahead``.
    assert [t.id for t in fired] == [early.id]
    [delivery] = claimed
    assert delivery.claimed is not None and delivery.claimed.id == free.id
    assert delivery.claimed.lease_owner == "replica-a"
    [consumed] = delivery.consumed
    assert consumed.id == bookmark.id
    assert datetime.fromisoformat(consumed.payload["firedAt"]) == early.due_at
    assert [t.due_at for t in await store.list_timers(held.id)] == [soon]
    assert [t.id for t in await store.list_timers(beyond.instance_id)] == [beyond.id]
    assert await store.fire_and_claim_timers(100, "replica-a", MINUTE, ahead=MINUTE) == ([], [])
