"""The cleanup service: passes over every kind of row in bounded batches, health, figures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from flowkeeper.config import CleanupServiceSettings, EventsSettings, Settings
from flowkeeper.errors import InstanceNotFound, StoreUnavailable
from flowkeeper.records import Checkpoint, EventRecord, InstanceStatus, OutboxStatus
from flowkeeper.services.cleanup import CleanupCounts, CleanupService
from flowkeeper.store import Store
from tests.integration.store.conftest import Make

DAY = timedelta(days=1)
#: The longest a condition may take to hold before the test counts as failed (a guard).
GUARD = 30.0


class Spy:
    """A store that counts (and can fail) the retention calls, passing the rest through."""

    def __init__(self, store: Store, failures: int = 0) -> None:
        self._store = store
        self.failures = failures
        self.calls: dict[str, list[int]] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not name.startswith("delete_"):
            return attribute

        async def call(before: datetime, limit: int) -> int:
            if self.failures:
                self.failures -= 1
                raise StoreUnavailable("database is down (test)")
            removed: int = await attribute(before, limit)
            self.calls.setdefault(name, []).append(removed)
            return removed

        return call


def settings(batch_size: int = 1000, event_retention: timedelta = timedelta(hours=1)) -> Settings:
    return Settings(
        cleanup_service=CleanupServiceSettings(
            batch_size=batch_size,
            completed_workflow_retention=DAY,
            execution_log_retention=2 * DAY,
            outbox_event_retention=3 * DAY,
        ),
        events=EventsSettings(retention=event_retention),
    )


async def finished(store: Store, at: datetime, status: InstanceStatus = InstanceStatus.COMPLETED) -> str:
    """An instance that finished at ``at`` with one delivered outbox row from then."""
    make = Make()
    record = make.instance(status=status, created_on=at, completed_on=at if status.is_terminal else None)
    checkpoint = Checkpoint(
        instance_id=record.id,
        expected_row_version=0,
        fencing_token=0,
        lease_owner="tests",
        status=status,
        state=None,
        outbox=(make.outbox(record.id, status=OutboxStatus.DELIVERED, created_on=at, delivered_on=at),),
    )
    return (await store.create_instance(record, checkpoint)).id


async def exists(store: Store, instance_id: str) -> bool:
    try:
        await store.get_instance(instance_id)
    except InstanceNotFound:
        return False
    return True


async def until(condition: Callable[[], Awaitable[bool]] | Callable[[], bool]) -> None:
    """Wait (polling the event loop) until ``condition`` holds, failing after GUARD seconds."""

    async def wait() -> None:
        while True:
            result = condition()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), GUARD)


async def test_a_pass_removes_what_outlived_its_retention(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    now = await store.now()
    old = [
        await finished(store, now - 10 * DAY, s) for s in (InstanceStatus.COMPLETED, InstanceStatus.FAILED)
    ]
    recent = await finished(store, now)
    running = await finished(store, now - 10 * DAY, InstanceStatus.RUNNING)
    service = CleanupService(store, settings())

    with caplog.at_level(logging.INFO, logger="flowkeeper.cleanup"):
        counts = await service.run_once()

    # Two instances; the three old delivered outbox rows (the running one's too).
    assert counts == CleanupCounts(instances=2, log_entries=0, outbox_events=3, received_events=0)
    assert [await exists(store, i) for i in old] == [False, False]
    assert await exists(store, recent)
    assert await exists(store, running)
    [record] = [r for r in caplog.records if r.name == "flowkeeper.cleanup"]
    assert record.getMessage() == (
        "Cleanup pass removed 2 finished instance(s), 0 execution-log entries, "
        "3 delivered outbox event(s) and 0 received event(s) in " + f"{record.duration_ms}ms"  # type: ignore[attr-defined]
    )
    assert record.instances_removed == 2  # type: ignore[attr-defined]

    figures = service.figures()
    assert figures.passes == 1
    assert figures.removed == figures.last_removed == counts
    assert figures.last_pass_at is not None
    health = service.health()
    assert health.status == "Healthy"
    assert health.description is not None
    assert health.description.startswith(
        f"last pass at {figures.last_pass_at.isoformat()} removed 2 instance(s)"
    )


async def test_batches_go_on_until_one_comes_back_short(store: Store) -> None:
    now = await store.now()
    for n in range(5):
        await finished(store, now - (10 + n) * DAY)
    spy = Spy(store)
    service = CleanupService(spy, settings(batch_size=2))  # type: ignore[arg-type]

    counts = await service.run_once()

    assert counts.instances == 5
    assert counts.outbox_events == 5
    assert spy.calls["delete_finished_instances"] == [2, 2, 1]
    assert spy.calls["delete_delivered_outbox"] == [2, 2, 1]
    assert spy.calls["delete_log_entries"] == [0]
    assert spy.calls["delete_events"] == [0]
    assert service.figures().removed == counts


async def test_received_events_go_after_their_retention(store: Store) -> None:
    event = {"specversion": "1.0", "id": "1", "source": "tests", "type": "com.example.ping"}
    kept = await store.record_event(EventRecord(key="tests#1", id="1", source="tests", type="t", event=event))
    assert kept is not None and kept.received_on is not None
    retention = timedelta(milliseconds=1)
    received_on = kept.received_on
    await until(lambda: _clock_after(store, received_on + retention))

    counts = await CleanupService(store, settings(event_retention=retention)).run_once()

    assert counts.received_events == 1
    assert await store.recent_events(received_on - DAY) == []


async def _clock_after(store: Store, moment: datetime) -> bool:
    return await store.now() > moment


async def test_the_loop_runs_a_first_pass_soon_after_start_and_again_when_woken(store: Store) -> None:
    service = CleanupService(store, settings(), first_pass_delay=0.0)
    stop = asyncio.Event()
    assert service.health().description == "not started"
    task = asyncio.create_task(service.run(stop))
    try:
        await until(lambda: service.figures().passes == 1)
        old = await finished(store, await store.now() - 10 * DAY)
        service.wake()  # the next pass would be two hours away
        await until(lambda: service.figures().passes == 2)
        assert not await exists(store, old)
        assert service.figures().removed.instances == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, GUARD)


async def test_a_failed_pass_degrades_health_and_is_retried(store: Store) -> None:
    spy = Spy(store, failures=1)
    # A long retry delay, cut short by wake(): the Degraded state lasts until the test moves on.
    service = CleanupService(spy, settings(), first_pass_delay=0.0, retry_delay=3600.0)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await until(lambda: service.health().status == "Degraded")
        assert service.health().description == "last pass failed: StoreUnavailable: database is down (test)"
        assert service.figures().failed_passes == 1
        assert service.figures().passes == 0
        service.wake()
        await until(lambda: service.figures().passes == 1)
        assert service.health().status == "Healthy"
    finally:
        stop.set()
        await asyncio.wait_for(task, GUARD)


async def test_stop_ends_the_loop_while_it_waits(store: Store) -> None:
    service = CleanupService(store, settings())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(task, GUARD)
    assert service.figures().passes == 0
    assert service.health().description == "no pass yet"
