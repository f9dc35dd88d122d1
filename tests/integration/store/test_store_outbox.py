"""The outbox processor's store methods: claims, settling, reclaiming, re-queueing, listing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from flowkeeper.errors import InvalidTransition, OutboxEventNotFound
from flowkeeper.records import OutboxRecord, OutboxStatus
from flowkeeper.store import Store
from tests.conftest import StoreFactory
from tests.integration.store.conftest import Make

CLAIM = timedelta(minutes=1)
#: The longest a test waits for something that should happen (a guard, not a measurement).
GUARD = 30.0


async def emitted(store: Store, make: Make, count: int, **kw: object) -> list[OutboxRecord]:
    """``count`` outbox rows written by one checkpoint, as ``emit`` writes them."""
    instance = await make.claimed(store)
    now = await store.now()
    records = tuple(make.outbox(instance.id, next_attempt_at=now, **kw) for _ in range(count))
    await store.checkpoint(make.checkpoint(instance, outbox=records))
    return list(records)


async def claim_when_due(store: Store, owner: str) -> list[OutboxRecord]:
    """Claim as soon as something is due (nothing signals the database clock passing a time)."""
    async with asyncio.timeout(GUARD):
        while True:
            taken = await store.claim_outbox(owner, 10, CLAIM)
            if taken:
                return taken
            await asyncio.sleep(0.01)


async def test_emitted_rows_start_pending_with_no_progress(store: Store, make: Make) -> None:
    [record] = await emitted(store, make, 1)
    stored = await store.get_outbox(record.id)
    assert stored.status is OutboxStatus.PENDING
    assert stored.attempts == 0
    assert stored.delivered_to == ()
    assert stored.claimed_by is None
    assert stored.event == record.event


async def test_claim_takes_due_rows_oldest_first_up_to_the_limit(store: Store, make: Make) -> None:
    records = await emitted(store, make, 3)
    later = await emitted(store, make, 1)
    first = await store.claim_outbox("p1", 2, CLAIM)
    assert len(first) == 2
    assert {r.id for r in first} <= {r.id for r in records}
    for claimed in first:
        assert claimed.status is OutboxStatus.PROCESSING
        assert claimed.claimed_by == "p1"
        assert claimed.next_attempt_at is not None
        assert claimed.next_attempt_at > await store.now()
    rest = await store.claim_outbox("p1", 10, CLAIM)
    assert {r.id for r in rest} == {r.id for r in records + later} - {r.id for r in first}
    assert await store.claim_outbox("p1", 10, CLAIM) == []
    assert await store.claim_outbox("p1", 0, CLAIM) == []


async def test_rows_due_later_are_not_claimed(store: Store, make: Make) -> None:
    instance = await make.claimed(store)
    later = make.outbox(instance.id, next_attempt_at=await store.now() + timedelta(hours=1))
    await store.checkpoint(make.checkpoint(instance, outbox=(later,)))
    assert await store.claim_outbox("p1", 10, CLAIM) == []


async def test_two_stores_claiming_concurrently_never_share_a_row(
    store: Store, store_factory: StoreFactory, make: Make
) -> None:
    records = await emitted(store, make, 60)
    other = await store_factory()

    async def drain(claimer: Store, owner: str) -> list[str]:
        taken: list[str] = []
        while batch := await claimer.claim_outbox(owner, 7, CLAIM):
            taken.extend(r.id for r in batch)
        return taken

    first, second = await asyncio.gather(drain(store, "p1"), drain(other, "p2"))
    assert sorted(first + second) == sorted(r.id for r in records)
    assert not set(first) & set(second)


async def test_an_expired_claim_is_reclaimed_by_another_processor(store: Store, make: Make) -> None:
    [record] = await emitted(store, make, 1)
    [crashed] = await store.claim_outbox("crashed", 10, timedelta(milliseconds=1))
    assert crashed.id == record.id
    taken = await claim_when_due(store, "p2")
    assert [r.id for r in taken] == [record.id]
    assert taken[0].claimed_by == "p2"
    # The crashed processor's late outcome is refused: the row is not its own any more.
    assert not await store.complete_outbox(record.id, "crashed", ["webhook"])
    assert await store.complete_outbox(record.id, "p2", ["webhook"])


async def test_a_live_claim_is_not_reclaimed(store: Store, make: Make) -> None:
    await emitted(store, make, 1)
    assert len(await store.claim_outbox("p1", 10, CLAIM)) == 1
    assert await store.claim_outbox("p2", 10, CLAIM) == []


async def test_complete_records_the_sinks_and_the_time(store: Store, make: Make) -> None:
    [record] = await emitted(store, make, 1)
    await store.claim_outbox("p1", 10, CLAIM)
    assert not await store.complete_outbox(record.id, "someone-else", ["a"])
    assert await store.complete_outbox(record.id, "p1", ["a", "b"])
    done = await store.get_outbox(record.id)
    assert done.status is OutboxStatus.DELIVERED
    assert done.delivered_to == ("a", "b")
    assert done.attempts == 1
    assert done.delivered_on is not None
    assert done.next_attempt_at is None
    # Settled once: a second outcome changes nothing.
    assert not await store.complete_outbox(record.id, "p1", ["a"])
    assert await store.claim_outbox("p1", 10, CLAIM) == []


async def test_complete_many_in_one_call(store: Store, make: Make) -> None:
    records = await emitted(store, make, 5)
    claimed = await store.claim_outbox("p1", 10, CLAIM)
    stranger = await emitted(store, make, 1)
    outcome = {r.id: ["a"] for r in claimed[:3]} | {r.id: [] for r in claimed[3:]}
    outcome[stranger[0].id] = ["a"]  # not claimed: left alone
    assert await store.complete_outbox_many("p1", outcome) == {r.id for r in records}
    assert (await store.get_outbox(claimed[0].id)).delivered_to == ("a",)
    assert (await store.get_outbox(claimed[4].id)).delivered_to == ()
    assert (await store.get_outbox(stranger[0].id)).status is OutboxStatus.PENDING
    assert await store.complete_outbox_many("p1", {}) == set()


async def test_retry_keeps_progress_and_is_due_later(store: Store, make: Make) -> None:
    [record] = await emitted(store, make, 1)
    await store.claim_outbox("p1", 10, CLAIM)
    assert await store.retry_outbox(record.id, "p1", ["a"], "b: HTTP 500", timedelta(hours=1))
    retried = await store.get_outbox(record.id)
    assert retried.status is OutboxStatus.PENDING
    assert retried.attempts == 1
    assert retried.delivered_to == ("a",)
    assert retried.last_error == "b: HTTP 500"
    assert retried.next_attempt_at is not None
    assert retried.next_attempt_at > await store.now() + timedelta(minutes=59)
    assert await store.claim_outbox("p1", 10, CLAIM) == []

    assert await store.retry_outbox(record.id, "p1", ["a"], "x", timedelta(0)) is False  # not claimed


async def test_retry_due_now_is_claimed_again(store: Store, make: Make) -> None:
    [record] = await emitted(store, make, 1)
    await store.claim_outbox("p1", 10, CLAIM)
    assert await store.retry_outbox(record.id, "p1", [], "boom", timedelta(0))
    [again] = await store.claim_outbox("p1", 10, CLAIM)
    assert again.id == record.id
    assert again.attempts == 1


async def test_dead_letter_then_requeue(store: Store, make: Make) -> None:
    [record] = await emitted(store, make, 1)
    await store.claim_outbox("p1", 10, CLAIM)
    assert not await store.dead_letter_outbox(record.id, "p2", ["a"], "nope")
    assert await store.dead_letter_outbox(record.id, "p1", ["a"], "b: HTTP 500")
    dead = await store.get_outbox(record.id)
    assert dead.status is OutboxStatus.DEAD
    assert dead.last_error == "b: HTTP 500"
    assert dead.attempts == 1
    assert await store.claim_outbox("p1", 10, CLAIM) == []
    assert (await store.count_outbox())[OutboxStatus.DEAD] == 1

    requeued = await store.requeue_outbox(record.id)
    assert requeued.status is OutboxStatus.PENDING
    assert requeued.attempts == 0
    assert requeued.delivered_to == ("a",)
    assert requeued.claimed_by is None
    [again] = await store.claim_outbox("p1", 10, CLAIM)
    assert again.id == record.id
    assert again.event["id"] == record.event["id"]


async def test_requeue_refuses_rows_that_are_not_dead_or_do_not_exist(store: Store, make: Make) -> None:
    [record] = await emitted(store, make, 1)
    with pytest.raises(InvalidTransition, match="pending, not dead"):
        await store.requeue_outbox(record.id)
    with pytest.raises(OutboxEventNotFound):
        await store.requeue_outbox("no-such-row")
    with pytest.raises(OutboxEventNotFound):
        await store.get_outbox("no-such-row")


async def test_count_outbox_per_undelivered_status(store: Store, make: Make) -> None:
    assert await store.count_outbox() == {
        OutboxStatus.PENDING: 0,
        OutboxStatus.PROCESSING: 0,
        OutboxStatus.DEAD: 0,
    }
    records = await emitted(store, make, 4)
    claimed = await store.claim_outbox("p1", 3, CLAIM)
    await store.complete_outbox(claimed[0].id, "p1", [])
    await store.dead_letter_outbox(claimed[1].id, "p1", [], "x")
    assert len(records) == 4
    assert await store.count_outbox() == {
        OutboxStatus.PENDING: 1,
        OutboxStatus.PROCESSING: 1,
        OutboxStatus.DEAD: 1,
    }


async def test_page_outbox_oldest_first_by_status_with_a_cursor(store: Store, make: Make) -> None:
    records = await emitted(store, make, 5)
    [claimed] = await store.claim_outbox("p1", 1, CLAIM)
    await store.dead_letter_outbox(claimed.id, "p1", [], "x")

    seen: list[str] = []
    cursor = None
    while True:
        items, cursor = await store.page_outbox(limit=2, cursor=cursor)
        seen.extend(r.id for r in items)
        if cursor is None:
            break
    expected = sorted(await store.list_outbox(limit=100), key=lambda r: (r.created_on, r.id))
    assert seen == [r.id for r in expected]
    assert sorted(seen) == sorted(r.id for r in records)

    dead, more = await store.page_outbox(status=OutboxStatus.DEAD)
    assert [r.id for r in dead] == [claimed.id]
    assert more is None
    with pytest.raises(ValueError, match="cursor"):
        await store.page_outbox(cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        await store.page_outbox(limit=0)
