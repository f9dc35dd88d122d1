"""Retention deletes: only old rows of finished instances go, in batches bounded by ``limit``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from flowkeeper.errors import InstanceNotFound
from flowkeeper.records import (
    Checkpoint,
    EventRecord,
    InstanceRecord,
    InstanceStatus,
    LogEntry,
    LogEvent,
    OutboxStatus,
)
from flowkeeper.store import Store
from flowkeeper.store.tables import workflow_event_delivery
from tests.integration.store.conftest import Make

DAY = timedelta(days=1)
TERMINAL = (InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.CANCELLED)


def _log(instance_id: str, at: datetime, count: int = 2) -> tuple[LogEntry, ...]:
    return tuple(
        LogEntry(instance_id, f"/do/{n}/step", "step", "set", LogEvent.COMPLETED, at) for n in range(count)
    )


async def _instance(
    store: Store,
    make: Make,
    status: InstanceStatus,
    at: datetime,
    *,
    log_at: datetime | None = None,
    **kw: Any,
) -> InstanceRecord:
    """An instance created at ``at`` (and completed then if terminal), with two log rows
    (written at ``log_at``, default ``at``), a bookmark, a timer and a delivered outbox row."""
    record = make.instance(
        status=status,
        created_on=at,
        started_on=at,
        completed_on=at if status.is_terminal else None,
        **kw,
    )
    bookmark = make.bookmark(record.id)
    checkpoint = Checkpoint(
        instance_id=record.id,
        expected_row_version=0,
        fencing_token=0,
        lease_owner="tests",
        status=status,
        state=None,
        log=_log(record.id, log_at or at),
        new_bookmarks=(bookmark,),
        new_timers=(make.timer(bookmark, at + DAY),),
        outbox=(make.outbox(record.id, status=OutboxStatus.DELIVERED, created_on=at, delivered_on=at),),
    )
    return await store.create_instance(record, checkpoint)


async def _exists(store: Store, instance_id: str) -> bool:
    try:
        await store.get_instance(instance_id)
    except InstanceNotFound:
        return False
    return True


async def _gone_with_its_rows(store: Store, instance_id: str) -> bool:
    rows = (
        await store.list_bookmarks(instance_id),
        await store.list_timers(instance_id),
        await store.get_log(instance_id),
    )
    return not await _exists(store, instance_id) and rows == ([], [], [])


# -- finished instances -------------------------------------------------------------------


async def test_only_old_terminal_instances_go_with_their_rows(store: Store, make: Make) -> None:
    now = await store.now()
    old, cutoff = now - 10 * DAY, now - DAY
    doomed = [await _instance(store, make, status, old) for status in TERMINAL]
    recent = [await _instance(store, make, status, now) for status in TERMINAL]
    live = [
        await _instance(store, make, status, old)
        for status in (InstanceStatus.PENDING, InstanceStatus.RUNNING, InstanceStatus.SUSPENDED)
    ]

    assert await store.delete_finished_instances(cutoff, limit=100) == len(doomed)

    for instance in doomed:
        assert await _gone_with_its_rows(store, instance.id)
    for instance in recent + live:
        assert await _exists(store, instance.id)
        assert len(await store.get_log(instance.id)) == 2
        assert len(await store.list_bookmarks(instance.id)) == 1
        assert len(await store.list_timers(instance.id)) == 1
    # Outbox rows have their own retention: the instance's delivered rows are still there.
    assert len(await store.list_outbox(OutboxStatus.DELIVERED, limit=100)) == 9
    assert await store.delete_finished_instances(cutoff, limit=100) == 0


async def test_finished_instances_go_in_batches_bounded_by_limit(store: Store, make: Make) -> None:
    now = await store.now()
    created = [await _instance(store, make, InstanceStatus.COMPLETED, now - (10 + n) * DAY) for n in range(5)]

    assert [await store.delete_finished_instances(now - DAY, limit=2) for _ in range(4)] == [2, 2, 1, 0]
    for instance in created:
        assert not await _exists(store, instance.id)


async def test_oldest_finished_instances_go_first(store: Store, make: Make) -> None:
    now = await store.now()
    older = await _instance(store, make, InstanceStatus.COMPLETED, now - 20 * DAY)
    newer = await _instance(store, make, InstanceStatus.COMPLETED, now - 10 * DAY)

    assert await store.delete_finished_instances(now - DAY, limit=1) == 1
    assert not await _exists(store, older.id)
    assert await _exists(store, newer.id)


async def test_a_parent_stays_while_a_child_is_not_terminal(store: Store, make: Make) -> None:
    now = await store.now()
    old = now - 10 * DAY
    parent = await _instance(store, make, InstanceStatus.FAILED, old)
    child = await _instance(store, make, InstanceStatus.SUSPENDED, old, parent_id=parent.id)
    done_parent = await _instance(store, make, InstanceStatus.COMPLETED, old)
    done_child = await _instance(store, make, InstanceStatus.COMPLETED, old, parent_id=done_parent.id)

    assert await store.delete_finished_instances(now - DAY, limit=100) == 2

    assert await _exists(store, parent.id)
    assert await _exists(store, child.id)
    assert await _gone_with_its_rows(store, done_parent.id)
    assert await _gone_with_its_rows(store, done_child.id)

    # Once the child has finished (and is old enough) both go.
    await store.cancel_instance(child.id)
    assert await store.delete_finished_instances(now + DAY, limit=100) == 2
    assert not await _exists(store, parent.id)
    assert not await _exists(store, child.id)


async def test_event_deliveries_go_with_their_instance_and_the_event_stays(store: Store, make: Make) -> None:
    instance, bookmark = await make.suspended_on(store)
    event = {"specversion": "1.0", "id": "1", "source": "tests", "type": "com.example.ping"}
    kept = await store.record_event(EventRecord(key="tests#1", id="1", source="tests", type="x", event=event))
    assert kept is not None
    assert await store.deliver_event(bookmark.id, kept.key, event)
    await store.cancel_instance(instance.id)

    assert await store.delete_finished_instances(await store.now() + DAY, limit=10) == 1

    assert not await _exists(store, instance.id)
    assert [e.key for e in await store.recent_events(await store.now() - DAY)] == ["tests#1"]
    async with store._reading("test") as conn:  # type: ignore[attr-defined]
        count = select(func.count()).select_from(workflow_event_delivery)
        assert (await conn.execute(count)).scalar_one() == 0


# -- execution log ----------------------------------------------------------------------------


async def test_only_old_log_rows_of_terminal_instances_go(store: Store, make: Make) -> None:
    now = await store.now()
    old = now - 10 * DAY
    finished = [await _instance(store, make, s, now, log_at=old) for s in TERMINAL]
    fresh_log = await _instance(store, make, InstanceStatus.COMPLETED, now)
    live = [
        await _instance(store, make, s, old)
        for s in (InstanceStatus.PENDING, InstanceStatus.RUNNING, InstanceStatus.SUSPENDED)
    ]

    assert await store.delete_log_entries(now - DAY, limit=100) == 2 * len(finished)

    for instance in finished:
        assert await store.get_log(instance.id) == []
        assert await _exists(store, instance.id)  # the instance itself is younger than the cutoff
    assert len(await store.get_log(fresh_log.id)) == 2
    for instance in live:
        assert len(await store.get_log(instance.id)) == 2


async def test_log_rows_go_in_batches_bounded_by_limit(store: Store, make: Make) -> None:
    now = await store.now()
    instance = await _instance(store, make, InstanceStatus.COMPLETED, now)
    await _instance(store, make, InstanceStatus.COMPLETED, now, log_at=now - 10 * DAY)
    await _instance(store, make, InstanceStatus.FAILED, now, log_at=now - 10 * DAY)
    await _instance(store, make, InstanceStatus.CANCELLED, now, log_at=now - 10 * DAY)

    assert [await store.delete_log_entries(now - DAY, limit=4) for _ in range(3)] == [4, 2, 0]
    assert len(await store.get_log(instance.id)) == 2


# -- outbox -----------------------------------------------------------------------------------


async def _outbox(store: Store, make: Make, status: OutboxStatus, at: datetime, **kw: Any) -> None:
    instance = await make.claimed(store)
    row = make.outbox(instance.id, status=status, created_on=at, **kw)
    await store.checkpoint(make.checkpoint(instance, outbox=(row,)))


async def test_only_old_delivered_outbox_rows_go(store: Store, make: Make) -> None:
    now = await store.now()
    old = now - 10 * DAY
    for _ in range(3):
        await _outbox(store, make, OutboxStatus.DELIVERED, old, delivered_on=old)
    await _outbox(store, make, OutboxStatus.DELIVERED, now, delivered_on=now)
    # Created long ago but delivered only now (retried for days): kept from its delivery.
    await _outbox(store, make, OutboxStatus.DELIVERED, old, delivered_on=now)
    for status in (OutboxStatus.PENDING, OutboxStatus.PROCESSING, OutboxStatus.DEAD):
        await _outbox(store, make, status, old)

    assert [await store.delete_delivered_outbox(now - DAY, limit=2) for _ in range(3)] == [2, 1, 0]

    left = await store.list_outbox(limit=100)
    assert sorted(r.status.value for r in left) == ["dead", "delivered", "delivered", "pending", "processing"]
    assert all(r.delivered_on == now for r in left if r.status is OutboxStatus.DELIVERED)


async def test_a_limit_below_one_deletes_nothing(store: Store, make: Make) -> None:
    now = await store.now()
    await _instance(store, make, InstanceStatus.COMPLETED, now - 10 * DAY)
    assert await store.delete_finished_instances(now, limit=0) == 0
    assert await store.delete_log_entries(now, limit=0) == 0
    assert await store.delete_delivered_outbox(now, limit=0) == 0
