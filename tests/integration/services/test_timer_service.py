"""The timer service: fires durable timers when they come due, once, on the database clock."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest

from flowkeeper.config import EngineSettings, TimerServiceSettings
from flowkeeper.records import InstanceRecord, InstanceStatus, LogEvent
from flowkeeper.runtime import Engine
from flowkeeper.services.dispatcher import Dispatcher
from flowkeeper.services.timers import TimerService
from flowkeeper.store.port import Delivery
from tests.integration.runtime.conftest import GUARD, deploy

WAIT = """
do:
  - pause:
      wait: {milliseconds: 300}
  - done:
      set: {done: true}
"""


class Running:
    """A dispatcher and a timer service per engine, stopped at the end."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.timers: list[TimerService] = []

    def start(self, engine: Engine, settings: TimerServiceSettings | None = None) -> TimerService:
        timers = TimerService(engine, settings or TimerServiceSettings())
        dispatcher = Dispatcher(engine, EngineSettings())
        self.tasks += [
            asyncio.create_task(timers.run(self.stop)),
            asyncio.create_task(dispatcher.run(self.stop)),
        ]
        self.timers.append(timers)
        return timers

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


@pytest.fixture
async def running():  # type: ignore[no-untyped-def]
    services = Running()
    yield services
    await services.close()


async def _fired_at(engine: Engine, instance_id: str) -> tuple[datetime, datetime]:
    """(due, resumed) of the instance's one wait, from its log (database clock): when it
    started + 300 ms, and when it completed."""
    log = await engine.store.get_log(instance_id)
    [started] = [e for e in log if e.reference == "/do/0/pause" and e.event is LogEvent.STARTED]
    [completed] = [e for e in log if e.reference == "/do/0/pause" and e.event is LogEvent.COMPLETED]
    return started.at + timedelta(milliseconds=300), completed.at


async def test_a_wait_is_fired_by_the_timer_service(engines, running: Running) -> None:
    engine = engines()
    timers = running.start(engine)
    await deploy(engine, WAIT)
    started = await engine.start("tests", "wf", None, {})
    async with asyncio.timeout(GUARD):
        finished = await engine.wait_for(started.id)
    assert finished.status is InstanceStatus.COMPLETED
    assert finished.output == {"done": True}
    assert timers.figures().fired == 1
    due, fired = await _fired_at(engine, started.id)
    assert fired >= due
    assert await engine.store.list_timers(started.id) == []
    assert timers.health().status == "Healthy"


async def test_two_replicas_fire_each_timer_once(engines, running: Running) -> None:
    first, second = engines(owner="replica-1"), engines(owner="replica-2")
    services = [running.start(first), running.start(second)]
    await deploy(first, WAIT)
    ids = [(await (first if n % 2 else second).start("tests", "wf", None, {"n": n})).id for n in range(20)]
    async with asyncio.timeout(GUARD):
        for instance_id in ids:  # ended by whichever replica ran it
            waits = [asyncio.ensure_future(e.wait_for(instance_id)) for e in (first, second)]
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            assert done.pop().result().status is InstanceStatus.COMPLETED
    assert sum(s.figures().fired for s in services) == 20
    for instance_id in ids:
        log = await first.store.get_log(instance_id)
        completions = [e for e in log if e.reference == "/do/0/pause" and e.event is LogEvent.COMPLETED]
        assert len(completions) == 1


async def test_a_skewed_host_clock_still_fires_on_the_database_clock(
    engines, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host's clock runs 10 s ahead of the database's: due times are on the database
    # clock, so the timer neither fires early nor waits for the host's idea of time.
    real = time.time
    monkeypatch.setattr("flowkeeper.services.timers.time.time", lambda: real() + 10.0)
    engine = engines()
    running.start(engine)
    await deploy(engine, WAIT)
    started = await engine.start("tests", "wf", None, {})
    async with asyncio.timeout(GUARD):
        finished = await engine.wait_for(started.id)
    assert finished.status is InstanceStatus.COMPLETED
    due, fired = await _fired_at(engine, started.id)
    assert fired >= due


async def test_timers_beyond_the_long_running_threshold_stay_in_the_database(
    engines, running: Running
) -> None:
    engine = engines()
    timers = running.start(engine, TimerServiceSettings(long_running_threshold=timedelta(seconds=1)))
    await deploy(engine, "do:\n  - pause:\n      wait: {hours: 1}\n")
    started = await engine.start("tests", "wf", None, {})
    async with asyncio.timeout(GUARD):
        await engine.drain()
    assert (await engine.store.get_instance(started.id)).status is InstanceStatus.SUSPENDED
    assert timers.figures().near == 0
    [timer] = await engine.store.list_timers(started.id)
    timers.expect([timer.due_at])
    assert timers.figures().near == 0
    timers.expect([await engine.store.now()])
    assert timers.figures().near == 1


async def test_a_wake_looks_at_the_database_for_timers_nobody_announced(engines, running: Running) -> None:
    # Another replica's timer, and its notification missed (a reconnect): the poll is an
    # hour away, the wake that follows a reconnect makes the service ask at once.
    here, elsewhere = engines(owner="here"), engines(owner="elsewhere")
    timers = running.start(here, TimerServiceSettings(processing_interval=timedelta(hours=1)))
    async with asyncio.timeout(GUARD):
        await timers.polled.wait()  # its first poll is done: the next is an hour away
    await deploy(elsewhere, WAIT)
    started = await elsewhere.start("tests", "wf", None, {})
    async with asyncio.timeout(GUARD):
        await elsewhere.drain()  # parked on its timer, which `here` was never told about
        timers.wake()
        finished = await here.wait_for(started.id)
    assert finished.status is InstanceStatus.COMPLETED
    assert timers.figures().fired == 1


async def test_a_timer_announced_by_a_notification_is_fired_once_overdue(engines, running: Running) -> None:
    # Another replica created the timer and is gone; its notification reached us. The
    # poll is an hour away: the announcement alone makes this service fire it, after
    # its due time, never before.
    here, elsewhere = engines(owner="here"), engines(owner="elsewhere")
    timers = running.start(here, TimerServiceSettings(processing_interval=timedelta(hours=1)))
    async with asyncio.timeout(GUARD):
        await timers.polled.wait()
    await deploy(elsewhere, WAIT)
    started = await elsewhere.start("tests", "wf", None, {})
    async with asyncio.timeout(GUARD):
        await elsewhere.drain()
    [timer] = await elsewhere.store.list_timers(started.id)
    # Announced three times (a burst of notifications of one grid slot): one look.
    timers.expect_elsewhere([timer.due_at.timestamp()] * 3)
    assert timers.figures().near == 1
    async with asyncio.timeout(GUARD):
        finished = await here.wait_for(started.id)
    assert finished.status is InstanceStatus.COMPLETED
    assert timers.figures().fired == 1
    due, resumed = await _fired_at(here, started.id)
    assert resumed >= due


async def test_a_run_held_until_its_due_time_gives_its_lease_back_on_shutdown(engines) -> None:
    # A timer fired ahead: its instance is claimed and its run waits for the due time.
    # Shut down meanwhile, the process gives the lease back, so another replica need
    # not wait for it to expire.
    engine = engines(lease=timedelta(minutes=10))
    started, delivery = await _fired_a_minute_ahead(engine)
    assert delivery.claimed is not None and delivery.claimed.lease_owner == engine.owner
    engine.run_delivered(delivery, not_before=time.time() + 60)
    assert not engine.idle()
    await asyncio.sleep(0)  # one turn of the loop: the run starts waiting
    await engine.aclose()
    stored = await engine.store.get_instance(started.id)
    assert stored.lease_owner is None
    assert stored.status is InstanceStatus.RUNNING  # its timer fired: runnable by anyone


async def test_a_held_run_resumes_no_sooner_than_asked_even_when_sleeps_end_early(
    engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An event loop's timers run on its cached time: on a busy loop a sleep can end
    # early. The run held for a timer fired ahead must still not resume before its time.
    engine = engines(lease=timedelta(minutes=10))
    started, delivery = await _fired_a_minute_ahead(engine)
    real_sleep = asyncio.sleep

    async def ends_early(delay: float, result: object = None) -> object:
        return await real_sleep(delay / 2, result)

    monkeypatch.setattr(asyncio, "sleep", ends_early)
    not_before = time.time() + 0.2
    engine.run_delivered(delivery, not_before=not_before)
    async with asyncio.timeout(GUARD):
        finished = await engine.wait_for(started.id)
    assert finished.status is InstanceStatus.COMPLETED
    log = await engine.store.get_log(started.id)
    [completed] = [e for e in log if e.reference == "/do/0/pause" and e.event is LogEvent.COMPLETED]
    assert completed.at.timestamp() >= not_before


async def _fired_a_minute_ahead(engine: Engine) -> tuple[InstanceRecord, Delivery]:
    """An instance parked on a one-minute wait whose timer was just fired ahead and its
    instance claimed for ``engine`` (as the timer service does, 20 ms ahead)."""
    await deploy(engine, "do:\n  - pause:\n      wait: {minutes: 1}\n")
    started = await engine.start("tests", "wf", None, {})
    async with asyncio.timeout(GUARD):
        await engine.drain()
    _, [delivery] = await engine.store.fire_and_claim_timers(
        10, engine.owner, engine.lease, ahead=timedelta(minutes=2)
    )
    return started, delivery
