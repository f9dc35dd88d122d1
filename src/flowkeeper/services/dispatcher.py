"""The dispatcher: claims runnable instances in batches and runs them.

Runnable: started elsewhere, resumed by an event or a timer, retried, or left behind by
a crashed replica whose lease expired. Claims go in batches of the free slots
(``engine.concurrency`` runs at most) under leases with fencing tokens (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL); each run renews its lease while it goes. The dispatcher
sleeps until something signals work (this process's engine, or another replica through
a database notification), ``engine.poll_interval`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from flowkeeper.config import EngineSettings
from flowkeeper.runtime import Engine, Worker
from flowkeeper.services.base import ServiceHealth

log = logging.getLogger("flowkeeper.dispatcher")


class Dispatcher:
    """A :class:`~flowkeeper.services.base.BackgroundService` claiming and running instances."""

    name = "dispatcher"

    def __init__(self, engine: Engine, settings: EngineSettings) -> None:
        self.engine = engine
        self.worker = Worker(
            engine,
            concurrency=settings.concurrency,
            poll_interval=settings.poll_interval.total_seconds(),
            fire_timers=False,
        )
        self._task_running = False
        self._last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run until ``stop`` is set; database failures are retried with back-off."""
        self._task_running = True
        backoff = 0.1

        async def stopped() -> bool:
            self._last_error = None
            return stop.is_set()

        try:
            while not stop.is_set():
                try:
                    await self.worker.run_until(stopped)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database went away: report, back off, go on
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    log.error("Dispatcher pass failed (%s); retrying in %.1fs", self._last_error, backoff)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            self._task_running = False

    def wake(self) -> None:
        self.engine.notify_work()

    def health(self) -> ServiceHealth:
        if not self._task_running:
            return ServiceHealth("Unhealthy", "not running")
        if self._last_error is not None:
            return ServiceHealth("Degraded", f"last pass failed: {self._last_error}")
        return ServiceHealth("Healthy", f"{len(self.engine.runs)} instance run(s) in progress")

    def leases_held(self) -> int:
        """Instances this process runs now (each under a lease of ours)."""
        return len(self.engine.runs)
