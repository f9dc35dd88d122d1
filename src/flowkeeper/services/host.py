"""Hosts the background services of one process and reports their health.

- dispatcher: claims runnable instances (started elsewhere, resumed by events or
  timers, or left behind by a crashed replica once its lease expired) and runs them,
  at most ``engine.concurrency`` at a time;
- timer service: fires due timers at their due time (the loop sleeps until the next
  one, or until the engine signals new work), with ``timer_service.processing_interval``
  as the longest sleep;
- outbox processor: emitted events are routed to waiting instances inside the engine
  when they are committed; delivery to external sinks is configured with the outbox
  settings (no sink configured: nothing to deliver).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from flowkeeper.config import Settings
from flowkeeper.runtime import Engine, Worker
from flowkeeper.store.port import Store

log = logging.getLogger("flowkeeper.services")

Status = Literal["Healthy", "Degraded", "Unhealthy"]


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One background service's state, as the health endpoint reports it."""

    status: Status
    description: str | None = None


class ServiceHost:
    """Runs the dispatcher and timer loop until stopped; graceful on ``stop``."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        refresh: Callable[[Store], Awaitable[object]] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.worker = Worker(
            engine,
            concurrency=settings.engine.concurrency,
            poll_interval=min(
                settings.engine.poll_interval.total_seconds(),
                settings.timer_service.processing_interval.total_seconds(),
            ),
        )
        self._refresh = refresh
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._last_loop: float | None = None
        self._last_error: str | None = None

    async def start(self) -> None:
        """Start the loops (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="flowkeeper-dispatcher")
        if self._refresh is not None and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_loop(), name="flowkeeper-metrics")

    async def stop(self, grace: float) -> None:
        """Stop claiming work; let running instances park for ``grace`` seconds, then cancel them.

        A cancelled run gives its lease back, so another replica can take it at once.
        """
        self._stop.set()
        self.engine.notify_work()
        for task in (self._task, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            await asyncio.wait_for(self.engine.drain(), grace)
        except TimeoutError:
            log.warning(
                "Shutdown grace period of %.0fs over: cancelling the instance runs still going", grace
            )
        await self.engine.aclose()

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                await self.worker.run_until(self._stopped)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: report, back off, go on
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.error("Dispatcher loop failed (%s); retrying in %.1fs", self._last_error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _stopped(self) -> bool:
        self._last_loop = time.monotonic()
        self._last_error = None
        return self._stop.is_set()

    async def _refresh_loop(self) -> None:
        assert self._refresh is not None
        while True:
            with contextlib.suppress(Exception):
                await self._refresh(self.engine.store)
            await asyncio.sleep(5.0)

    async def check(self) -> dict[str, ServiceHealth]:
        """The health endpoint's probe (see ``api.health.HealthProbe``)."""
        return self.health()

    def health(self) -> dict[str, ServiceHealth]:
        """The state of each background service."""
        if self._task is None:
            loop = ServiceHealth("Unhealthy", "not started")
        elif self._task.done() and not self._stop.is_set():
            loop = ServiceHealth("Unhealthy", "the dispatcher loop has stopped")
        elif self._last_error is not None:
            loop = ServiceHealth("Degraded", f"last pass failed: {self._last_error}")
        else:
            running = len(self.engine.runs)
            loop = ServiceHealth("Healthy", f"{running} instance run(s) in progress")
        return {
            "dispatcher": loop,
            "timer-service": loop,
            "outbox-processor": ServiceHealth(
                "Healthy",
                "emitted events are routed to waiting instances on commit; no external sink configured",
            ),
        }
