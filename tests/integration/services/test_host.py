"""The services host: every background service runs, reports its health, exposes its
figures as metrics, and stops gracefully."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from flowkeeper.config import load_settings
from flowkeeper.records import InstanceStatus
from flowkeeper.services import ServiceHost
from flowkeeper.services.metrics import ServiceCollector
from tests.integration.runtime.conftest import GUARD, deploy

SERVICES = {"dispatcher", "timer-service", "outbox-processor", "cleanup-service", "scheduler"}


async def test_the_host_runs_every_service_and_reports_them(engines) -> None:
    engine = engines()
    host = ServiceHost(engine, load_settings(env={}))
    registry = CollectorRegistry()
    registry.register(ServiceCollector(host))
    await host.start()
    try:
        body = "do:\n  - pause:\n      wait: {milliseconds: 50}\n  - done:\n      set: {ok: true}\n"
        await deploy(engine, body)
        started = await engine.start("tests", "wf", None, {})
        async with asyncio.timeout(GUARD):
            finished = await engine.wait_for(started.id)
        assert finished.status is InstanceStatus.COMPLETED

        health = await host.check()
        assert set(health) >= SERVICES
        assert {health[name].status for name in SERVICES} == {"Healthy"}
        if engine.store.url.startswith("postgresql"):
            assert "notifications" in health
        exposition = generate_latest(registry).decode()
        assert "workflow_timers_fired_total 1.0" in exposition
        assert "workflow_leases_held 0.0" in exposition
        for name in SERVICES:
            assert f'workflow_service_healthy{{service="{name}"}} 1.0' in exposition
    finally:
        await host.stop(grace=5.0)
    assert (await host.check())["dispatcher"].status == "Unhealthy"  # stopped


async def test_an_emitted_event_is_delivered_at_once_not_at_the_next_poll(engines, receivers) -> None:
    # The outbox polls once an hour here: only the wake-up of the commit that wrote the
    # row (this process's own, on either database) can deliver it within the guard.
    receiver = await receivers()
    settings = load_settings(
        env={
            "FLOWKEEPER__OUTBOX_PROCESSOR__PROCESSING_INTERVAL": "1h",
            "FLOWKEEPER__OUTBOX_PROCESSOR__SINKS": (
                f'[{{"name": "hook", "type": "webhook", "url": "{receiver.url}"}}]'
            ),
        }
    )
    engine = engines()
    host = ServiceHost(engine, settings)
    await host.start()
    try:
        await deploy(
            engine,
            "do:\n  - tell:\n      emit:\n        event:\n          with:\n"
            "            source: https://tests.example/host\n            type: com.example.told\n",
        )
        started = await engine.start("tests", "wf", None, {})
        [delivered] = await receiver.wait_for(lambda requests: len(requests) >= 1, "the emitted event")
        assert delivered.event["type"] == "com.example.told"
        assert (await engine.wait_for(started.id)).status is InstanceStatus.COMPLETED
    finally:
        await host.stop(grace=5.0)
