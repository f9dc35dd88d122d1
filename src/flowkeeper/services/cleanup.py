"""The cleanup service: deletes what has outlived its retention, in bounded batches.

Every ``cleanup_service.processing_interval`` (the first pass shortly after start) it
removes, each with its own retention counted back from the database clock:

- finished instances (completed, failed, cancelled) completed more than
  ``completed_workflow_retention`` ago, with their bookmarks, timers, execution log and
  event deliveries;
- execution-log rows older than ``execution_log_retention`` of finished instances;
- delivered outbox rows older than ``outbox_event_retention``;
- received events older than ``events.retention``.

Each kind is deleted ``batch_size`` rows per transaction until a batch comes back
short, yielding to the event loop between batches, so a large backlog neither holds
long locks nor starves the rest of the process. Replicas may all run it: the store's
deletes skip rows another one is deleting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from flowkeeper.config import Settings
from flowkeeper.services.base import ServiceHealth
from flowkeeper.store.port import Store
from flowkeeper.waiting import until_any

log = logging.getLogger("flowkeeper.cleanup")

#: Seconds from start to the first pass: long enough not to compete with start-up.
FIRST_PASS_DELAY = 10.0

#: The first retry after a failed pass; doubled each time, at most the processing interval.
RETRY_DELAY = 5.0


@dataclass(frozen=True, slots=True)
class CleanupCounts:
    """Rows removed, by kind."""

    instances: int = 0
    log_entries: int = 0
    outbox_events: int = 0
    received_events: int = 0

    def __add__(self, other: CleanupCounts) -> CleanupCounts:
        return CleanupCounts(
            self.instances + other.instances,
            self.log_entries + other.log_entries,
            self.outbox_events + other.outbox_events,
            self.received_events + other.received_events,
        )

    @property
    def total(self) -> int:
        return self.instances + self.log_entries + self.outbox_events + self.received_events


@dataclass(frozen=True, slots=True)
class CleanupFigures:
    """What the service has done since it started, for metrics."""

    #: Passes that completed, and passes that failed part-way.
    passes: int = 0
    failed_passes: int = 0
    #: Rows removed by every pass since start (counters).
    removed: CleanupCounts = field(default_factory=CleanupCounts)
    #: Rows removed by the last completed pass, and when it ended (database clock).
    last_removed: CleanupCounts = field(default_factory=CleanupCounts)
    last_pass_at: datetime | None = None


class CleanupService:
    """A :class:`~flowkeeper.services.base.BackgroundService` applying the retention settings."""

    name = "cleanup-service"

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        first_pass_delay: float = FIRST_PASS_DELAY,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.store = store
        self.settings = settings.cleanup_service
        self.event_retention = settings.events.retention
        self.first_pass_delay = first_pass_delay
        self.retry_delay = retry_delay
        self._wake = asyncio.Event()
        self._figures = CleanupFigures()
        self._last_error: str | None = None
        self._started = False

    # -- BackgroundService ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run a pass every processing interval until ``stop`` is set."""
        self._started = True
        interval = self.settings.processing_interval.total_seconds()
        delay = self.first_pass_delay
        backoff = self.retry_delay
        while not await self._sleep(stop, delay):
            self._wake.clear()  # a wake() from here on means another pass
            try:
                await self.run_once(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: report, back off, go on
                self._failed(exc)
                delay = min(backoff, interval)
                backoff = min(backoff * 2, interval)
                log.error("Cleanup pass failed (%s); retrying in %.0fs", self._last_error, delay)
            else:
                delay, backoff = interval, self.retry_delay

    def wake(self) -> None:
        """Run a pass now rather than at the end of the interval."""
        self._wake.set()

    def health(self) -> ServiceHealth:
        """Degraded while the last pass failed; otherwise when it ran and what it removed."""
        if self._last_error is not None:
            return ServiceHealth("Degraded", f"last pass failed: {self._last_error}")
        figures = self._figures
        if figures.last_pass_at is None:
            return ServiceHealth("Healthy", "no pass yet" if self._started else "not started")
        r = figures.last_removed
        return ServiceHealth(
            "Healthy",
            f"last pass at {figures.last_pass_at.isoformat()} removed {r.instances} instance(s), "
            f"{r.log_entries} log entries, {r.outbox_events} outbox event(s), "
            f"{r.received_events} received event(s)",
        )

    def figures(self) -> CleanupFigures:
        """Passes and rows removed since start (a snapshot)."""
        return self._figures

    # -- one pass ------------------------------------------------------------------------------

    async def run_once(self, stop: asyncio.Event | None = None) -> CleanupCounts:
        """One pass over every kind of row; returns what it removed.

        With ``stop``, a pass interrupted by shutdown ends after its current batch.
        """
        started = time.perf_counter()
        s = self.settings
        store = self.store
        # One clock reading for the whole pass: every cutoff is relative to the same
        # moment of the database's clock (replicas' clocks may disagree).
        now = await store.now()
        counts = CleanupCounts(
            instances=await self._drain(
                store.delete_finished_instances, now - s.completed_workflow_retention, stop
            ),
            log_entries=await self._drain(store.delete_log_entries, now - s.execution_log_retention, stop),
            outbox_events=await self._drain(
                store.delete_delivered_outbox, now - s.outbox_event_retention, stop
            ),
            received_events=await self._drain(store.delete_events, now - self.event_retention, stop),
        )
        elapsed = int((time.perf_counter() - started) * 1000)
        figures = self._figures
        self._figures = CleanupFigures(
            passes=figures.passes + 1,
            failed_passes=figures.failed_passes,
            removed=figures.removed + counts,
            last_removed=counts,
            last_pass_at=now,
        )
        self._last_error = None
        log.info(
            "Cleanup pass removed %d finished instance(s), %d execution-log entries, "
            "%d delivered outbox event(s) and %d received event(s) in %dms",
            counts.instances, counts.log_entries, counts.outbox_events, counts.received_events, elapsed,
            extra={
                "instances_removed": counts.instances,
                "log_entries_removed": counts.log_entries,
                "outbox_events_removed": counts.outbox_events,
                "received_events_removed": counts.received_events,
                "duration_ms": elapsed,
            },
        )  # fmt: skip
        return counts

    async def _drain(
        self,
        delete: Callable[[datetime, int], Awaitable[int]],
        cutoff: datetime,
        stop: asyncio.Event | None,
    ) -> int:
        """Delete in batches until one comes back short (nothing more is due)."""
        batch = self.settings.batch_size
        total = 0
        while True:
            removed = await delete(cutoff, batch)
            total += removed
            if removed < batch or (stop is not None and stop.is_set()):
                return total
            await asyncio.sleep(0)  # let the instance runs of this process go on between batches

    # -- helpers -------------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._figures = replace(self._figures, failed_passes=self._figures.failed_passes + 1)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> bool:
        """Wait ``seconds``, or less when woken; True when ``stop`` is set."""
        await until_any(max(seconds, 0.0), stop, self._wake)
        return stop.is_set()
