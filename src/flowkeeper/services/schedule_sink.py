"""The outbox sink that makes the runs emitted events start (``schedule.on``) crash-safe.

A run that emits an event starts the ``on`` runs it triggers right after its checkpoint
commits (:func:`flowkeeper.runtime.scheduled_starts.start_for_event`, called by the
executor): fast, but a crash between that commit and those starts would lose them. The
event is in the outbox by then, durably, and the outbox processor hands it to this sink
too, at least once: it starts the ``one``/``any`` runs again, which is a no-op for each
one already started (the start is idempotent: its key is the schedule's and the
event's). ``all`` sets are not repaired this way: an event must join a set once, and
the processor cannot tell a first delivery from a repeated one; the executor's start
collects it.

The sink's name cannot be a configured sink's (those have no ``:``). The processor
keeps it out of a row's ``delivered_to`` and of the delivery metrics (an internal
sink): it acts again on every attempt at the row, harmlessly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from flowkeeper.errors import FlowkeeperError
from flowkeeper.runtime import Engine
from flowkeeper.runtime.events import event_key
from flowkeeper.runtime.scheduled_starts import SchedulePlan, plan_of, start_for_event
from flowkeeper.schedule_records import ScheduleKind, ScheduleRecord
from flowkeeper.services.sinks import DeliveryFailed, Event

#: How long the list of ``on`` schedules is reused (a deployment elsewhere is seen by then).
SCHEDULES_TTL = 1.0


class ScheduledStartSink:
    """A :class:`~flowkeeper.services.sinks.Sink` starting the ``on`` runs of emitted events."""

    name = "flowkeeper:schedules"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._schedules: Sequence[ScheduleRecord] | None = None
        self._plans: list[SchedulePlan] = []
        self._read_at = -SCHEDULES_TTL

    def accepts(self, event: Event) -> bool:
        """Whether an ``on`` schedule may start a run for ``event`` (when the list of
        schedules is stale, yes: :meth:`deliver` reads it again and decides)."""
        if self._schedules is None or time.monotonic() - self._read_at > SCHEDULES_TTL:
            return True
        emitted = dict(event)
        return any(p.mode != "all" and p.matches(emitted) for p in self._plans)

    async def deliver(self, event: Event) -> None:
        """Start the ``one``/``any`` runs ``event`` triggers that are not started yet."""
        emitted = dict(event)
        try:
            on = await self._on_schedules()
            await start_for_event(self.engine, emitted, event_key(emitted), duplicate=True, schedules=on)
        except FlowkeeperError as exc:  # the database: the processor retries with back-off
            raise DeliveryFailed(f"{exc.code}: {exc.message}") from exc

    async def aclose(self) -> None:
        """Nothing to release."""

    async def _on_schedules(self) -> Sequence[ScheduleRecord]:
        if self._schedules is None or time.monotonic() - self._read_at > SCHEDULES_TTL:
            schedules = await self.engine.store.list_schedules(ScheduleKind.ON)
            plans = []
            for schedule in schedules:
                try:
                    plans.append(plan_of(schedule))
                except FlowkeeperError:
                    continue  # checked when deployed; start_for_event skips it too
            self._schedules, self._plans, self._read_at = schedules, plans, time.monotonic()
        return self._schedules
