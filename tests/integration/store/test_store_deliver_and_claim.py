"""``deliver_and_claim``: an event's delivery that also claims the woken instance and
reads what its run resumes from (one round trip on PostgreSQL), with the same
exactly-once rules as ``deliver_event``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from flowkeeper.records import EventRecord, InstanceStatus
from flowkeeper.store import Store

MINUTE = timedelta(minutes=1)
OWNER = "replica-a"


def event(n: int) -> EventRecord:
    body = {"specversion": "1.0", "id": str(n), "source": "tests", "type": "com.example.ping"}
    return EventRecord(key=f"tests/{n}", id=str(n), source="tests", type="com.example.ping", event=body)


async def test_delivers_claims_and_reads_the_resume(store: Store, make) -> None:
    instance = await make.claimed(store)
    waited, other = make.bookmark(instance.id), make.bookmark(instance.id, activity_id="/do/1/timeout")
    timer = make.timer(other, await store.now() + MINUTE)
    await store.checkpoint(
        make.checkpoint(
            instance,
            status=InstanceStatus.SUSPENDED,
            new_bookmarks=(waited, other),
            new_timers=(timer,),
            release_lease=True,
        )
    )
    await store.record_event(event(1))
    before = await store.now()

    delivery = await store.deliver_and_claim(waited.id, "tests/1", {"n": 1}, OWNER, MINUTE)

    assert delivery.delivered
    claimed = delivery.claimed
    assert claimed is not None
    assert claimed.id == instance.id
    assert claimed.status is InstanceStatus.RUNNING
    assert claimed.lease_owner == OWNER
    assert claimed.lease_expires_at is not None and claimed.lease_expires_at >= before + MINUTE
    assert claimed.fencing_token == instance.fencing_token + 1
    assert claimed == await store.get_instance(instance.id)
    assert delivery.consumed == tuple(await store.list_bookmarks(instance.id, consumed=True))
    assert [(b.id, b.payload) for b in delivery.consumed] == [(waited.id, {"n": 1})]
    assert delivery.timers == tuple(await store.list_timers(instance.id))
    assert [t.id for t in delivery.timers] == [timer.id]


async def test_not_delivered_when_consumed_gone_unkept_or_already_delivered(store: Store, make) -> None:
    instance = await make.claimed(store)
    first, second = make.bookmark(instance.id), make.bookmark(instance.id)
    await store.checkpoint(
        make.checkpoint(
            instance, status=InstanceStatus.SUSPENDED, new_bookmarks=(first, second), release_lease=True
        )
    )
    await store.record_event(event(1))
    assert not (await store.deliver_and_claim("no-such-bookmark", "tests/1", {}, OWNER, MINUTE)).delivered
    assert not (await store.deliver_and_claim(first.id, "no-such-event", {}, OWNER, MINUTE)).delivered
    assert (await store.get_instance(instance.id)).lease_owner is None  # nothing claimed

    assert (await store.deliver_and_claim(first.id, "tests/1", {"n": 1}, OWNER, MINUTE)).delivered
    again = await store.deliver_and_claim(first.id, "tests/1", {"n": 1}, OWNER, MINUTE)
    assert again.delivered is False and again.claimed is None
    # One event reaches an instance once, even through another of its bookmarks.
    assert not (await store.deliver_and_claim(second.id, "tests/1", {"n": 1}, OWNER, MINUTE)).delivered
    assert [b.id for b in await store.list_bookmarks(instance.id, consumed=False)] == [second.id]


async def test_delivered_but_not_claimed_while_another_worker_holds_the_lease(store: Store, make) -> None:
    running = await make.claimed(store)  # held by make's owner, not OWNER
    bookmark = make.bookmark(running.id)
    running = await store.checkpoint(make.checkpoint(running, new_bookmarks=(bookmark,)))
    await store.record_event(event(1))
    delivery = await store.deliver_and_claim(bookmark.id, "tests/1", {"n": 1}, OWNER, MINUTE)
    assert delivery.delivered and delivery.claimed is None
    assert await store.get_instance(running.id) == running  # the lease holder goes on
    assert (await store.list_bookmarks(running.id))[0].is_consumed


async def test_a_manual_hold_is_delivered_to_but_not_claimed(store: Store, make) -> None:
    waiting, bookmark = await make.suspended_on(store)
    await store.suspend_instance(waiting.id)
    await store.record_event(event(1))
    delivery = await store.deliver_and_claim(bookmark.id, "tests/1", {"n": 1}, OWNER, MINUTE)
    assert delivery.delivered and delivery.claimed is None
    assert (await store.get_instance(waiting.id)).status is InstanceStatus.SUSPENDED
    resumed = await store.resume_instance(waiting.id)
    assert resumed.status is InstanceStatus.RUNNING


async def test_concurrent_deliveries_to_one_bookmark_from_two_replicas_one_wins(
    store: Store, store_factory, make
) -> None:
    waiting, bookmark = await make.suspended_on(store)
    stores = [store, await store_factory()]
    for n in range(3):
        await store.record_event(event(n))
    results = await asyncio.gather(
        *(
            stores[n % 2].deliver_and_claim(
                bookmark.id, f"tests/{n % 3}", {"by": n}, f"replica-{n % 2}", MINUTE
            )
            for n in range(20)
        )
    )
    assert [r.delivered for r in results].count(True) == 1
    [winner] = [r for r in results if r.delivered]
    assert winner.claimed is not None
    stored = await store.get_instance(waiting.id)
    assert stored.lease_owner == winner.claimed.lease_owner
    assert stored.fencing_token == waiting.fencing_token + 1
    assert len(await store.list_bookmarks(waiting.id, consumed=True)) == 1


async def test_one_event_to_many_instances_each_claimed_once(store: Store, store_factory, make) -> None:
    stores = [store, await store_factory()]
    waiting = [await make.suspended_on(store) for _ in range(10)]
    await store.record_event(event(1))
    results = await asyncio.gather(
        *(
            stores[n % 2].deliver_and_claim(b.id, "tests/1", {"n": n}, f"replica-{n % 2}", MINUTE)
            for n, (_, b) in enumerate(waiting)
        )
    )
    assert all(r.delivered and r.claimed is not None for r in results)
    assert sorted(r.claimed.id for r in results if r.claimed) == sorted(i.id for i, _ in waiting)
    assert await store.claim_instances("w2", MINUTE, 100) == []  # all leased
