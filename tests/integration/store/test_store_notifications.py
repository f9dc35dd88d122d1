"""Wake-ups between replicas: the triggers of migration 0006 notify a listener on commit
(PostgreSQL); SQLite has no listener (one process, polling)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from flowkeeper.records import InstanceStatus
from flowkeeper.store import Store
from flowkeeper.store.notifications import APPLICATION_NAME, RECONNECTED

GUARD = 10.0


class Notes:
    """Collects notes; ``wait_for`` returns once one satisfies a predicate."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Event()

    def __call__(self, note: str) -> None:
        self.seen.append(note)
        self._changed.set()

    async def wait_for(self, predicate) -> str:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(GUARD):
            while True:
                for note in self.seen:
                    if predicate(note):
                        return note
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def listening(store: Store):  # type: ignore[no-untyped-def]
    notes = Notes()
    listener = store.notification_listener(notes)
    if listener is None:
        assert store.url.startswith("sqlite")
        pytest.skip("SQLite has no notifications (covered: the listener is None)")
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    async with asyncio.timeout(GUARD):
        await listener.connected.wait()
    yield notes, listener
    stop.set()
    await task


async def test_unleased_runnable_instances_timers_and_outbox_rows_notify(
    listening, store: Store, make
) -> None:
    notes, _ = listening
    await store.create_instance(make.instance())  # pending, no lease: any replica may take it
    await notes.wait_for(lambda n: n == "work")

    running = await make.claimed(store)
    bookmark = make.bookmark(running.id)
    due = await store.now() + timedelta(seconds=30)
    timer = make.timer(bookmark, due)
    await store.checkpoint(
        make.checkpoint(
            running,
            status=InstanceStatus.SUSPENDED,
            new_bookmarks=(bookmark,),
            new_timers=(timer,),
            outbox=(make.outbox(running.id),),
            release_lease=True,
        )
    )
    note = await notes.wait_for(lambda n: n.startswith("timer:"))
    assert float(note.partition(":")[2]) == pytest.approx(due.timestamp(), abs=1e-3)
    await notes.wait_for(lambda n: n == "outbox")


async def test_a_deployed_definition_notifies(listening, store: Store, make) -> None:
    notes, _ = listening
    await store.put_definition(make.definition("2.0.0"))
    await notes.wait_for(lambda n: n == "definition")


async def test_a_claimed_start_does_not_notify(listening, store: Store, make) -> None:
    notes, _ = listening
    await make.claimed(store)  # created under our lease: nobody else has anything to do
    await store.create_instance(make.instance())  # the marker that follows it
    await notes.wait_for(lambda n: n == "work")
    assert notes.seen == ["work"]


async def test_the_listener_reconnects_after_its_connection_is_terminated(listening, store: Store) -> None:
    notes, listener = listening
    async with store._reading("test") as conn:  # type: ignore[attr-defined]
        await conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = current_database() AND application_name = '{APPLICATION_NAME}'"
        )
    await notes.wait_for(lambda n: n == RECONNECTED)
    assert listener.connected.is_set() or await _connected(listener)


async def _connected(listener) -> bool:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(GUARD):
        await listener.connected.wait()
    return True
