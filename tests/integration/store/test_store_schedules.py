"""Schedule rows: the latest version owns them; a tick is fired by exactly one writer."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from flowkeeper.records import InstanceStatus
from flowkeeper.schedule_records import ScheduleKind, ScheduleRecord
from flowkeeper.store import Store
from tests.conftest import StoreFactory
from tests.integration.store.conftest import Make

HOUR = timedelta(hours=1)


def every(version: str, spec: str = "PT1H", **kw: object) -> ScheduleRecord:
    return ScheduleRecord("tests", "greet", version, ScheduleKind.EVERY, {"every": spec}, **kw)  # type: ignore[arg-type]


async def deployed(store: Store, make: Make, *versions: str) -> None:
    for version in versions:
        await store.put_definition(make.definition(version))


async def test_only_the_latest_version_puts_its_schedule(store: Store, make: Make) -> None:
    now = await store.now()
    await deployed(store, make, "1.0.0")
    first = await store.put_schedule("tests", "greet", "1.0.0", every("1.0.0", next_due=now + HOUR))
    assert first is not None
    assert (first.version, first.revision, first.next_due) == ("1.0.0", 1, now + HOUR)

    await deployed(store, make, "2.0.0", "1.5.0")
    # 1.5.0 is not the latest: nothing changes, the stored schedule comes back.
    assert await store.put_schedule("tests", "greet", "1.5.0", every("1.5.0", "PT1M")) == first
    # 2.0.0 with the same spec: only the version moves on, the due time stays.
    kept = await store.put_schedule("tests", "greet", "2.0.0", every("2.0.0", next_due=now + 5 * HOUR))
    assert kept is not None
    assert (kept.version, kept.next_due, kept.revision) == ("2.0.0", now + HOUR, 2)
    # Another spec replaces it.
    changed = await store.put_schedule("tests", "greet", "2.0.0", every("2.0.0", "PT2H", next_due=now))
    assert changed is not None
    assert (changed.spec, changed.next_due) == ({"every": "PT2H"}, now)
    # The latest version without a schedule removes it.
    await deployed(store, make, "3.0.0")
    assert await store.put_schedule("tests", "greet", "3.0.0", None) is None
    assert await store.get_schedule("tests", "greet") is None
    assert await store.list_schedules() == []


async def test_due_schedules_and_the_next_due_time(store: Store, make: Make) -> None:
    now = await store.now()
    await deployed(store, make, "1.0.0")
    await store.put_schedule("tests", "greet", "1.0.0", every("1.0.0", next_due=now + HOUR))
    assert await store.next_schedule_due() == now + HOUR
    assert await store.due_schedules(10, now) == []
    [due] = await store.due_schedules(10, now + HOUR)
    assert due.next_due == now + HOUR
    assert await store.due_schedules(0, now + HOUR) == []
    assert [s.name for s in await store.list_schedules(ScheduleKind.EVERY)] == ["greet"]
    assert await store.list_schedules(ScheduleKind.ON) == []


async def test_a_tick_is_fired_by_exactly_one_of_many_writers(
    store: Store, store_factory: StoreFactory, make: Make
) -> None:
    now = await store.now()
    await deployed(store, make, "1.0.0")
    await store.put_schedule("tests", "greet", "1.0.0", every("1.0.0", next_due=now))
    [read] = await store.due_schedules(10, now)
    stores = [store, *[await store_factory() for _ in range(3)]]

    attempts = [(s, make.instance(status=InstanceStatus.PENDING)) for s in stores for _ in range(2)]
    results = await asyncio.gather(*(s.fire_schedule(read, now + HOUR, i) for s, i in attempts))

    assert sum(results) == 1
    [winner] = [i for (_, i), won in zip(attempts, results, strict=True) if won]
    page = await store.list_instances(limit=100)
    assert [r.id for r in page.items] == [winner.id]
    after = await store.get_schedule("tests", "greet")
    assert after is not None
    assert (after.next_due, after.last_instance_id, after.revision) == (
        now + HOUR,
        winner.id,
        read.revision + 1,
    )
    # A stale read (the revision moved on) writes nothing.
    assert not await store.fire_schedule(read, now + 2 * HOUR, make.instance())
    assert len((await store.list_instances(limit=100)).items) == 1


async def test_after_schedules_wait_for_their_last_instance(store: Store, make: Make) -> None:
    await deployed(store, make, "1.0.0")
    now = await store.now()
    after = ScheduleRecord("tests", "greet", "1.0.0", ScheduleKind.AFTER, {"after": "PT1H"}, next_due=now)
    await store.put_schedule("tests", "greet", "1.0.0", after)
    [read] = await store.due_schedules(10, now)
    instance = make.instance(status=InstanceStatus.PENDING)
    assert await store.fire_schedule(read, None, instance)
    assert await store.finished_after_schedules(10) == []  # its run has not ended

    await store.cancel_instance(instance.id)
    [(waiting, ended)] = await store.finished_after_schedules(10)
    assert ended == (await store.get_instance(instance.id)).completed_on
    # Arming it (no instance) keeps the last instance and sets the due time.
    assert await store.fire_schedule(waiting, ended + HOUR if ended else None)
    armed = await store.get_schedule("tests", "greet")
    assert armed is not None
    assert (armed.last_instance_id, armed.next_due) == (instance.id, ended + HOUR if ended else None)
    assert await store.finished_after_schedules(10) == []
