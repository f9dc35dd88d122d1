"""Checkpoints: atomic, guarded by version + fencing token + owner, log numbering, wake-ups."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from flowkeeper.errors import ConcurrencyConflict, InstanceNotFound
from flowkeeper.records import BookmarkKind, BookmarkResume, InstanceStatus, OutboxStatus
from flowkeeper.store import Store

MINUTE = timedelta(minutes=1)


async def test_checkpoint_updates_the_instance(store: Store, make) -> None:
    instance = await make.claimed(store)
    started = await store.now()
    first = await store.checkpoint(
        make.checkpoint(instance, state={"frames": [1]}, current_activity_id="/do/0", started_on=started)
    )
    assert first.row_version == instance.row_version + 1
    assert first.state == {"frames": [1]}
    assert first.current_activity_id == "/do/0"
    assert first.started_on == started
    assert first.lease_owner == instance.lease_owner  # kept: release_lease not set
    assert first.updated_on is not None
    assert instance.updated_on is not None
    assert first.updated_on >= instance.updated_on
    done = await store.checkpoint(
        make.checkpoint(
            first,
            status=InstanceStatus.COMPLETED,
            output={"greeting": "hi"},
            completed_on=await store.now(),
            release_lease=True,
        )
    )
    assert done.status is InstanceStatus.COMPLETED
    assert done.output == {"greeting": "hi"}
    assert done.started_on == started  # not given again, kept
    assert done.completed_on is not None
    assert done.lease_owner is None
    assert done.lease_expires_at is None
    assert done.fencing_token == instance.fencing_token
    assert await store.get_instance(instance.id) == done


async def test_failed_instance_keeps_its_error(store: Store, make) -> None:
    instance = await make.claimed(store)
    error = {"type": "https://serverlessworkflow.io/spec/1.0.0/errors/communication", "status": 503}
    failed = await store.checkpoint(make.checkpoint(instance, status=InstanceStatus.FAILED, error=error))
    assert failed.error == error
    assert (await store.get_instance(instance.id)).error == error


@pytest.mark.parametrize("extra", ["log only", "with outbox"])
async def test_log_rows_are_numbered_per_instance(store: Store, make, extra: str) -> None:
    # "log only" takes the single-statement path, "with outbox" the transaction.
    instance = await make.claimed(store)
    other = await make.claimed(store)

    def cp(target, *refs: str):
        outbox = (make.outbox(target.id),) if extra == "with outbox" else ()
        return make.checkpoint(target, log=make.log(target.id, *refs), outbox=outbox)

    instance = await store.checkpoint(cp(instance, "/do/0", "/do/1"))
    await store.checkpoint(cp(other, "/x"))
    instance = await store.checkpoint(cp(instance))  # no log rows: numbering unaffected
    instance = await store.checkpoint(cp(instance, "/do/2", "/do/3", "/do/4"))
    log = await store.get_log(instance.id)
    assert [(e.seq, e.reference) for e in log] == [
        (1, "/do/0"),
        (2, "/do/1"),
        (3, "/do/2"),
        (4, "/do/3"),
        (5, "/do/4"),
    ]
    assert log[0].detail == {"ref": "/do/0"}
    assert log[0].task_type == "set"
    assert log[0].at.tzinfo is not None
    assert [e.seq for e in await store.get_log(other.id)] == [1]


async def test_a_first_checkpoint_log_continues_in_later_checkpoints(store: Store, make) -> None:
    expires = await store.now() + MINUTE
    record = make.instance(status=InstanceStatus.RUNNING, lease_owner="w1", lease_expires_at=expires)
    created = await store.create_instance(
        record, make.checkpoint(record, log=make.log(record.id, "/a", "/b"))
    )
    await store.checkpoint(make.checkpoint(created, log=make.log(record.id, "/c")))
    assert [e.seq for e in await store.get_log(record.id)] == [1, 2, 3]


@pytest.mark.parametrize("path", ["log only", "everything"])
async def test_a_conflicting_checkpoint_writes_nothing(store: Store, make, path: str) -> None:
    instance = await make.claimed(store)
    waiting, parent_bookmark = await make.suspended_on(store)
    bookmark = make.bookmark(instance.id)
    kwargs = {}
    if path == "everything":
        kwargs = {
            "new_bookmarks": (bookmark,),
            "new_timers": (make.timer(bookmark, await store.now()),),
            "outbox": (make.outbox(instance.id),),
            "new_instances": (make.instance(id="child-1", parent_id=instance.id),),
            "resume_bookmarks": (BookmarkResume(parent_bookmark.id, {"done": True}),),
        }
    stale = make.checkpoint(
        instance,
        expected_row_version=instance.row_version + 5,
        status=InstanceStatus.COMPLETED,
        output={"nope": 1},
        log=make.log(instance.id, "/do/0"),
        release_lease=True,
        **kwargs,
    )
    with pytest.raises(ConcurrencyConflict, match="row_version"):
        await store.checkpoint(stale)
    assert await store.get_instance(instance.id) == instance
    assert await store.get_log(instance.id) == []
    assert await store.list_bookmarks(instance.id) == []
    assert await store.list_timers(instance.id) == []
    assert await store.list_outbox() == []
    with pytest.raises(InstanceNotFound):
        await store.get_instance("child-1")
    assert [b.is_consumed for b in await store.list_bookmarks(waiting.id)] == [False]
    assert (await store.get_instance(waiting.id)).status is InstanceStatus.SUSPENDED


async def test_a_stale_writer_is_rejected_after_another_claim(store: Store, make) -> None:
    await store.create_instance(make.instance())
    [old] = await store.claim_instances("w1", timedelta(seconds=-1), 1)
    [new] = await store.claim_instances("w2", MINUTE, 1)
    with pytest.raises(ConcurrencyConflict):
        await store.checkpoint(make.checkpoint(old, log=make.log(old.id, "/late")))
    # The same version but the old token or owner is still refused.
    with pytest.raises(ConcurrencyConflict):
        await store.checkpoint(make.checkpoint(new, fencing_token=old.fencing_token))
    with pytest.raises(ConcurrencyConflict):
        await store.checkpoint(make.checkpoint(new, lease_owner="w1"))
    written = await store.checkpoint(make.checkpoint(new, log=make.log(new.id, "/current")))
    assert written.row_version == new.row_version + 1
    assert [e.reference for e in await store.get_log(new.id)] == ["/current"]


async def test_two_writers_from_one_version_one_wins(store: Store, make) -> None:
    instance = await make.claimed(store)
    results = await asyncio.gather(
        *(store.checkpoint(make.checkpoint(instance, log=make.log(instance.id, f"/w{n}"))) for n in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, ConcurrencyConflict) for r in results if isinstance(r, BaseException))
    assert len(await store.get_log(instance.id)) == 1


async def test_checkpoint_of_an_unknown_instance_is_a_conflict(store: Store, make) -> None:
    ghost = make.instance(lease_owner="w1", row_version=1, fencing_token=1)
    with pytest.raises(ConcurrencyConflict, match="no longer exists"):
        await store.checkpoint(make.checkpoint(ghost))


async def test_bookmarks_and_timers_are_added_applied_and_cancelled(store: Store, make) -> None:
    instance = await make.claimed(store)
    keep, drop, applied = (make.bookmark(instance.id, kind=BookmarkKind.TIMER) for _ in range(3))
    due = await store.now() + timedelta(hours=1)
    keep_timer, drop_timer = make.timer(keep, due), make.timer(drop, due + MINUTE)
    instance = await store.checkpoint(
        make.checkpoint(
            instance,
            new_bookmarks=(keep, drop, replace(applied, is_consumed=True, payload={"x": 1})),
            new_timers=(keep_timer, drop_timer),
        )
    )
    assert {b.id for b in await store.list_bookmarks(instance.id)} == {keep.id, drop.id, applied.id}
    consumed = await store.list_bookmarks(instance.id, consumed=True)
    assert [(b.id, b.payload) for b in consumed] == [(applied.id, {"x": 1})]
    assert consumed[0].consumed_on is not None
    await store.checkpoint(
        make.checkpoint(
            instance,
            applied_bookmarks=(applied.id,),
            cancelled_bookmarks=(drop.id,),
            cancelled_timers=(drop_timer.id,),
        )
    )
    assert [b.id for b in await store.list_bookmarks(instance.id)] == [keep.id]
    assert [t.id for t in await store.list_timers(instance.id)] == [keep_timer.id]


async def test_new_child_instances_are_created(store: Store, make) -> None:
    parent = await make.claimed(store)
    expires = await store.now() + MINUTE
    child = make.instance(parent_id=parent.id, parent_bookmark_id="b-1")
    claimed_child = make.instance(parent_id=parent.id, lease_owner="w1", lease_expires_at=expires)
    await store.checkpoint(make.checkpoint(parent, new_instances=(child, claimed_child)))
    stored = await store.get_instance(child.id)
    assert stored.parent_id == parent.id
    assert stored.parent_bookmark_id == "b-1"
    assert stored.row_version == 1
    assert (await store.get_instance(claimed_child.id)).fencing_token == 1


async def test_outbox_rows_written_by_a_checkpoint(store: Store, make) -> None:
    instance = await make.claimed(store)
    first, second = (
        make.outbox(instance.id),
        make.outbox(instance.id, status=OutboxStatus.DEAD, last_error="x"),
    )
    await store.checkpoint(make.checkpoint(instance, outbox=(first, second)))
    rows = await store.list_outbox()
    assert {r.id for r in rows} == {first.id, second.id}
    pending = await store.list_outbox(OutboxStatus.PENDING)
    assert [r.id for r in pending] == [first.id]
    assert pending[0].event == first.event
    assert pending[0].attempts == 0
    assert pending[0].next_attempt_at is not None  # deliver as soon as possible
    assert pending[0].created_on is not None
    assert [r.last_error for r in await store.list_outbox(OutboxStatus.DEAD)] == ["x"]
    assert len(await store.list_outbox(limit=1)) == 1


async def test_resume_bookmarks_wakes_another_instance(store: Store, make) -> None:
    parent, bookmark = await make.suspended_on(store, BookmarkKind.CHILD)
    child = await make.claimed(store, parent_id=parent.id, parent_bookmark_id=bookmark.id)
    await store.checkpoint(
        make.checkpoint(
            child,
            status=InstanceStatus.COMPLETED,
            output={"child": "done"},
            resume_bookmarks=(BookmarkResume(bookmark.id, {"output": {"child": "done"}}),),
            release_lease=True,
        )
    )
    [resumed] = await store.list_bookmarks(parent.id)
    assert resumed.is_consumed
    assert resumed.payload == {"output": {"child": "done"}}
    assert (await store.get_instance(parent.id)).status is InstanceStatus.RUNNING
    # Already consumed: a second resume changes nothing.
    other = await make.claimed(store)
    await store.checkpoint(make.checkpoint(other, resume_bookmarks=(BookmarkResume(bookmark.id, "late"),)))
    assert (await store.list_bookmarks(parent.id))[0].payload == {"output": {"child": "done"}}


async def test_resume_bookmarks_consumes_exactly_once_under_concurrency(
    store: Store, store_factory, make
) -> None:
    waiting, bookmark = await make.suspended_on(store)
    other = await store_factory()
    writers = [await make.claimed(store) for _ in range(6)]

    async def via_checkpoint(n: int) -> None:
        resume = (BookmarkResume(bookmark.id, {"by": f"checkpoint-{n}"}),)
        s = store if n % 2 else other
        await s.checkpoint(make.checkpoint(writers[n], resume_bookmarks=resume))

    async def via_event(n: int) -> bool:
        return await (other if n % 2 else store).resume_bookmark(bookmark.id, {"by": f"event-{n}"})

    results = await asyncio.gather(*(via_checkpoint(n) for n in range(6)), *(via_event(n) for n in range(6)))
    event_wins = [n for n, won in enumerate(results[6:]) if won]
    [stored] = await store.list_bookmarks(waiting.id)
    assert stored.is_consumed
    if event_wins:
        assert len(event_wins) == 1
        assert stored.payload == {"by": f"event-{event_wins[0]}"}
    else:
        assert stored.payload["by"].startswith("checkpoint-")
    assert (await store.get_instance(waiting.id)).status is InstanceStatus.RUNNING


async def test_suspending_with_a_bookmark_created_consumed_stays_running(store: Store, make) -> None:
    instance = await make.claimed(store)
    early = replace(make.bookmark(instance.id), is_consumed=True, payload={"event": 1})
    stored = await store.checkpoint(
        make.checkpoint(instance, status=InstanceStatus.SUSPENDED, new_bookmarks=(early,), release_lease=True)
    )
    assert stored.status is InstanceStatus.RUNNING
    assert (await store.get_instance(instance.id)).status is InstanceStatus.RUNNING
    # Runnable and unleased: a worker picks it up to apply the payload.
    assert [i.id for i in await store.claim_instances("w2", MINUTE, 10)] == [instance.id]


async def test_suspending_after_an_event_arrived_mid_run_stays_running(store: Store, make) -> None:
    instance = await make.claimed(store)
    bookmark = make.bookmark(instance.id)
    instance = await store.checkpoint(make.checkpoint(instance, new_bookmarks=(bookmark,)))
    # The event arrives while the worker still runs the instance (status running).
    assert await store.resume_bookmark(bookmark.id, {"event": 1})
    assert (await store.get_instance(instance.id)).status is InstanceStatus.RUNNING
    stored = await store.checkpoint(
        make.checkpoint(instance, status=InstanceStatus.SUSPENDED, release_lease=True)
    )
    assert stored.status is InstanceStatus.RUNNING


async def test_suspending_while_resuming_its_own_bookmark_stays_running(store: Store, make) -> None:
    instance = await make.claimed(store)
    bookmark = make.bookmark(instance.id, kind=BookmarkKind.MANUAL)
    instance = await store.checkpoint(make.checkpoint(instance, new_bookmarks=(bookmark,)))
    stored = await store.checkpoint(
        make.checkpoint(
            instance,
            status=InstanceStatus.SUSPENDED,
            resume_bookmarks=(BookmarkResume(bookmark.id, {"resume": True}),),
            release_lease=True,
        )
    )
    assert stored.status is InstanceStatus.RUNNING
    assert (await store.get_instance(instance.id)).status is InstanceStatus.RUNNING


async def test_suspending_on_unconsumed_bookmarks_stays_suspended(store: Store, make) -> None:
    instance = await make.claimed(store)
    old = replace(make.bookmark(instance.id), is_consumed=True, payload={"e": 1})
    instance = await store.checkpoint(make.checkpoint(instance, new_bookmarks=(old,)))
    # The consumed bookmark is applied (deleted) in this checkpoint: it no longer counts.
    waiting = make.bookmark(instance.id)
    stored = await store.checkpoint(
        make.checkpoint(
            instance,
            status=InstanceStatus.SUSPENDED,
            applied_bookmarks=(old.id,),
            new_bookmarks=(waiting,),
            release_lease=True,
        )
    )
    assert stored.status is InstanceStatus.SUSPENDED
    assert await store.claim_instances("w2", MINUTE, 10) == []


async def test_suspend_racing_an_event_never_strands_the_instance(store: Store, store_factory, make) -> None:
    # The worker's suspending checkpoint and the event's resume run concurrently (on
    # two pools); whatever the interleaving, the consumed bookmark must leave the
    # instance runnable, never "suspended" with nothing left to wait for.
    other = await store_factory()
    for _ in range(15):
        instance = await make.claimed(store)
        bookmark = make.bookmark(instance.id)
        instance = await store.checkpoint(make.checkpoint(instance, new_bookmarks=(bookmark,)))
        suspend = make.checkpoint(instance, status=InstanceStatus.SUSPENDED, release_lease=True)
        _, resumed = await asyncio.gather(
            store.checkpoint(suspend), other.resume_bookmark(bookmark.id, {"e": 1})
        )
        assert resumed
        assert (await store.get_instance(instance.id)).status is InstanceStatus.RUNNING


async def test_deleting_an_instance_cascades_to_its_rows(store: Store, make) -> None:
    from sqlalchemy import delete

    from flowkeeper.store.tables import workflow_instance

    instance = await make.claimed(store)
    bookmark = make.bookmark(instance.id, kind=BookmarkKind.TIMER)
    await store.checkpoint(
        make.checkpoint(
            instance,
            log=make.log(instance.id, "/a"),
            new_bookmarks=(bookmark,),
            new_timers=(make.timer(bookmark, await store.now()),),
            outbox=(make.outbox(instance.id),),
        )
    )
    # The port has no delete (cleanup will): use the adapter's own write path.
    async with store._transaction("test cleanup") as conn:  # type: ignore[attr-defined]
        await conn.execute(delete(workflow_instance).where(workflow_instance.c.id == instance.id))
    assert await store.get_log(instance.id) == []
    assert await store.list_bookmarks(instance.id) == []
    assert await store.list_timers(instance.id) == []
    assert len(await store.list_outbox()) == 1  # outbox rows have their own retention
