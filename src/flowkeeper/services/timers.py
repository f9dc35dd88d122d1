"""The timer service: fires durable timers (waits, retry back-offs, timeouts) at their due time.

Near timers are held in memory as due times and fired a moment (``AHEAD``) before they
come due, their instances claimed in the same round trip; each run then waits in memory
for its due time, so that it resumes on time rather than a round trip late. The
database is asked again after each firing and every ``processing_interval`` (the
safety net for timers nobody told this process about). Due times are on the database
clock: the service keeps the offset between the host's clock and the database's,
measured at each poll, and the store's ``fire_due_timers`` decides on the database
clock, so replicas with skewed host clocks still fire on time and exactly once (the
store deletes a fired timer in the transaction that consumes its bookmark; replicas
skip each other's locked rows).

Timers due further away than ``long_running_threshold`` are not held in memory: they
stay in the database until a poll finds them near.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flowkeeper.config import TimerServiceSettings
from flowkeeper.records import TimerRecord
from flowkeeper.runtime import Engine
from flowkeeper.services.base import ServiceHealth
from flowkeeper.waiting import until_any

log = logging.getLogger("flowkeeper.timers")

#: Timers due this soon (seconds) are fired, and their instances claimed, ahead of time;
#: each run waits in memory until its due time. That covers the firing round trip and a
#: run's start, so the run resumes at its due time rather than that much after it (with
#: 1,000 timers due in one second, most of the lateness measured by ``bench/scale.py``).
#: A timer of an instance someone else holds fires when due, not before.
AHEAD = 0.02

#: A timer announced by a notification is looked for this long after its due time (its
#: creator fires it, ahead), at the next multiple of BACKUP_GRAIN.
BACKUP_DELAY = 0.01
BACKUP_GRAIN = 0.05

#: How long the most precise measurement of the clock offset is kept (clocks drift
#: little in a minute; a fresh one is taken when it is older).
OFFSET_MAX_AGE = 60.0

#: The clock offset is measured again (once a second at most) while it may be off by more.
CLOCK_PRECISION = 0.002

#: When a due timer is not fired (another replica holds its instance right now), look
#: again this much later, doubling while it keeps happening, rather than an interval later.
_RECHECK = 0.002
_RECHECK_MAX = 1.0


@dataclass(frozen=True, slots=True)
class TimerFigures:
    """What the timer service has done since it started, for metrics."""

    fired: int = 0
    passes: int = 0
    failed_passes: int = 0
    #: Due times held in memory now (timers this process expects to fire soon).
    near: int = 0


class TimerService:
    """A :class:`~flowkeeper.services.base.BackgroundService` firing due timers."""

    name = "timer-service"

    def __init__(self, engine: Engine, settings: TimerServiceSettings) -> None:
        self.engine = engine
        self.settings = settings
        # Heap of when to fire (a due time, or AHEAD before it), epoch seconds on the database clock.
        self._near: list[float] = []
        self._slots: set[float] = set()  # the backup looks among them (expect_elsewhere)
        self._offset = 0.0  # database clock minus host clock, seconds
        self._offset_error = 0.0  # how far off _offset may be, seconds
        self._offset_taken = -math.inf  # when (time.monotonic()) _offset was measured
        self._wake = asyncio.Event()
        self._last_error: str | None = None
        self._running = False
        self._fired = self._passes = self._failed = 0
        self._recheck = _RECHECK
        self._poll_now = False
        #: Set once the service has read the database's next due time (it is ready).
        self.polled = asyncio.Event()
        engine.timer_listeners.append(self.expect)

    # -- BackgroundService -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Fire timers as they come due until ``stop`` is set."""
        self._running = True
        interval = self.settings.processing_interval.total_seconds()
        backoff = 0.1
        next_poll = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    if self._offset_error > CLOCK_PRECISION and time.monotonic() - self._offset_taken > 1.0:
                        await self._sample_clock()
                    if self._poll_now or time.monotonic() >= next_poll:
                        self._poll_now = False
                        await self._poll()
                        next_poll = time.monotonic() + interval
                    if self._near and self._near[0] <= self._db_now():
                        await self._fire_due()
                    self._last_error = None
                    backoff = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database went away: report, back off, go on
                    self._failed += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    log.error("Timer service pass failed (%s); retrying in %.1fs", self._last_error, backoff)
                    next_poll = 0.0
                    await self._sleep(stop, backoff)
                    backoff = min(backoff * 2, interval)
                    continue
                wait = next_poll - time.monotonic()
                if self._near:
                    wait = min(wait, self._near[0] - self._db_now())
                if self._offset_error > CLOCK_PRECISION:
                    wait = min(wait, 1.0)  # and measure the clock again
                await self._sleep(stop, wait)
        finally:
            self._running = False

    def wake(self) -> None:
        """Ask the database for the next due time now (notifications may have been missed)."""
        self._poll_now = True
        self._wake.set()

    def health(self) -> ServiceHealth:
        if not self._running:
            return ServiceHealth("Unhealthy", "not running")
        if self._last_error is not None:
            return ServiceHealth("Degraded", f"last pass failed: {self._last_error}")
        return ServiceHealth("Healthy", f"{len(self._near)} near timer(s) held, {self._fired} fired")

    def figures(self) -> TimerFigures:
        return TimerFigures(self._fired, self._passes, self._failed, len(self._near))

    # -- what others tell us ---------------------------------------------------------------------

    def expect(self, due_times: Iterable[datetime | float]) -> None:
        """This process's runs created timers due at these times (database clock): hold
        the near ones and fire them (ahead, see ``AHEAD``)."""
        self._hold([(d.timestamp() if isinstance(d, datetime) else float(d)) - AHEAD for d in due_times])

    def expect_elsewhere(self, due_times: Iterable[float]) -> None:
        """Timers were created somewhere (a notification, which reaches their creator
        too) due at these times: look for them once they are overdue, in case their
        creator cannot fire them. Looks are grouped on a grid of ``BACKUP_GRAIN``
        seconds, so that replicas do not make one pass per timer of every other replica."""
        slots = {math.ceil((due + BACKUP_DELAY) / BACKUP_GRAIN) * BACKUP_GRAIN for due in due_times}
        slots -= self._slots
        self._slots |= slots
        self._hold(slots)

    def _hold(self, fire_at: Iterable[float]) -> None:
        horizon = self._db_now() + self.settings.long_running_threshold.total_seconds()
        earliest = self._near[0] if self._near else None
        for at in fire_at:
            if at <= horizon:
                heapq.heappush(self._near, at)
        if self._near and (earliest is None or self._near[0] < earliest):
            self._wake.set()

    # -- work ------------------------------------------------------------------------------------

    def _db_now(self) -> float:
        return time.time() + self._offset

    async def _poll(self) -> None:
        """Take the next due time from the database (the safety net)."""
        self._passes += 1
        self._near = []
        self._slots.clear()
        await self._learn_next(fired=False)
        self.polled.set()

    async def _learn_next(self, *, fired: bool) -> None:
        """Read the next due time with the database clock, which also refreshes the
        offset between the host's clock and the database's (``fired``: just after a
        firing, which took every timer it could up to AHEAD from now)."""
        before = time.time()
        due, db_now = await self.engine.store.next_timer_and_now()
        self._measured(db_now.timestamp(), before, time.time())
        if due is None:
            return
        at = due.timestamp()
        if at <= db_now.timestamp():
            # Due, yet not fired: another replica holds it right now (or is firing it).
            # Look again shortly, then less and less often while it lasts.
            at = self._db_now() + self._recheck
            self._recheck = min(self._recheck * 2, _RECHECK_MAX)
        elif not fired or at > db_now.timestamp() + AHEAD:
            at -= AHEAD
        # else: left by the firing (someone holds its instance): fire it when due.
        if at - self._db_now() <= self.settings.long_running_threshold.total_seconds():
            heapq.heappush(self._near, at)

    async def _fire_due(self) -> None:
        """Fire everything due now, batch after batch, then learn the next due time."""
        engine = self.engine
        batch = self.settings.batch_size
        while True:
            # Fired and claimed for us in one go: the woken instances run here, each at
            # the latest due time it fired (some fired up to AHEAD early).
            fired, claimed = await engine.store.fire_and_claim_timers(
                batch, engine.owner, engine.lease, timedelta(seconds=AHEAD)
            )
            if fired:
                self._fired += len(fired)
                for delivery in claimed:
                    assert delivery.claimed is not None
                    engine.run_delivered(delivery, not_before=self._not_before(delivery.claimed.id, fired))
                taken = {d.claimed.id for d in claimed if d.claimed is not None}
                others = [t.instance_id for t in fired if t.instance_id not in taken]
                if others:
                    # A run of ours takes the fired timer at once (a task timeout while it
                    # calls out); for the rest another worker holds the lease, or the
                    # dispatcher claims them.
                    engine.poke(others)
                    engine.notify_work()
                self._recheck = _RECHECK
            if len(fired) < batch:
                break
        now = self._db_now()
        while self._near and self._near[0] <= now:
            self._slots.discard(heapq.heappop(self._near))
        await self._learn_next(fired=True)

    async def _sample_clock(self) -> None:
        """Read the database clock a few times to measure the offset precisely (the
        readings of a busy start-up can be off by a hundred milliseconds)."""
        for _ in range(3):
            before = time.time()
            db_now = await self.engine.store.now()
            self._measured(db_now.timestamp(), before, time.time())

    def _measured(self, db_now: float, before: float, after: float) -> None:
        """Take the clock offset from a reading of the database clock made between
        ``before`` and ``after`` (host clock) if it is the most precise one lately: the
        reading may have been made anywhere in that span, so half the span bounds the
        error, and a busy event loop widens the span, not the reading's precision."""
        error = (after - before) / 2
        if error <= self._offset_error or time.monotonic() - self._offset_taken > OFFSET_MAX_AGE:
            self._offset = db_now - (before + after) / 2
            self._offset_error = error
            self._offset_taken = time.monotonic()

    def _not_before(self, instance_id: str, fired: list[TimerRecord]) -> float:
        """When the run of an instance whose timers were just fired may resume (this
        host's clock): its latest due time, read both as a time of this host (the
        creator's clock, as the wait's log entries are) and of the database; never
        later than AHEAD from now, whatever the clocks' skew."""
        # The due time as a float may sit a hair below its microsecond, and the clock the
        # run's log entries are stamped with (datetime.now()) rounds down to whole
        # microseconds: one microsecond more keeps them from reading before the due time.
        due = max(t.due_at.timestamp() for t in fired if t.instance_id == instance_id) + 1e-6
        margin = self._offset_error  # not before it on the database clock, whatever the error
        return min(max(due, due - self._offset + margin), time.time() + AHEAD + margin)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        await until_any(seconds, stop, self._wake)
