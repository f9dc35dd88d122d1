"""Instance control: cancel (recursive), manual suspend/resume, retry, status counts.

A manual suspension is an unconsumed ``manual`` bookmark: while it is there, nothing
that consumes bookmarks (events, timers, other instances' checkpoints, deliveries)
makes the instance runnable, and no claim returns it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from flowkeeper.errors import ConcurrencyConflict, InstanceNotFound, InvalidTransition
from flowkeeper.records import (
    BookmarkKind,
    BookmarkResume,
    EventRecord,
    InstanceRecord,
    InstanceStatus,
    LogEvent,
)
from flowkeeper.store import Store

MINUTE = timedelta(minutes=1)
ROUNDS = 10  # interleavings tried by the race tests


async def _runnable(store: Store) -> set[str]:
    """Ids a worker could claim right now (claims them, with an expired lease, so the
    instances stay claimable for the next look)."""
    return {i.id for i in await store.claim_instances("probe", timedelta(seconds=-1), 100)}


async def _child_of(store: Store, make, parent: InstanceRecord, **kw) -> tuple[InstanceRecord, str]:
    """A claimed child the parent waits for (the parent suspended on a ``child`` bookmark)."""
    bookmark = make.bookmark(parent.id, kind=BookmarkKind.CHILD, event_type=None, filter=None)
    await store.checkpoint(
        make.checkpoint(
            parent, status=InstanceStatus.SUSPENDED, new_bookmarks=(bookmark,), release_lease=True
        )
    )
    child = await make.claimed(store, parent_id=parent.id, parent_bookmark_id=bookmark.id, **kw)
    return child, bookmark.id


# -- cancel ----------------------------------------------------------------------------------


async def test_cancel_stops_the_instance_and_fences_its_worker(store: Store, make) -> None:
    running = await make.claimed(store)
    bookmark = make.bookmark(running.id, kind=BookmarkKind.TIMER)
    running = await store.checkpoint(
        make.checkpoint(
            running,
            log=make.log(running.id, "/a"),
            new_bookmarks=(bookmark,),
            new_timers=(make.timer(bookmark, await store.now() + MINUTE),),
        )
    )
    cancelled = await store.cancel_instance(running.id, reason="operator said so")
    assert cancelled.status is InstanceStatus.CANCELLED
    assert cancelled.completed_on is not None
    assert cancelled.lease_owner is None
    assert cancelled.lease_expires_at is None
    assert cancelled.fencing_token == running.fencing_token + 1
    assert cancelled.row_version == running.row_version + 1
    assert await store.get_instance(running.id) == cancelled
    assert await store.list_bookmarks(running.id) == []
    assert await store.list_timers(running.id) == []
    log = await store.get_log(running.id)
    assert [(e.seq, e.reference, e.event) for e in log] == [
        (1, "/a", LogEvent.COMPLETED),
        (2, "/", LogEvent.CANCELLED),
    ]
    assert log[-1].detail == {"reason": "operator said so"}
    assert log[-1].task_type == "workflow"
    # The worker still running it can neither write nor keep its lease.
    with pytest.raises(ConcurrencyConflict):
        await store.checkpoint(make.checkpoint(running, log=make.log(running.id, "/b")))
    assert not await store.renew_lease(running.id, running.lease_owner, running.fencing_token, MINUTE)
    assert await _runnable(store) == set()


async def test_cancel_unknown_or_finished_instances(store: Store, make) -> None:
    with pytest.raises(InstanceNotFound):
        await store.cancel_instance("no-such-instance")
    for status in (InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.CANCELLED):
        done = await store.create_instance(make.instance(status=status))
        with pytest.raises(InvalidTransition):
            await store.cancel_instance(done.id)
        assert await store.get_instance(done.id) == done
    pending = await store.create_instance(make.instance())
    await store.cancel_instance(pending.id)
    with pytest.raises(InvalidTransition, match="cancelled"):
        await store.cancel_instance(pending.id)
    assert [e.event for e in await store.get_log(pending.id)] == [LogEvent.CANCELLED]


async def test_cancel_cascades_to_every_unfinished_descendant(store: Store, make) -> None:
    root = await make.claimed(store)
    child, _ = await _child_of(store, make, root)
    grandchild = await make.claimed(store, parent_id=child.id)
    finished = await store.create_instance(make.instance(parent_id=root.id, status=InstanceStatus.COMPLETED))
    # Started by a child that has finished since (no one waits for it): still the
    # root's descendant, still cancelled.
    orphan = await store.create_instance(make.instance(parent_id=finished.id))
    waiting = await make.claimed(store, parent_id=grandchild.id)
    await store.checkpoint(
        make.checkpoint(
            waiting,
            status=InstanceStatus.SUSPENDED,
            new_bookmarks=(make.bookmark(waiting.id),),
            release_lease=True,
        )
    )
    unrelated = await make.claimed(store)

    cancelled = await store.cancel_instance(root.id, reason="stop")

    assert cancelled.id == root.id
    for instance in (root, child, grandchild, orphan, waiting):
        stored = await store.get_instance(instance.id)
        assert stored.status is InstanceStatus.CANCELLED, instance
        assert stored.fencing_token == instance.fencing_token + 1
        assert await store.list_bookmarks(instance.id) == []
        [entry] = [e for e in await store.get_log(instance.id) if e.event is LogEvent.CANCELLED]
        assert entry.detail == {"reason": "stop"}
    assert await store.get_instance(finished.id) == finished
    assert (await store.get_instance(unrelated.id)).status is InstanceStatus.RUNNING


async def test_a_cancelled_child_ends_its_parents_wait_with_an_error(store: Store, make) -> None:
    parent = await make.claimed(store)
    child, bookmark_id = await _child_of(store, make, parent)
    await store.cancel_instance(child.id, reason="no longer needed")
    [bookmark] = await store.list_bookmarks(parent.id)
    assert bookmark.id == bookmark_id
    assert bookmark.is_consumed
    error = bookmark.payload["error"]
    assert error["type"] == "https://serverlessworkflow.io/spec/1.0.0/errors/runtime"
    assert error["status"] == 500
    assert error["title"] == "Cancelled"
    assert child.id in error["detail"] and "no longer needed" in error["detail"]
    assert (await store.get_instance(parent.id)).status is InstanceStatus.RUNNING
    assert await _runnable(store) == {parent.id}


async def test_cancelling_a_parent_does_not_resume_its_own_wait(store: Store, make) -> None:
    parent = await make.claimed(store)
    child, _ = await _child_of(store, make, parent)
    await store.cancel_instance(parent.id)
    assert await store.list_bookmarks(parent.id) == []
    assert (await store.get_instance(parent.id)).status is InstanceStatus.CANCELLED
    assert (await store.get_instance(child.id)).status is InstanceStatus.CANCELLED


async def test_cancel_racing_a_finishing_child_never_deadlocks(store: Store, store_factory, make) -> None:
    # The child's last checkpoint locks the child, then its parent (to resume the
    # parent's bookmark); the cancellation must take them in the same order.
    # (Locking the tree by id alone deadlocks in about one round in ten here.)
    other = await store_factory()
    for _ in range(3 * ROUNDS):
        parent = await make.claimed(store)
        child, bookmark_id = await _child_of(store, make, parent)
        finish = make.checkpoint(
            child,
            status=InstanceStatus.COMPLETED,
            output={"done": True},
            resume_bookmarks=(BookmarkResume(bookmark_id, {"output": {"done": True}}),),
            release_lease=True,
        )
        cancelled, finished = await asyncio.gather(
            store.cancel_instance(parent.id), other.checkpoint(finish), return_exceptions=True
        )
        assert isinstance(cancelled, InstanceRecord), cancelled
        assert cancelled.status is InstanceStatus.CANCELLED
        child_now = await store.get_instance(child.id)
        if isinstance(finished, BaseException):
            assert isinstance(finished, ConcurrencyConflict), finished  # fenced by the cancel
            assert child_now.status is InstanceStatus.CANCELLED
        else:
            assert child_now.status is InstanceStatus.COMPLETED


async def test_cancel_racing_a_checkpoint_that_starts_a_child(store: Store, store_factory, make) -> None:
    # Whichever commits first, no child is left running under a cancelled parent.
    other = await store_factory()
    for _ in range(ROUNDS):
        parent = await make.claimed(store)
        spawn = make.checkpoint(parent, new_instances=(make.instance(parent_id=parent.id),))
        cancelled, spawned = await asyncio.gather(
            store.cancel_instance(parent.id), other.checkpoint(spawn), return_exceptions=True
        )
        assert isinstance(cancelled, InstanceRecord), cancelled
        assert isinstance(spawned, InstanceRecord | ConcurrencyConflict), spawned
        children = [i for i in (await store.list_instances(limit=1000)).items if i.parent_id == parent.id]
        assert all(c.status is InstanceStatus.CANCELLED for c in children)
        assert len(children) == (0 if isinstance(spawned, BaseException) else 1)


async def test_concurrent_cancels_of_one_tree(store: Store, store_factory, make) -> None:
    other = await store_factory()
    for _ in range(ROUNDS):
        parent = await make.claimed(store)
        child, _ = await _child_of(store, make, parent)
        results = await asyncio.gather(
            store.cancel_instance(parent.id),
            other.cancel_instance(child.id),
            other.cancel_instance(parent.id),
            store.cancel_instance(child.id),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, InvalidTransition) for e in errors), errors
        # Exactly one cancellation of the parent succeeds (cancelling the child first
        # only ends the parent's wait); at most one of the child.
        assert sum(isinstance(results[n], InstanceRecord) for n in (0, 2)) == 1
        assert sum(isinstance(results[n], InstanceRecord) for n in (1, 3)) <= 1
        for instance in (parent, child):
            assert (await store.get_instance(instance.id)).status is InstanceStatus.CANCELLED


# -- suspend and resume ----------------------------------------------------------------------


async def test_suspend_fences_off_the_worker_holding_the_lease(store: Store, make) -> None:
    running = await make.claimed(store)
    running = await store.checkpoint(make.checkpoint(running, log=make.log(running.id, "/a")))
    suspended = await store.suspend_instance(running.id)
    assert suspended.status is InstanceStatus.SUSPENDED
    assert suspended.lease_owner is None
    assert suspended.fencing_token == running.fencing_token + 1
    assert suspended.row_version == running.row_version + 1
    [hold] = await store.list_bookmarks(running.id)
    assert hold.id == f"{running.id}.manual"
    assert hold.kind is BookmarkKind.MANUAL
    assert not hold.is_consumed
    # The worker's next checkpoint is refused, whatever it writes, and writes nothing.
    bookmark = make.bookmark(running.id)
    for checkpoint in (
        make.checkpoint(running, log=make.log(running.id, "/b")),
        make.checkpoint(running, status=InstanceStatus.COMPLETED, release_lease=True),
        make.checkpoint(running, status=InstanceStatus.SUSPENDED, new_bookmarks=(bookmark,)),
    ):
        with pytest.raises(ConcurrencyConflict, match="fencing token"):
            await store.checkpoint(checkpoint)
    assert not await store.renew_lease(running.id, running.lease_owner, running.fencing_token, MINUTE)
    assert await store.get_instance(running.id) == suspended
    assert [b.id for b in await store.list_bookmarks(running.id)] == [hold.id]
    assert [(e.reference, e.event) for e in await store.get_log(running.id)] == [
        ("/a", LogEvent.COMPLETED),
        ("/", LogEvent.SUSPENDED),
    ]
    assert await _runnable(store) == set()
    assert await store.claim_instance(running.id, running.lease_owner, MINUTE) is None


async def test_suspend_racing_the_workers_checkpoint(store: Store, store_factory, make) -> None:
    other = await store_factory()
    for _ in range(ROUNDS):
        running = await make.claimed(store)
        step = make.checkpoint(running, log=make.log(running.id, "/a"))
        suspended, written = await asyncio.gather(
            store.suspend_instance(running.id), other.checkpoint(step), return_exceptions=True
        )
        assert isinstance(suspended, InstanceRecord), suspended
        assert isinstance(written, InstanceRecord | ConcurrencyConflict), written
        assert (await store.get_instance(running.id)).status is InstanceStatus.SUSPENDED
        # Either way, the worker's token is stale now.
        after = written if isinstance(written, InstanceRecord) else running
        with pytest.raises(ConcurrencyConflict):
            await store.checkpoint(make.checkpoint(after, log=make.log(running.id, "/b")))
    assert await _runnable(store) == set()


async def test_suspend_and_resume_a_runnable_instance(store: Store, make) -> None:
    pending = await store.create_instance(make.instance())
    running = await make.claimed(store)
    for instance in (pending, running):
        await store.suspend_instance(instance.id)
    assert await _runnable(store) == set()
    for instance in (pending, running):
        resumed = await store.resume_instance(instance.id)
        assert resumed.status is InstanceStatus.RUNNING
        assert await store.list_bookmarks(instance.id) == []
        assert [e.event for e in await store.get_log(instance.id)] == [LogEvent.SUSPENDED, LogEvent.RESUMED]
    assert await _runnable(store) == {pending.id, running.id}


async def test_suspend_and_resume_refusals(store: Store, make) -> None:
    with pytest.raises(InstanceNotFound):
        await store.suspend_instance("no-such-instance")
    with pytest.raises(InstanceNotFound):
        await store.resume_instance("no-such-instance")
    done = await store.create_instance(make.instance(status=InstanceStatus.COMPLETED))
    with pytest.raises(InvalidTransition):
        await store.suspend_instance(done.id)
    with pytest.raises(InvalidTransition):
        await store.resume_instance(done.id)
    waiting, _ = await make.suspended_on(store)
    with pytest.raises(InvalidTransition, match="not suspended manually"):
        await store.resume_instance(waiting.id)  # waiting on an event, not held
    held = await store.suspend_instance(waiting.id)
    with pytest.raises(InvalidTransition, match="already suspended"):
        await store.suspend_instance(waiting.id)
    assert await store.get_instance(waiting.id) == held
    await store.resume_instance(waiting.id)
    with pytest.raises(InvalidTransition):
        await store.resume_instance(waiting.id)


async def test_resuming_a_waiting_instance_leaves_it_waiting(store: Store, make) -> None:
    waiting, bookmark = await make.suspended_on(store)
    await store.suspend_instance(waiting.id)
    resumed = await store.resume_instance(waiting.id)
    assert resumed.status is InstanceStatus.SUSPENDED
    assert [b.id for b in await store.list_bookmarks(waiting.id)] == [bookmark.id]
    assert await _runnable(store) == set()
    # Its event still wakes it.
    assert await store.resume_bookmark(bookmark.id, {"e": 1})
    assert await _runnable(store) == {waiting.id}


async def _consume_by_event(store: Store, make, bookmark) -> None:
    assert await store.resume_bookmark(bookmark.id, {"e": 1})


async def _consume_by_delivery(store: Store, make, bookmark) -> None:
    await store.record_event(
        EventRecord(key="k-1", id="1", source="tests", type="com.example.ping", event={})
    )
    assert await store.deliver_event(bookmark.id, "k-1", {"e": 1})


async def _consume_by_another_checkpoint(store: Store, make, bookmark) -> None:
    other = await make.claimed(store)
    await store.checkpoint(make.checkpoint(other, resume_bookmarks=(BookmarkResume(bookmark.id, {"e": 1}),)))
    await store.release_instance(other.id, other.lease_owner, other.fencing_token)
    await store.suspend_instance(other.id)  # not a candidate for the claims below


async def _consume_by_timer(store: Store, make, bookmark) -> None:
    fired = await store.fire_due_timers(10, now=await store.now() + timedelta(days=2))
    assert [t.bookmark_id for t in fired] == [bookmark.id]


@pytest.mark.parametrize(
    "consume",
    [_consume_by_event, _consume_by_delivery, _consume_by_another_checkpoint, _consume_by_timer],
    ids=["resume_bookmark", "deliver_event", "checkpoint", "timer"],
)
async def test_a_manual_suspension_holds_through_every_wake_up(store: Store, make, consume) -> None:
    kind = BookmarkKind.TIMER if consume is _consume_by_timer else BookmarkKind.EVENT
    waiting = await make.claimed(store)
    bookmark = make.bookmark(waiting.id, kind=kind)
    timers = (
        (make.timer(bookmark, await store.now() + timedelta(days=1)),) if kind is BookmarkKind.TIMER else ()
    )
    await store.checkpoint(
        make.checkpoint(
            waiting,
            status=InstanceStatus.SUSPENDED,
            new_bookmarks=(bookmark,),
            new_timers=timers,
            release_lease=True,
        )
    )
    await store.suspend_instance(waiting.id)
    await consume(store, make, bookmark)
    # Consumed, yet held.
    consumed = await store.list_bookmarks(waiting.id, consumed=True)
    assert [b.id for b in consumed] == [bookmark.id]
    assert (await store.get_instance(waiting.id)).status is InstanceStatus.SUSPENDED
    assert await _runnable(store) == set()
    assert await store.claim_instance(waiting.id, "w2", MINUTE) is None
    # Released: the consumed bookmark is work to do.
    assert (await store.resume_instance(waiting.id)).status is InstanceStatus.RUNNING
    assert await _runnable(store) == {waiting.id}


async def test_a_checkpoint_that_suspends_with_a_manual_bookmark_stays_suspended(store: Store, make) -> None:
    # The "suspended with a consumed bookmark means running" rule yields to a manual hold.
    instance = await make.claimed(store)
    event = make.bookmark(instance.id)
    instance = await store.checkpoint(make.checkpoint(instance, new_bookmarks=(event,)))
    early = replace(make.bookmark(instance.id), is_consumed=True, payload={"e": 1})
    hold = make.bookmark(instance.id, kind=BookmarkKind.MANUAL, event_type=None, filter=None)
    stored = await store.checkpoint(
        make.checkpoint(
            instance,
            status=InstanceStatus.SUSPENDED,
            new_bookmarks=(early, hold),
            resume_bookmarks=(BookmarkResume(event.id, {"e": 2}),),
            release_lease=True,
        )
    )
    assert stored.status is InstanceStatus.SUSPENDED
    assert (await store.get_instance(instance.id)).status is InstanceStatus.SUSPENDED
    assert await _runnable(store) == set()
    # Consuming the hold itself releases it.
    assert await store.resume_bookmark(hold.id, {"resume": True})
    assert await _runnable(store) == {instance.id}


async def test_suspend_again_after_the_hold_was_consumed(store: Store, make) -> None:
    running = await make.claimed(store)
    await store.suspend_instance(running.id)
    assert await store.resume_bookmark(f"{running.id}.manual", {"resume": True})
    assert (await store.get_instance(running.id)).status is InstanceStatus.RUNNING
    again = await store.suspend_instance(running.id)
    assert again.status is InstanceStatus.SUSPENDED
    [hold] = await store.list_bookmarks(running.id)
    assert not hold.is_consumed
    assert await _runnable(store) == set()


async def test_concurrent_suspends_one_wins(store: Store, store_factory, make) -> None:
    running = await make.claimed(store)
    stores = [store, await store_factory()]
    results = await asyncio.gather(
        *(stores[n % 2].suspend_instance(running.id) for n in range(6)), return_exceptions=True
    )
    assert sum(isinstance(r, InstanceRecord) for r in results) == 1
    assert all(isinstance(r, InvalidTransition) for r in results if not isinstance(r, InstanceRecord))
    assert [e.event for e in await store.get_log(running.id)] == [LogEvent.SUSPENDED]


# -- retry -----------------------------------------------------------------------------------


async def test_retry_a_failed_instance(store: Store, make) -> None:
    running = await make.claimed(store)
    error = {"type": "https://serverlessworkflow.io/spec/1.0.0/errors/communication", "status": 503}
    failed = await store.checkpoint(
        make.checkpoint(
            running,
            status=InstanceStatus.FAILED,
            error=error,
            completed_on=await store.now(),
            log=make.log(running.id, "/do/0/call", event=LogEvent.FAULTED),
            release_lease=True,
        )
    )
    state = {"frames": [{"reset": True}], "data": {}}
    retried = await store.retry_instance(failed.id, state)
    assert retried.status is InstanceStatus.RUNNING
    assert retried.state == state
    assert retried.error is None
    assert retried.completed_on is None
    assert retried.lease_owner is None
    assert retried.fencing_token == failed.fencing_token + 1
    assert retried.row_version == failed.row_version + 1
    assert [e.event for e in await store.get_log(failed.id)] == [LogEvent.FAULTED, LogEvent.RETRIED]
    assert await _runnable(store) == {failed.id}


async def test_only_a_failed_instance_can_be_retried(store: Store, make) -> None:
    with pytest.raises(InstanceNotFound):
        await store.retry_instance("no-such-instance", None)
    for status in (
        InstanceStatus.PENDING,
        InstanceStatus.RUNNING,
        InstanceStatus.SUSPENDED,
        InstanceStatus.COMPLETED,
        InstanceStatus.CANCELLED,
    ):
        instance = await store.create_instance(make.instance(status=status))
        with pytest.raises(InvalidTransition, match="only a failed instance"):
            await store.retry_instance(instance.id, None)
        assert await store.get_instance(instance.id) == instance


# -- counts ----------------------------------------------------------------------------------


async def test_count_instances_per_status(store: Store, make) -> None:
    assert await store.count_instances() == dict.fromkeys(InstanceStatus, 0)
    for status, n in ((InstanceStatus.PENDING, 3), (InstanceStatus.FAILED, 1), (InstanceStatus.SUSPENDED, 2)):
        for _ in range(n):
            await store.create_instance(make.instance(status=status))
    counts = await store.count_instances()
    assert counts == dict.fromkeys(InstanceStatus, 0) | {
        InstanceStatus.PENDING: 3,
        InstanceStatus.FAILED: 1,
        InstanceStatus.SUSPENDED: 2,
    }
