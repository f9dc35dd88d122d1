"""Checkpoints of many instances at once: each commits or fails on its own.

On PostgreSQL concurrent checkpoints share round trips (``store/statement_batches.py``);
these are the guarantees that sharing must not change: a stale writer, a value the
database refuses or a lost connection affects that checkpoint alone, never its
neighbours, and a failed checkpoint writes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from flowkeeper.errors import ConcurrencyConflict, StoreError, StoreUnavailable
from flowkeeper.records import InstanceRecord, InstanceStatus
from flowkeeper.store import Store
from flowkeeper.store.postgres import PostgresStore


async def _claimed(store: Store, make: Any, count: int) -> list[InstanceRecord]:
    return [await make.claimed(store) for _ in range(count)]


async def test_concurrent_checkpoints_each_commit_or_conflict_alone(store: Store, make) -> None:
    instances = await _claimed(store, make, 12)
    checkpoints = [
        make.checkpoint(i, state={"n": n}, log=make.log(i.id, "/do/0", "/do/1"))
        for n, i in enumerate(instances)
    ]
    stale = 5
    checkpoints[stale] = replace(checkpoints[stale], fencing_token=instances[stale].fencing_token + 7)

    results = await asyncio.gather(*(store.checkpoint(cp) for cp in checkpoints), return_exceptions=True)

    for n, (instance, result) in enumerate(zip(instances, results, strict=True)):
        stored = await store.get_instance(instance.id)
        log = await store.get_log(instance.id)
        if n == stale:
            assert isinstance(result, ConcurrencyConflict)
            assert stored == instance  # nothing written
            assert log == []
        else:
            assert isinstance(result, InstanceRecord)
            assert result == stored
            assert stored.state == {"n": n}
            assert stored.row_version == instance.row_version + 1
            assert [(e.seq, e.reference) for e in log] == [(1, "/do/0"), (2, "/do/1")]


async def test_a_checkpoint_the_database_refuses_fails_alone(store: Store, make) -> None:
    instances = await _claimed(store, make, 8)
    # PostgreSQL's jsonb cannot hold a NUL character; SQLite's JSON text can.
    refused = 3
    checkpoints = [
        make.checkpoint(
            i, state={"text": "nul \u0000" if n == refused else "fine"}, log=make.log(i.id, "/do/0")
        )
        for n, i in enumerate(instances)
    ]

    results = await asyncio.gather(*(store.checkpoint(cp) for cp in checkpoints), return_exceptions=True)

    postgres = isinstance(store, PostgresStore)
    for n, (instance, result) in enumerate(zip(instances, results, strict=True)):
        stored = await store.get_instance(instance.id)
        if n == refused and postgres:
            assert isinstance(result, StoreError) and not isinstance(result, StoreUnavailable)
            assert "nul" not in str(result)  # workflow data stays out of error messages
            assert stored == instance
            assert await store.get_log(instance.id) == []
        else:
            assert isinstance(result, InstanceRecord)
            assert stored.row_version == instance.row_version + 1
            assert len(await store.get_log(instance.id)) == 1


async def test_checkpoints_when_the_connections_are_terminated(store: Store, store_factory, make) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("PostgreSQL: terminating the server's sessions")
    instances = await _claimed(store, make, 10)
    admin = await store_factory()
    async with admin._reading("test") as conn:  # type: ignore[attr-defined]
        await conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = 'flowkeeper'"
        )
    checkpoints = [
        make.checkpoint(i, state={"n": n}, log=make.log(i.id, "/do/0")) for n, i in enumerate(instances)
    ]

    results = await asyncio.gather(*(store.checkpoint(cp) for cp in checkpoints), return_exceptions=True)

    # Each either committed or failed as unavailable having written nothing; written
    # again, the failed ones commit (the store replaced its dead connections).
    again = []
    for cp, instance, result in zip(checkpoints, instances, results, strict=True):
        if isinstance(result, InstanceRecord):
            assert result == await store.get_instance(instance.id)
        else:
            assert isinstance(result, StoreUnavailable), repr(result)
            assert await admin.get_instance(instance.id) == instance
            again.append(cp)
    for cp in again:
        await store.checkpoint(cp)
    for n, instance in enumerate(instances):
        stored = await store.get_instance(instance.id)
        assert stored.state == {"n": n} and stored.status is InstanceStatus.RUNNING
        assert len(await store.get_log(instance.id)) == 1
