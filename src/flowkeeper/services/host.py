"""Hosts the background services of one process and reports their health.

- dispatcher: claims runnable instances and runs them (``services.dispatcher``);
- timer service: fires due timers at their due time (``services.timers``);
- outbox processor: delivers emitted events to the configured sinks (``services.outbox``);
- cleanup service: applies the retention settings (``services.cleanup``);
- scheduler: starts the instances of scheduled definitions (``services.schedules``).

On PostgreSQL a notification listener (``store.notifications``) wakes the right service
when another replica made work for it, so a start, an event or a new timer is seen in
milliseconds rather than at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from flowkeeper.config import Settings
from flowkeeper.runtime import Engine
from flowkeeper.services.base import BackgroundService, ServiceHealth
from flowkeeper.services.cleanup import CleanupService
from flowkeeper.services.dispatcher import Dispatcher
from flowkeeper.services.outbox import OutboxProcessor
from flowkeeper.services.schedule_sink import ScheduledStartSink
from flowkeeper.services.schedules import ScheduleService
from flowkeeper.services.timers import TimerService
from flowkeeper.store.notifications import RECONNECTED, Listener
from flowkeeper.store.port import Store

log = logging.getLogger("flowkeeper.services")

#: How often the metrics snapshot (instance counts, outbox backlog) is refreshed.
METRICS_REFRESH = 5.0


class ServiceHost:
    """Runs the background services until stopped; graceful on ``stop``."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        refresh: Callable[[Store], Awaitable[object]] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.dispatcher = Dispatcher(engine, settings.engine)
        self.timers = TimerService(engine, settings.timer_service)
        # Emitted events also go to the sink that repairs their ``on`` starts after a crash.
        self.outbox = OutboxProcessor(
            engine.store, settings.outbox_processor, internal_sinks=[ScheduledStartSink(engine)]
        )
        self.cleanup = CleanupService(engine.store, settings)
        self.scheduler = ScheduleService(engine, settings)
        self.services: list[BackgroundService] = [
            self.dispatcher,
            self.timers,
            self.outbox,
            self.cleanup,
            self.scheduler,
        ]
        # This process's own commits wake the outbox at once (other replicas' through
        # the database notification): on SQLite nothing else would before the next poll.
        engine.outbox_listeners.append(self.outbox.wake)
        self.listener: Listener | None = engine.store.notification_listener(self._notified)
        self._refresh = refresh
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every service (idempotent)."""
        if self._tasks:
            return
        for service in self.services:
            task = asyncio.create_task(service.run(self._stop), name=f"flowkeeper-{service.name}")
            self._tasks.append(task)
        if self.listener is not None:
            self._tasks.append(asyncio.create_task(self.listener.run(self._stop), name="flowkeeper-listener"))
        if self._refresh is not None:
            self._tasks.append(asyncio.create_task(self._refresh_loop(), name="flowkeeper-metrics"))

    async def stop(self, grace: float) -> None:
        """Stop claiming work; let running instances park for ``grace`` seconds, then cancel them.

        A cancelled run gives its lease back, so another replica can take it at once.
        The outbox processor finishes the deliveries it started within the same grace.
        """
        self._stop.set()
        self.engine.notify_work()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self.engine.drain(), grace)
        except TimeoutError:
            log.warning(
                "Shutdown grace period of %.0fs over: cancelling the instance runs still going", grace
            )
        await self.engine.aclose()

    def _notified(self, note: str) -> None:
        """A database notification (another replica made work, or we reconnected)."""
        if note == "work":
            self.engine.notify_work()
        elif note.startswith("timer:"):
            # The replica that created the timer expects it already (and fires it at its
            # due time, claiming its instance where its state is warm); every replica,
            # that one too, looks again a moment later, should the creator be gone.
            with contextlib.suppress(ValueError):
                self.timers.expect_elsewhere([float(note.partition(":")[2])])
        elif note == "outbox":
            self.outbox.wake()
        elif note == "definition":
            self.engine.definitions.forget_latest()
            self.scheduler.wake()
        elif note == RECONNECTED:  # anything notified meanwhile was missed
            self.engine.definitions.forget_latest()
            for service in self.services:
                service.wake()

    async def _refresh_loop(self) -> None:
        assert self._refresh is not None
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                await self._refresh(self.engine.store)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), METRICS_REFRESH)

    async def check(self) -> Mapping[str, ServiceHealth]:
        """The health endpoint's probe (see ``api.health.HealthProbe``)."""
        return self.health()

    def health(self) -> dict[str, ServiceHealth]:
        """The state of each background service (the guide's entry names, plus ours)."""
        entries = {service.name: service.health() for service in self.services}
        if self.listener is not None:
            connected = self.listener.connected.is_set()
            entries["notifications"] = ServiceHealth(
                "Healthy" if connected else "Degraded",
                "listening" if connected else f"not listening ({self.listener.last_error}); polling",
            )
        return entries
