"""Workflow ``schedule``: ticks fired exactly once across replicas, ``after``, ``on`` events, deployment.

Time is driven through ``ScheduleService.run_once(now=...)`` where the test is about
which tick fires; the running loops are tested by counting, never by timing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from flowkeeper.activities import Activities, ActivityOptions, FunctionRegistry
from flowkeeper.config import Settings
from flowkeeper.definitions import load_definition
from flowkeeper.definitions.cron import parse_cron
from flowkeeper.errors import DefinitionError, DefinitionNotFound
from flowkeeper.records import InstanceRecord, InstanceStatus
from flowkeeper.runtime import Engine, Worker, run_to_end
from flowkeeper.runtime.scheduled_starts import KEY_PREFIX, reconcile
from flowkeeper.schedule_records import ScheduleKind, ScheduleRecord
from flowkeeper.services.outbox import OutboxProcessor
from flowkeeper.services.schedule_sink import ScheduledStartSink
from flowkeeper.services.schedules import ScheduleService
from flowkeeper.store import Store
from tests.conftest import StoreFactory
from tests.integration.runtime.conftest import GUARD, definition, deploy

HOUR = timedelta(hours=1)

DO = """
do:
  - note:
      set:
        ran: true
"""


def scheduled(schedule: str) -> str:
    return "schedule:\n" + schedule + DO


class Spy:
    """A store recording every ``fire_schedule`` (the due time it was read with, won?)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.fired: list[tuple[datetime | None, bool]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def fire_schedule(self, schedule: ScheduleRecord, *args: Any, **kw: Any) -> bool:
        won: bool = await self._store.fire_schedule(schedule, *args, **kw)
        self.fired.append((schedule.next_due, won))
        return won


@pytest.fixture
async def replica(store_factory: StoreFactory, functions: FunctionRegistry) -> AsyncIterator[Engine]:
    """A second engine on its own store (another process's view of the same database)."""
    engine = Engine(
        await store_factory(), Activities(ActivityOptions(timeout=10.0), functions), owner="replica-2"
    )
    yield engine
    await engine.aclose()


async def instances(store: Store, name: str = "wf") -> list[InstanceRecord]:
    page = await store.list_instances(namespace="tests", name=name, limit=1000)
    return sorted(page.items, key=lambda r: (r.created_on or datetime.min, r.id))


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``condition`` holds, failing after the guard."""

    async def wait() -> None:
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)  # poll the database; the guard bounds it

    await asyncio.wait_for(wait(), GUARD)


async def schedule_of(store: Store, name: str = "wf") -> ScheduleRecord:
    found = await store.get_schedule("tests", name)
    assert found is not None
    return found


# -- every ----------------------------------------------------------------------------------


async def test_every_fires_each_tick_once_across_two_replicas(engine: Engine, replica: Engine) -> None:
    before = await engine.store.now()
    await deploy(engine, scheduled("  every: PT1H\n"))
    first = (await schedule_of(engine.store)).next_due
    assert first is not None
    assert before + HOUR <= first <= await engine.store.now() + HOUR
    services = [ScheduleService(e, Settings()) for e in (engine, replica)]

    for tick in range(3):
        now = first + tick * HOUR
        started = await asyncio.gather(*(s.run_once(now) for s in services))
        assert sum(started) == 1
        assert (await schedule_of(engine.store)).next_due == now + HOUR
    # Nothing is due between ticks.
    assert sum(await asyncio.gather(*(s.run_once(first + 2.5 * HOUR) for s in services))) == 0

    created = await instances(engine.store)
    assert len(created) == 3
    assert [(r.status, r.version, r.input) for r in created] == [(InstanceStatus.PENDING, "1.0.0", {})] * 3
    assert len({r.idempotency_key for r in created}) == 3
    assert all((r.idempotency_key or "").startswith(KEY_PREFIX) for r in created)
    assert sum(s.figures().started for s in services) == 3


async def test_missed_ticks_fire_once_then_the_next_future_tick(engine: Engine, replica: Engine) -> None:
    await deploy(engine, scheduled("  every: PT1H\n"))
    first = (await schedule_of(engine.store)).next_due
    assert first is not None
    services = [ScheduleService(e, Settings()) for e in (engine, replica)]

    # Everything was down for ten and a half periods.
    late = first + 10.5 * HOUR
    assert sum(await asyncio.gather(*(s.run_once(late) for s in services))) == 1
    assert (await schedule_of(engine.store)).next_due == first + 11 * HOUR
    assert sum(await asyncio.gather(*(s.run_once(late) for s in services))) == 0
    assert len(await instances(engine.store)) == 1


async def test_running_schedulers_on_two_replicas_start_each_tick_once(
    store: Store, store_factory: StoreFactory, functions: FunctionRegistry
) -> None:
    spies = [Spy(store), Spy(await store_factory())]
    engines = [Engine(s, Activities(ActivityOptions(timeout=10.0), functions)) for s in spies]  # type: ignore[arg-type]
    await engines[0].deploy(definition(scheduled("  every: PT0.05S\n")))
    services = [ScheduleService(e, Settings(), poll_interval=1.0) for e in engines]
    stop = asyncio.Event()
    loops = [asyncio.create_task(s.run(stop)) for s in services]

    async def won(count: int) -> bool:
        return sum(w for spy in spies for _, w in spy.fired) >= count

    try:
        await until(lambda: won(5))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loops), GUARD)
        for engine in engines:
            await engine.aclose()

    wins = [due for spy in spies for due, w in spy.fired if w]
    # Exactly once: no tick (due time) was won twice, and every win is one instance.
    assert len(wins) == len(set(wins))
    assert len(await instances(store)) == len(wins) >= 5
    for service in services:
        assert service.health().status == "Healthy"
        assert "scheduled run(s) started" in (service.health().description or "")


# -- cron -----------------------------------------------------------------------------------


async def test_cron_fires_at_each_matching_minute(engine: Engine, replica: Engine) -> None:
    before = await engine.store.now()
    await deploy(engine, scheduled("  cron: '*/5 * * * *'\n"))
    after = await engine.store.now()
    cron = parse_cron("*/5 * * * *")
    first = (await schedule_of(engine.store)).next_due
    assert first in {cron.next_after(before), cron.next_after(after)}
    assert first is not None
    services = [ScheduleService(e, Settings()) for e in (engine, replica)]

    assert sum(await asyncio.gather(*(s.run_once(first) for s in services))) == 1
    assert (await schedule_of(engine.store)).next_due == first + timedelta(minutes=5)
    # A day later (missed ticks): once, then the next matching minute after now.
    late = first + timedelta(days=1, minutes=2)
    assert sum(await asyncio.gather(*(s.run_once(late) for s in services))) == 1
    assert (await schedule_of(engine.store)).next_due == first + timedelta(days=1, minutes=5)
    assert len(await instances(engine.store)) == 2


# -- after ----------------------------------------------------------------------------------


async def test_after_runs_again_that_long_after_the_previous_run_ended(
    engine: Engine, replica: Engine
) -> None:
    await deploy(engine, scheduled("  after: PT1H\n"))
    schedule = await schedule_of(engine.store)
    assert schedule.kind is ScheduleKind.AFTER
    assert schedule.next_due is not None  # the first run: right away
    services = [ScheduleService(e, Settings()) for e in (engine, replica)]
    now = schedule.next_due

    assert sum(await asyncio.gather(*(s.run_once(now) for s in services))) == 1
    [first] = await instances(engine.store)
    schedule = await schedule_of(engine.store)
    assert (schedule.next_due, schedule.last_instance_id) == (None, first.id)
    # While that run has not ended, nothing is due, however late it gets.
    assert sum(await asyncio.gather(*(s.run_once(now + 5 * HOUR) for s in services))) == 0

    done = await run_to_end(engine, first.id, limit=GUARD)
    assert done.status is InstanceStatus.COMPLETED
    assert done.completed_on is not None
    # Half an hour after it ended: armed for an hour after, not fired.
    assert sum(await asyncio.gather(*(s.run_once(done.completed_on + HOUR / 2) for s in services))) == 0
    assert (await schedule_of(engine.store)).next_due == done.completed_on + HOUR
    assert sum(await asyncio.gather(*(s.run_once(done.completed_on + HOUR) for s in services))) == 1
    assert len(await instances(engine.store)) == 2


async def test_after_with_running_loops_is_woken_by_the_run_ending(engine: Engine) -> None:
    await deploy(engine, scheduled("  after: PT0S\n"))
    # An hour between polls: only the wake-ups (a run ended here) move it on.
    service = ScheduleService(engine, Settings(), poll_interval=3600.0)
    worker = Worker(engine, poll_interval=3600.0)
    stop = asyncio.Event()
    loop = asyncio.create_task(service.run(stop))

    async def three_completed() -> bool:
        done = [r for r in await instances(engine.store) if r.status is InstanceStatus.COMPLETED]
        return len(done) >= 3

    try:
        assert await worker.run_until(three_completed, limit=GUARD)
    finally:
        stop.set()
        await asyncio.wait_for(loop, GUARD)
    created = await instances(engine.store)
    # One at a time: each run started after the previous one ended.
    for earlier, later in itertools.pairwise(created):
        assert earlier.completed_on is not None and later.created_on is not None
        assert later.created_on >= earlier.completed_on


# -- on (events) ----------------------------------------------------------------------------


def event(type: str, id: str, **data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id, "source": "/tests", "type": type, "data": data}


ON_ONE = """\
  on:
    one:
      with: {type: com.example.ping}
"""


async def test_on_starts_one_instance_per_event_even_published_twice_by_two_replicas(
    engine: Engine, replica: Engine
) -> None:
    await deploy(engine, scheduled(ON_ONE))
    ping = event("com.example.ping", "e-1", n=1)

    await asyncio.gather(engine.publish(ping), replica.publish(ping), engine.publish(dict(ping)))
    await engine.publish(event("com.example.other", "e-2"))
    [started] = await instances(engine.store)
    assert started.input == [ping]  # the DSL: the events that started it, as an array

    await replica.publish(event("com.example.ping", "e-3", n=3))
    created = await instances(engine.store)
    assert [r.input[0]["id"] for r in created] == ["e-1", "e-3"]

    async def all_completed() -> bool:
        return all(r.status is InstanceStatus.COMPLETED for r in await instances(engine.store))

    await until(all_completed)  # each ran where it was started


def emitter(n: int) -> str:
    """A workflow emitting one ``com.example.ping`` with ``data: {n: <n>}``."""
    return f"""
do:
  - ping:
      emit:
        event:
          with: {{source: "https://tests.example/emitter", type: com.example.ping, data: {{n: {n}}}}}
"""


async def test_an_event_emitted_by_a_workflow_starts_the_on_schedule_once(engine: Engine) -> None:
    await deploy(engine, scheduled(ON_ONE))
    await deploy(engine, emitter(7), name="emitter")
    ran = await run_to_end(engine, (await engine.start("tests", "emitter", None, {})).id, limit=GUARD)
    assert ran.status is InstanceStatus.COMPLETED
    [started] = await instances(engine.store)
    assert started.input[0]["type"] == "com.example.ping"
    assert started.input[0]["data"] == {"n": 7}


async def test_a_start_lost_to_a_crash_after_the_emitting_commit_is_made_from_the_outbox(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deploy(engine, scheduled(ON_ONE))
    await deploy(engine, emitter(8), name="emitter")

    # The emitting run's checkpoint commits, and the process dies before it starts the
    # ``on`` run (here: that start is skipped).
    async def lost(*args: Any, **kwargs: Any) -> int:
        return 0

    monkeypatch.setattr("flowkeeper.runtime.executor.start_for_event", lost)
    ran = await run_to_end(engine, (await engine.start("tests", "emitter", None, {})).id, limit=GUARD)
    assert ran.status is InstanceStatus.COMPLETED
    assert await instances(engine.store) == []

    sink = ScheduledStartSink(engine)
    processor = OutboxProcessor(engine.store, Settings().outbox_processor, internal_sinks=[sink])
    assert await processor.run_once() == 1
    [started] = await instances(engine.store)
    assert started.input[0]["data"] == {"n": 8}
    [row] = await engine.store.list_outbox()
    assert row.delivered_to == ()  # an internal sink: not shown to operators
    assert processor.figures().deliveries == {}
    # Handed the same event again (a processor that died before settling it): no second run.
    await sink.deliver(row.event)
    assert [r.id for r in await instances(engine.store)] == [started.id]


async def test_on_any_starts_one_instance_per_matching_event(engine: Engine) -> None:
    await deploy(
        engine,
        scheduled(
            "  on:\n    any:\n      - with: {type: com.example.a}\n      - with: {type: com.example.b}\n"
        ),
    )
    for n, type in enumerate(("com.example.a", "com.example.b", "com.example.c", "com.example.a")):
        await engine.publish(event(type, f"e-{n}"))
    assert [r.input[0]["id"] for r in await instances(engine.store)] == ["e-0", "e-1", "e-3"]


ON_ALL = """\
  on:
    all:
      - with: {type: com.example.order.paid}
        correlate:
          order: {from: .data.order}
      - with: {type: com.example.order.packed}
        correlate:
          order: {from: .data.order}
"""


async def test_on_all_starts_one_instance_per_complete_set_of_correlated_events(
    engine: Engine, replica: Engine
) -> None:
    await deploy(engine, scheduled(ON_ALL))
    paid_1 = event("com.example.order.paid", "p-1", order=1)
    paid_2 = event("com.example.order.paid", "p-2", order=2)
    packed_2 = event("com.example.order.packed", "k-2", order=2)
    packed_1 = event("com.example.order.packed", "k-1", order=1)

    await engine.publish(paid_1)
    await replica.publish(paid_2)
    assert await instances(engine.store) == []
    await engine.publish(packed_2)
    await asyncio.gather(engine.publish(paid_1), replica.publish(paid_1))  # duplicates
    [first] = await instances(engine.store)
    assert first.input == [paid_2, packed_2]
    await replica.publish(packed_1)
    created = await instances(engine.store)
    assert [r.input for r in created] == [[paid_2, packed_2], [paid_1, packed_1]]
    assert (await schedule_of(engine.store)).pending is None
    for record in created:
        assert (await run_to_end(engine, record.id, limit=GUARD)).status is InstanceStatus.COMPLETED


# -- deployment -------------------------------------------------------------------------------


async def test_the_latest_version_owns_the_schedule(engine: Engine) -> None:
    await deploy(engine, scheduled("  every: PT1H\n"), version="1.0.0")
    assert (await schedule_of(engine.store)).version == "1.0.0"
    await deploy(engine, scheduled("  cron: '0 0 * * *'\n"), version="2.0.0")
    replaced = await schedule_of(engine.store)
    assert (replaced.version, replaced.kind) == ("2.0.0", ScheduleKind.CRON)
    # An older version deployed later changes nothing.
    await deploy(engine, scheduled("  every: PT1M\n"), version="1.5.0")
    assert await schedule_of(engine.store) == replaced
    # The same schedule in a newer version keeps its due time (a redeploy does not postpone it).
    await deploy(engine, scheduled("  cron: '0 0 * * *'\n"), version="2.1.0")
    kept = await schedule_of(engine.store)
    assert (kept.version, kept.next_due) == ("2.1.0", replaced.next_due)
    # A newer version without a schedule removes it.
    await deploy(engine, DO, version="3.0.0")
    assert await engine.store.get_schedule("tests", "wf") is None
    await deploy(engine, scheduled("  every: PT1M\n"), version="2.5.0")
    assert await engine.store.get_schedule("tests", "wf") is None


@pytest.mark.parametrize(
    ("schedule", "pointer", "message"),
    [
        ("  cron: '61 * * * *'\n", "/schedule/cron", "minute value 61 is out of range"),
        ("  cron: '0 0 30 2 *'\n", "/schedule/cron", "never matches"),
        ("  every: PT0S\n", "/schedule/every", "longer than zero"),
        ("  every: PT1H\n  cron: '* * * * *'\n", "/schedule", "exactly one of"),
    ],
)
async def test_an_invalid_schedule_is_refused_and_nothing_is_stored(
    engine: Engine, schedule: str, pointer: str, message: str
) -> None:
    with pytest.raises(DefinitionError) as refused:
        await deploy(engine, scheduled(schedule))
    [problem] = refused.value.problems
    assert problem.pointer == pointer
    assert message in problem.message
    with pytest.raises(DefinitionNotFound):
        await engine.store.get_definition("tests", "wf")


async def test_the_scheduler_reconciles_definitions_stored_without_their_schedule(engine: Engine) -> None:
    # As if deployed before schedules were kept (or a crash between the two writes).
    record, _ = await engine.deploy(definition(DO))
    loaded = load_definition(definition(scheduled("  every: PT1H\n"), version="2.0.0"))
    await engine.store.put_definition(
        replace(
            record,
            name="wf",
            version="2.0.0",
            document=loaded.document,
            source=loaded.source,
            content_hash=loaded.content_hash,
        )
    )
    assert await engine.store.get_schedule("tests", "wf") is None
    assert await reconcile(engine.store) == 1
    assert (await schedule_of(engine.store)).version == "2.0.0"
    assert await reconcile(engine.store) == 1  # nothing more to do


async def test_a_stored_schedule_that_no_longer_parses_is_stopped_not_fired(engine: Engine) -> None:
    await deploy(engine, DO)
    now = await engine.store.now()
    broken = ScheduleRecord("tests", "wf", "1.0.0", ScheduleKind.CRON, {"cron": "0 0 31 2 *"}, next_due=now)
    await engine.store.put_schedule("tests", "wf", "1.0.0", broken)
    service = ScheduleService(engine, Settings())

    assert await service.run_once(now) == 0
    assert (await schedule_of(engine.store)).next_due is None
    assert await instances(engine.store) == []
    assert await service.run_once(now + HOUR) == 0
