"""The scheduler: starts the time-driven runs of scheduled workflows (``every``, ``cron``, ``after``).

Each pass, on the database clock:

1. ``after`` schedules whose last run has ended get their next due time (that run's
   end plus the delay);
2. every due schedule is fired: in one transaction the row moves on to its next tick
   (conditional on the state it was read in) and a ``pending`` instance is inserted,
   which the dispatcher of any replica claims. Replicas race on that update; one wins
   each tick. Ticks missed while no scheduler ran are not made up: the schedule fires
   once and moves on to the next future tick.

Between passes it sleeps until the earliest due time, at most ``poll_interval``
(a deployment or a run ending elsewhere is noticed by then), or until woken: by a
deployment through this process's engine, by a scheduled run of this process ending,
or by :meth:`ScheduleService.wake`. Event-driven runs (``on``) are started where events
are published (:func:`flowkeeper.runtime.scheduled_starts.start_for_event`); those of
events that workflows emit also by the outbox processor, should the emitting process
have died before starting them (:mod:`flowkeeper.services.schedule_sink`).

At start it reconciles the schedules with the latest version of every definition
(definitions deployed before schedules were kept, a deployment cut short by a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from flowkeeper.config import Settings
from flowkeeper.errors import DefinitionError
from flowkeeper.records import InstanceRecord
from flowkeeper.runtime import Engine, Interceptor
from flowkeeper.runtime.scheduled_starts import (
    KEY_PREFIX,
    add_deploy_listener,
    plan_of,
    reconcile,
    remove_deploy_listener,
    tick_instance,
)
from flowkeeper.schedule_records import ScheduleRecord
from flowkeeper.services.base import ServiceHealth
from flowkeeper.waiting import until_any

log = logging.getLogger("flowkeeper.scheduler")

#: Schedules read per query (a pass goes on until a query comes back short).
BATCH_SIZE = 100

#: The first retry after a failed pass; doubled each time, at most ``poll_interval``.
RETRY_DELAY = 0.5


@dataclass(frozen=True, slots=True)
class ScheduleFigures:
    """What the scheduler has done since it started, for metrics."""

    #: Instances this scheduler started (ticks it won).
    started: int = 0
    #: Due ticks another replica fired first (or a redeployment moved on).
    lost: int = 0
    passes: int = 0
    failed_passes: int = 0
    last_pass_at: datetime | None = None
    next_due: datetime | None = None


class _RunEnded(Interceptor):
    """Wakes the scheduler when a scheduled run of this process ends (``after`` waits for it)."""

    def __init__(self, service: ScheduleService) -> None:
        self._service = service

    def instance_finished(self, instance: InstanceRecord) -> None:
        if (instance.idempotency_key or "").startswith(KEY_PREFIX):
            self._service.wake()


class ScheduleService:
    """A :class:`~flowkeeper.services.base.BackgroundService` firing due workflow schedules."""

    name = "scheduler"

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        poll_interval: float | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        #: The longest sleep between passes (default: the timer service's interval).
        self.poll_interval = (
            poll_interval
            if poll_interval is not None
            else settings.timer_service.processing_interval.total_seconds()
        )
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._figures = ScheduleFigures()
        self._last_error: str | None = None
        self._reconciled = False
        self._running = False

    # -- BackgroundService ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Fire due schedules until ``stop`` is set."""
        watcher = _RunEnded(self)
        # The engine calls its interceptors' instance_finished from its live list.
        self.engine.interceptors.append(watcher)
        add_deploy_listener(self.engine, self.wake)
        self._running = True
        backoff = RETRY_DELAY
        try:
            while not stop.is_set():
                self._wake.clear()  # a wake() from here on means another pass
                try:
                    if not self._reconciled:
                        await reconcile(self.store)
                        self._reconciled = True
                    await self.run_once()
                    delay = await self._seconds_to_next_due()
                    backoff = RETRY_DELAY
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database went away: report, back off, go on
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    self._figures = replace(self._figures, failed_passes=self._figures.failed_passes + 1)
                    delay = min(backoff, self.poll_interval)
                    backoff = min(backoff * 2, self.poll_interval)
                    log.error("Scheduler pass failed (%s); retrying in %.1fs", self._last_error, delay)
                await self._sleep(stop, delay)
        finally:
            self._running = False
            remove_deploy_listener(self.engine, self.wake)
            with contextlib.suppress(ValueError):
                self.engine.interceptors.remove(watcher)

    def wake(self) -> None:
        """Look at the schedules now (a deployment, a scheduled run ended)."""
        self._wake.set()

    def health(self) -> ServiceHealth:
        """Degraded while the last pass failed; otherwise what it started and what is next."""
        if self._last_error is not None:
            return ServiceHealth("Degraded", f"last pass failed: {self._last_error}")
        figures = self._figures
        if figures.last_pass_at is None:
            return ServiceHealth("Healthy", "no pass yet" if self._running else "not started")
        upcoming = figures.next_due.isoformat() if figures.next_due else "none"
        return ServiceHealth(
            "Healthy", f"{figures.started} scheduled run(s) started; next tick at {upcoming}"
        )

    def figures(self) -> ScheduleFigures:
        """Counts since start (a snapshot)."""
        return self._figures

    # -- one pass ------------------------------------------------------------------------------

    async def run_once(self, now: datetime | None = None) -> int:
        """Arm finished ``after`` schedules and fire every schedule due at ``now`` (default:
        the database clock); returns how many instances this call started."""
        store = self.store
        moment = now if now is not None else await store.now()
        while True:
            waiting = await store.finished_after_schedules(self.batch_size)
            for schedule, ended in waiting:
                period = plan_of(schedule).period or timedelta(0)
                # A run that is gone (cleaned up) ended long ago: due now.
                await store.fire_schedule(schedule, (ended or moment) + period)
            if len(waiting) < self.batch_size:
                break
        started = lost = 0
        while True:
            due = await store.due_schedules(self.batch_size, moment)
            for schedule in due:
                if await self._fire(schedule, moment):
                    started += 1
                else:
                    lost += 1
            if len(due) < self.batch_size:
                break
        if started:
            self.engine.notify_work()
        figures = self._figures
        self._figures = replace(
            figures,
            started=figures.started + started,
            lost=figures.lost + lost,
            passes=figures.passes + 1,
            last_pass_at=moment,
        )
        self._last_error = None
        return started

    async def _fire(self, schedule: ScheduleRecord, now: datetime) -> bool:
        assert schedule.next_due is not None
        try:
            upcoming = plan_of(schedule).next_due(schedule.next_due, now)
        except DefinitionError as exc:
            # Checked when deployed; should a later release refuse what an earlier one
            # stored, the schedule stops (until redeployed) rather than block the others.
            log.error(
                "Schedule of workflow %s/%s/%s is invalid and was stopped: %s",
                schedule.namespace, schedule.name, schedule.version, exc.message,
            )  # fmt: skip
            await self.store.fire_schedule(schedule, None)
            return False
        instance = tick_instance(schedule)
        won = await self.store.fire_schedule(schedule, upcoming, instance)
        if won:
            log.info(
                "Scheduled run of workflow %s/%s/%s started: instance %s (due %s)",
                schedule.namespace, schedule.name, schedule.version, instance.id,
                schedule.next_due.isoformat(),
                extra={"workflow_id": instance.id, "definition": f"{schedule.namespace}/{schedule.name}",
                       "schedule_kind": schedule.kind.value},
            )  # fmt: skip
        return won

    # -- sleeping ------------------------------------------------------------------------------

    async def _seconds_to_next_due(self) -> float:
        due = await self.store.next_schedule_due()
        self._figures = replace(self._figures, next_due=due)
        if due is None:
            return self.poll_interval
        until = (due - await self.store.now()).total_seconds()
        return min(max(until, 0.0), self.poll_interval)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        await until_any(seconds, stop, self._wake)
