"""Instances: create (plain, claimed, with a first checkpoint), lookups, listing with cursors."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from flowkeeper.errors import ConcurrencyConflict, InstanceNotFound
from flowkeeper.records import InstanceStatus, LogEvent
from flowkeeper.store import Store


async def test_create_and_get(store: Store, make) -> None:
    record = make.instance(input={"a": [1, 2, {"b": None}]}, parent_id="p-1", parent_bookmark_id="b-1")
    created = await store.create_instance(record)
    assert created.row_version == 1
    assert created.fencing_token == 0
    assert created.lease_owner is None
    assert created.status is InstanceStatus.PENDING
    assert created.input == {"a": [1, 2, {"b": None}]}
    assert created.created_on is not None
    assert created.created_on == created.updated_on
    assert created.created_on.tzinfo is not None
    assert await store.get_instance(record.id) == created


async def test_get_unknown_instance(store: Store) -> None:
    with pytest.raises(InstanceNotFound):
        await store.get_instance("nope")


async def test_create_claimed(store: Store, make) -> None:
    expires = await store.now() + timedelta(minutes=1)
    created = await store.create_instance(
        make.instance(status=InstanceStatus.RUNNING, lease_owner="w1", lease_expires_at=expires)
    )
    assert created.lease_owner == "w1"
    assert created.fencing_token == 1
    assert created.lease_expires_at == expires
    # Held: nobody else can claim it.
    assert await store.claim_instances("w2", timedelta(minutes=1), 10) == []


async def test_create_with_a_first_checkpoint_writes_everything_at_once(store: Store, make) -> None:
    record = make.instance(status=InstanceStatus.SUSPENDED)
    bookmark = make.bookmark(record.id)
    outbox = make.outbox(record.id)
    checkpoint = make.checkpoint(
        make.instance(id=record.id, lease_owner="ignored"),
        log=make.log(record.id, "/do/0/a", "/do/1/b"),
        new_bookmarks=(bookmark,),
        outbox=(outbox,),
    )
    created = await store.create_instance(record, checkpoint)
    assert created.status is InstanceStatus.SUSPENDED
    assert [e.seq for e in await store.get_log(record.id)] == [1, 2]
    assert [b.id for b in await store.list_bookmarks(record.id)] == [bookmark.id]
    assert [o.id for o in await store.list_outbox()] == [outbox.id]


async def test_create_with_a_checkpoint_is_atomic(store: Store, make) -> None:
    existing = await store.create_instance(make.instance())
    record = make.instance()
    clash = make.instance(id=existing.id)  # a child with a taken id fails the whole write
    checkpoint = make.checkpoint(
        make.instance(id=record.id, lease_owner="x"), log=make.log(record.id, "/a"), new_instances=(clash,)
    )
    with pytest.raises(ConcurrencyConflict):
        await store.create_instance(record, checkpoint)
    with pytest.raises(InstanceNotFound):
        await store.get_instance(record.id)


async def test_duplicate_id_or_idempotency_key_is_a_conflict(store: Store, make) -> None:
    first = await store.create_instance(make.instance(idempotency_key="key-1", request_hash="h"))
    with pytest.raises(ConcurrencyConflict):
        await store.create_instance(make.instance(id=first.id))
    with pytest.raises(ConcurrencyConflict):
        await store.create_instance(make.instance(idempotency_key="key-1"))


async def test_duplicate_create_with_log_rows_writes_no_log(store: Store, make) -> None:
    # A log-only first checkpoint is one statement on PostgreSQL: it must fail whole.
    first = await store.create_instance(make.instance())
    again = make.instance(id=first.id)
    with pytest.raises(ConcurrencyConflict):
        await store.create_instance(
            again, make.checkpoint(make.instance(id=first.id, lease_owner="x"), log=make.log(first.id, "/a"))
        )
    assert await store.get_log(first.id) == []


async def test_find_by_idempotency_key(store: Store, make) -> None:
    created = await store.create_instance(make.instance(idempotency_key="key-1", request_hash="abc"))
    await store.create_instance(make.instance())
    found = await store.find_instance_by_idempotency_key("key-1")
    assert found == created
    assert found is not None
    assert found.request_hash == "abc"
    assert await store.find_instance_by_idempotency_key("key-2") is None


async def test_concurrent_creates_with_one_idempotency_key_store_one(store: Store, make) -> None:
    results = await asyncio.gather(
        *(store.create_instance(make.instance(idempotency_key="same")) for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, ConcurrencyConflict) for r in results if isinstance(r, BaseException))


async def test_list_newest_first_with_filters(store: Store, make) -> None:
    a = await store.create_instance(make.instance(name="a"))
    b = await store.create_instance(make.instance(name="b", status=InstanceStatus.COMPLETED))
    c = await store.create_instance(make.instance(name="a", namespace="other"))
    page = await store.list_instances()
    assert [i.id for i in page.items] == [c.id, b.id, a.id]
    assert page.next_cursor is None
    assert [i.id for i in (await store.list_instances(status=InstanceStatus.COMPLETED)).items] == [b.id]
    assert [i.id for i in (await store.list_instances(name="a")).items] == [c.id, a.id]
    assert [i.id for i in (await store.list_instances(namespace="tests", name="a")).items] == [a.id]
    assert b.created_on is not None
    after_b = (await store.list_instances(created_after=b.created_on)).items
    before_b = (await store.list_instances(created_before=b.created_on)).items
    assert [i.id for i in after_b] == [c.id]
    assert [i.id for i in before_b] == [a.id]


async def test_cursor_pages_are_stable_while_inserting(store: Store, make) -> None:
    created = [await store.create_instance(make.instance()) for _ in range(7)]
    newest_first = [i.id for i in reversed(created)]
    first = await store.list_instances(limit=3)
    assert [i.id for i in first.items] == newest_first[:3]
    assert first.next_cursor is not None
    # Newer rows arriving between pages must not shift what the cursor points at.
    for _ in range(3):
        await store.create_instance(make.instance())
    second = await store.list_instances(limit=3, cursor=first.next_cursor)
    assert [i.id for i in second.items] == newest_first[3:6]
    assert second.next_cursor is not None
    third = await store.list_instances(limit=3, cursor=second.next_cursor)
    assert [i.id for i in third.items] == newest_first[6:]
    assert third.next_cursor is None


async def test_cursor_pages_break_ties_on_equal_timestamps(store: Store, make) -> None:
    moment = await store.now()
    ids = sorted(f"i-{n:02d}" for n in range(5))
    for instance_id in ids:
        await store.create_instance(make.instance(id=instance_id, created_on=moment))
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_instances(limit=2, cursor=cursor)
        seen += [i.id for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(ids))


async def test_a_foreign_cursor_is_a_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.list_instances(cursor="not-a-cursor")


async def test_log_entries_of_another_instance_are_refused(store: Store, make) -> None:
    record = make.instance()
    checkpoint = make.checkpoint(
        make.instance(id=record.id, lease_owner="x"), log=make.log("someone-else", "/a")
    )
    with pytest.raises(ValueError, match="log entry"):
        await store.create_instance(record, checkpoint)
    assert LogEvent.COMPLETED  # the builder's default event
