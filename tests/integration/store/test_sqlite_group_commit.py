"""SQLite group commit: queued writes share one transaction, each body isolated.

The batches are made deterministic without any waiting on time: asyncio runs ready
tasks in the order they were scheduled, so writes started together with ``gather`` are
all queued before the flusher (scheduled by the first of them) takes its first batch.
"""

from __future__ import annotations

import asyncio
import contextvars
import shutil
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from flowkeeper.errors import ConcurrencyConflict, StoreError, StoreUnavailable
from flowkeeper.records import Checkpoint, InstanceRecord, InstanceStatus
from flowkeeper.store import create_store
from flowkeeper.store.group_commit import MAX_BATCH
from flowkeeper.store.sqlite import SqliteStore
from flowkeeper.store.tables import workflow_bookmark, workflow_instance
from tests.conftest import TEST_POOL


@pytest.fixture
def db_path(tmp_path: Path, _sqlite_migrated_template: Path) -> Path:
    path = tmp_path / "flowkeeper.db"
    shutil.copyfile(_sqlite_migrated_template, path)
    return path


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    store = create_store(f"sqlite:///{db_path}", **TEST_POOL)
    assert isinstance(store, SqliteStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def committed_version(db_path: Path, instance_id: str) -> int | None:
    """The instance's row_version as another connection sees it (committed data only)."""
    with sqlite3.connect(db_path) as other:
        row = other.execute(
            "SELECT row_version FROM workflow_instance WHERE id = ?", (instance_id,)
        ).fetchone()
    return None if row is None else int(row[0])


async def claimed(store: SqliteStore, make: Any, count: int) -> list[InstanceRecord]:
    return [await make.claimed(store) for _ in range(count)]


def counts(store: SqliteStore) -> tuple[int, int]:
    return store._batches.batches, store._batches.bodies


async def test_concurrent_checkpoints_of_different_instances_all_land_in_few_batches(
    store: SqliteStore, make: Any
) -> None:
    instances = await claimed(store, make, 40)
    batches, bodies = counts(store)
    # Half take the one-statement path (log only), half the savepoint path (a bookmark).
    checkpoints = [
        make.checkpoint(i, log=make.log(i.id, "/do/0"), state={"n": n})
        if n % 2
        else make.checkpoint(i, new_bookmarks=(make.bookmark(i.id),), state={"n": n})
        for n, i in enumerate(instances)
    ]
    written = await asyncio.gather(*map(store.checkpoint, checkpoints))
    assert [w.state for w in written] == [{"n": n} for n in range(40)]
    assert all(w.row_version == i.row_version + 1 for w, i in zip(written, instances, strict=True))
    for n, instance in enumerate(instances):
        assert await store.get_instance(instance.id) == written[n]
        assert len(await store.get_log(instance.id)) == n % 2
        assert len(await store.list_bookmarks(instance.id)) == 1 - n % 2
    # Grouped: all 40 were queued before the first batch started.
    assert counts(store) == (batches + 1, bodies + 40)


async def test_batches_are_bounded_and_served_in_arrival_order(store: SqliteStore, make: Any) -> None:
    instances = await claimed(store, make, MAX_BATCH + 6)
    batches, _ = counts(store)
    order: list[str] = []

    async def write(instance: InstanceRecord) -> None:
        await store.checkpoint(make.checkpoint(instance))
        order.append(instance.id)

    await asyncio.gather(*map(write, instances))
    assert counts(store)[0] == batches + 2  # 64, then the remaining 6
    assert order == [i.id for i in instances]  # FIFO


@pytest.mark.parametrize("path", ["one statement", "savepoint"])
async def test_a_stale_writer_gets_a_conflict_while_the_others_commit(
    store: SqliteStore, make: Any, db_path: Path, path: str
) -> None:
    instances = await claimed(store, make, 9)
    extra: dict[str, Any] = {}
    checkpoints: list[Checkpoint] = []
    for n, instance in enumerate(instances):
        if path == "savepoint":
            extra = {"new_bookmarks": (make.bookmark(instance.id),)}
        version = instance.row_version - 1 if n == 4 else instance.row_version
        checkpoints.append(
            make.checkpoint(instance, expected_row_version=version, log=make.log(instance.id, "/a"), **extra)
        )
    batches, _ = counts(store)
    results = await asyncio.gather(*map(store.checkpoint, checkpoints), return_exceptions=True)
    assert counts(store)[0] == batches + 1
    assert isinstance(results[4], ConcurrencyConflict)
    assert "stale writer" in str(results[4])
    stale = instances[4]
    assert committed_version(db_path, stale.id) == stale.row_version  # nothing of it written
    assert await store.get_log(stale.id) == []
    assert await store.list_bookmarks(stale.id) == []
    for n, instance in enumerate(instances):
        if n != 4:
            assert isinstance(results[n], InstanceRecord)
            assert committed_version(db_path, instance.id) == instance.row_version + 1
            assert len(await store.get_log(instance.id)) == 1


async def test_a_body_failing_after_its_writes_is_rolled_back_alone(store: SqliteStore, make: Any) -> None:
    instances = await claimed(store, make, 5)
    taken = make.bookmark(instances[0].id)
    await store.checkpoint(make.checkpoint(instances[0], new_bookmarks=(taken,)))
    instances[0] = await store.get_instance(instances[0].id)
    checkpoints = [
        make.checkpoint(i, log=make.log(i.id, "/a"), new_bookmarks=(make.bookmark(i.id),)) for i in instances
    ]
    # The guarded UPDATE and the log rows are written, then its bookmark id is a duplicate.
    failing = make.bookmark(instances[2].id, id=taken.id)
    checkpoints[2] = make.checkpoint(
        instances[2], log=make.log(instances[2].id, "/a"), new_bookmarks=(failing,)
    )
    results = await asyncio.gather(*map(store.checkpoint, checkpoints), return_exceptions=True)
    assert isinstance(results[2], StoreError)
    assert isinstance(results[2].__cause__, Exception)
    assert "UNIQUE" in str(results[2].__cause__)
    assert await store.get_instance(instances[2].id) == instances[2]  # the UPDATE was undone
    assert await store.get_log(instances[2].id) == []
    for n in (0, 1, 3, 4):
        assert await store.get_instance(instances[n].id) == results[n]
        assert len(await store.get_log(instances[n].id)) == 1


async def test_a_body_raising_between_its_statements_loses_only_its_own_writes(
    store: SqliteStore, make: Any
) -> None:
    instances = await claimed(store, make, 3)
    marker = make.bookmark(instances[1].id)

    async def write_then_fail(conn: AsyncConnection) -> None:
        await conn.execute(insert(workflow_bookmark).values(**_bookmark_row(marker)))
        raise ValueError("changed my mind")

    async def rename(conn: AsyncConnection, instance: InstanceRecord) -> str:
        await conn.execute(
            workflow_instance.update().where(workflow_instance.c.id == instance.id).values(name="renamed")
        )
        return instance.id

    results = await asyncio.gather(
        store._write("rename", lambda c: rename(c, instances[0])),
        store._write("fail", write_then_fail),
        store._write("rename", lambda c: rename(c, instances[2])),
        return_exceptions=True,
    )
    assert results[0] == instances[0].id
    assert isinstance(results[1], ValueError)  # the body's own exception, untranslated
    assert results[2] == instances[2].id
    assert await store.list_bookmarks(instances[1].id) == []
    assert (await store.get_instance(instances[0].id)).name == "renamed"
    assert (await store.get_instance(instances[2].id)).name == "renamed"


async def test_a_caller_returns_only_once_its_data_is_readable_elsewhere(
    store: SqliteStore, make: Any, db_path: Path
) -> None:
    instances = await claimed(store, make, 30)
    seen: dict[str, int | None] = {}

    async def write(instance: InstanceRecord) -> None:
        await store.checkpoint(make.checkpoint(instance, log=make.log(instance.id, "/a")))
        # No await between the return and this read: had the write returned before
        # its batch committed, another connection could not see it yet.
        seen[instance.id] = committed_version(db_path, instance.id)

    await asyncio.gather(*map(write, instances))
    assert seen == {i.id: i.row_version + 1 for i in instances}


async def test_a_failed_commit_fails_every_member_and_writes_nothing(
    store: SqliteStore, make: Any, db_path: Path
) -> None:
    instances = await claimed(store, make, 4)
    orphan = make.bookmark("no-such-instance")

    async def violate_at_commit(conn: AsyncConnection) -> None:
        # Foreign keys checked at COMMIT instead of per statement: this insert passes,
        # the COMMIT fails.
        await conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        await conn.execute(insert(workflow_bookmark).values(**_bookmark_row(orphan)))

    checkpoints = [store.checkpoint(make.checkpoint(i, log=make.log(i.id, "/a"))) for i in instances]
    results = await asyncio.gather(
        *checkpoints[:2], store._write("orphan", violate_at_commit), *checkpoints[2:], return_exceptions=True
    )
    assert all(isinstance(r, StoreError) for r in results), results
    assert all("FOREIGN KEY" in str(r) for r in results)
    assert len({id(r) for r in results}) == len(results)  # one exception object per caller
    for instance in instances:
        assert committed_version(db_path, instance.id) == instance.row_version
        assert await store.get_log(instance.id) == []
    # The writer goes on with the next batch.
    assert (await store.checkpoint(make.checkpoint(instances[0]))).row_version == instances[0].row_version + 1


async def test_a_body_ending_the_transaction_fails_the_batch_and_gets_its_own_error(
    store: SqliteStore, make: Any, db_path: Path
) -> None:
    instances = await claimed(store, make, 3)

    async def end_transaction(conn: AsyncConnection) -> None:
        # What SQLite does by itself on a full disk or an I/O error.
        await conn.exec_driver_sql("ROLLBACK")
        raise ValueError("the transaction is gone")

    results = await asyncio.gather(
        store.checkpoint(make.checkpoint(instances[0])),
        store._write("doomed", end_transaction),
        store.checkpoint(make.checkpoint(instances[1])),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)  # its own exception
    for lost in (results[0], results[2]):
        assert isinstance(lost, StoreError)
        assert "lost with its batch" in str(lost)
        assert lost.__cause__ is results[1]
    assert committed_version(db_path, instances[0].id) == instances[0].row_version
    assert (await store.checkpoint(make.checkpoint(instances[2]))).row_version == instances[2].row_version + 1


async def test_a_cancelled_caller_is_skipped_and_the_others_commit(store: SqliteStore, make: Any) -> None:
    instances = await claimed(store, make, 3)
    queued = [asyncio.Event() for _ in instances]

    async def write(n: int) -> InstanceRecord:
        queued[n].set()  # runs in the same step as the submission below
        return await store.checkpoint(make.checkpoint(instances[n]))

    async with store._lock:  # the flusher cannot start a batch yet
        tasks = [asyncio.create_task(write(n)) for n in range(3)]
        await queued[2].wait()  # all three are queued
        tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert await store.get_instance(instances[1].id) == instances[1]
    assert results[0] == await store.get_instance(instances[0].id)
    assert results[2] == await store.get_instance(instances[2].id)


async def test_close_finishes_queued_writes_and_refuses_new_ones(make: Any, db_path: Path) -> None:
    store = create_store(f"sqlite:///{db_path}", **TEST_POOL)
    await store.open()
    instances = await claimed(store, make, 10)  # type: ignore[arg-type]
    writes = [asyncio.create_task(store.checkpoint(make.checkpoint(i))) for i in instances]
    closing = asyncio.create_task(store.close())  # runs after the writes have queued
    late = asyncio.create_task(store.checkpoint(make.checkpoint(instances[0])))  # after close began
    results = await asyncio.gather(*writes, closing, late, return_exceptions=True)
    assert all(isinstance(r, InstanceRecord) for r in results[:10])
    assert isinstance(results[-1], StoreUnavailable)
    for instance in instances:
        assert committed_version(db_path, instance.id) == instance.row_version + 1
    # Closed means idle, not broken: the store opens again on use.
    again = await store.checkpoint(make.checkpoint(await store.get_instance(instances[0].id)))
    assert again.row_version == instances[0].row_version + 2
    await store.close()


async def test_two_stores_on_one_file_write_concurrently_without_locking_errors(
    store: SqliteStore, make: Any, db_path: Path
) -> None:
    other = create_store(f"sqlite:///{db_path}", **TEST_POOL)
    try:
        instances = await claimed(store, make, 40)
        checkpoints = [
            (store if n % 2 else other).checkpoint(
                make.checkpoint(i, log=make.log(i.id, "/a"), new_bookmarks=(make.bookmark(i.id),))
            )
            for n, i in enumerate(instances)
        ]
        await asyncio.gather(*checkpoints)
        for instance in instances:
            assert committed_version(db_path, instance.id) == instance.row_version + 1
    finally:
        await other.close()


async def test_a_body_runs_in_its_callers_context(store: SqliteStore) -> None:
    request = contextvars.ContextVar("request", default="none")

    async def whose(conn: AsyncConnection) -> str:
        await conn.execute(text("SELECT 1"))
        return request.get()

    async def call(name: str) -> str:
        request.set(name)
        return await store._write("whose", whose)

    assert list(await asyncio.gather(call("a"), call("b"))) == ["a", "b"]


async def test_a_body_awaiting_anything_but_its_connection_is_refused(store: SqliteStore, make: Any) -> None:
    instance = await make.claimed(store)

    async def wanders(conn: AsyncConnection) -> None:
        await conn.execute(delete(workflow_instance).where(workflow_instance.c.id == instance.id))
        await asyncio.sleep(0)

    with pytest.raises(StoreError, match="may await only its connection"):
        await store._write("wanders", wanders)
    assert await store.get_instance(instance.id) == instance  # its delete was rolled back


async def test_an_in_memory_database_reads_and_writes_through_batches(make: Any) -> None:
    store = create_store("sqlite://")
    try:
        await store.migrate()
        instances = [await make.claimed(store) for _ in range(8)]

        async def step(instance: InstanceRecord) -> InstanceRecord:
            written = await store.checkpoint(make.checkpoint(instance, log=make.log(instance.id, "/a")))
            assert await store.get_instance(instance.id) == written
            return written

        written = await asyncio.gather(*map(step, instances))
        assert [w.status for w in written] == [InstanceStatus.RUNNING] * 8
    finally:
        await store.close()


def _bookmark_row(bookmark: Any) -> dict[str, Any]:
    return {
        "id": bookmark.id,
        "instance_id": bookmark.instance_id,
        "activity_id": bookmark.activity_id,
        "kind": bookmark.kind.value,
        "filter": bookmark.filter,
        "event_type": bookmark.event_type,
        "is_consumed": False,
        "created_on": datetime.now(UTC),
    }
