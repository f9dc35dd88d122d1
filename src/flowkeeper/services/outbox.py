"""The outbox processor: delivers the events workflows emit to the configured sinks.

A pipeline of three parts, so that neither the database nor a slow sink stalls the rest:

1. the claim loop takes up to ``batch_size`` due rows at a time (``claim_outbox``: a
   claim lasts ``claim_timeout``), while fewer than ``2 x batch_size`` rows are in
   flight; it claims again at once while batches come back full, else sleeps until
   :meth:`OutboxProcessor.wake`, the earliest retry it scheduled, or
   ``processing_interval``;
2. each claimed row is delivered to every sink that accepts its event and has not had
   it yet (``delivered_to``), all rows and sinks concurrently, each delivery bounded by
   its sink's timeout: a failing or slow sink holds only its own deliveries;
3. the settler writes the outcomes as they arrive, all the rows delivered meanwhile
   in one statement (``complete_outbox_many``); a row that failed somewhere is retried
   after ``min(max_retry_delay, retry_delay_base * retry_delay_multiplier ** (attempts
   - 1))`` (``attempts`` counting this one), keeping the sinks it reached, or is dead
   (``dead_letter_outbox``, with the last errors) once it has had ``max_retry_attempts``
   attempts (at least one).

Delivery is at least once: a processor that crashes or hangs leaves its rows
``processing`` until their claim runs out, then any processor takes them again; the
event id is the same every time. With no sink configured, rows are marked delivered as
they come (events already reach waiting instances inside the engine when committed).

Health: Degraded while the last database call failed, or while dead letters exist
(they wait for an operator: ``flowkeeper outbox requeue ID``); otherwise Healthy. The
description says how many events are pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from flowkeeper.config import OutboxProcessorSettings
from flowkeeper.records import OutboxRecord, OutboxStatus
from flowkeeper.services.base import ServiceHealth
from flowkeeper.services.sinks import DeliveryFailed, Sink, build_sinks
from flowkeeper.store.port import Store

log = logging.getLogger("flowkeeper.outbox")

#: Longest back-off after a failed database call (doubling from 0.1 s).
MAX_BACKOFF = 5.0
#: Settling a batch is tried this many times before its rows are left to their claim's end.
SETTLE_TRIES = 5
#: The pending count shown by ``health`` is read at most this often (seconds).
COUNT_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class OutboxFigures:
    """What a processor has done since it started (counters), and the backlog last read."""

    #: Deliveries per (sink name, outcome), outcome ``delivered`` or ``failed``.
    deliveries: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: Rows settled: delivered to every sink, given back for a retry, dead-lettered.
    delivered: int = 0
    retried: int = 0
    dead_letters: int = 0
    #: Rows pending or processing, and dead rows, at the last count (None: not read yet).
    pending: int | None = None
    dead: int | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    record: OutboxRecord
    delivered_to: tuple[str, ...]
    errors: tuple[str, ...]


class OutboxProcessor:
    """A :class:`~flowkeeper.services.base.BackgroundService` delivering outbox rows to sinks.

    ``sinks`` default to the configured ones (:func:`~flowkeeper.services.sinks.build_sinks`);
    the processor closes them when :meth:`run` ends. ``owner`` names its claims (default
    ``<host>-<pid>-outbox-<random>``): two processors must not share one.
    """

    name = "outbox-processor"

    def __init__(
        self,
        store: Store,
        settings: OutboxProcessorSettings,
        *,
        sinks: Sequence[Sink] | None = None,
        internal_sinks: Sequence[Sink] = (),
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.max_in_flight = 2 * settings.batch_size
        #: The configured sinks (``sinks``: instead of those of ``settings``).
        self.external_sinks: list[Sink] = list(sinks) if sinks is not None else build_sinks(settings)
        #: Every sink, Flowkeeper's own (``internal_sinks``) included. Those are not
        #: recorded in ``delivered_to`` nor counted as deliveries: they act on every
        #: attempt at a row (so they must be idempotent), unseen by operators.
        self.sinks: list[Sink] = [*self.external_sinks, *internal_sinks]
        self._internal = frozenset(s.name for s in internal_sinks)
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-outbox-{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._outcomes: asyncio.Queue[_Outcome] = asyncio.Queue()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._settling = asyncio.Lock()
        self._retries: list[float] = []  # monotonic times at which retried rows fall due
        self._counts: Counter[tuple[str, str]] = Counter()
        self._settled = Counter[str]()
        self._pending: int | None = None
        self._dead: int | None = None
        self._counted_at = 0.0
        self._last_error: str | None = None
        self._started = False

    # -- BackgroundService ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim, deliver and settle until ``stop`` is set; then let the deliveries in
        flight finish (each within its sink's timeout), settle them and close the sinks."""
        self._started = True
        watcher = asyncio.create_task(self._wake_on(stop), name="outbox-stop")
        settler = asyncio.create_task(self._settle_loop(), name="outbox-settler")
        try:
            await self._claim_loop(stop)
            await self._drain()
        finally:
            for task in (watcher, settler, *self._deliveries):
                task.cancel()
            await asyncio.gather(watcher, settler, *self._deliveries, return_exceptions=True)
            await self.aclose()

    def wake(self) -> None:
        """New rows were committed: claim now rather than at the next poll."""
        self._wake.set()

    def health(self) -> ServiceHealth:
        """Degraded while the last database call failed or dead letters exist."""
        if self._last_error is not None:
            return ServiceHealth("Degraded", f"last pass failed: {self._last_error}")
        pending = self._pending
        backlog = "pending count not read yet" if pending is None else f"{pending} event(s) pending"
        if self._dead:
            return ServiceHealth(
                "Degraded",
                f"{self._dead} dead letter(s) (re-queue with `flowkeeper outbox requeue ID`); {backlog}",
            )
        if not self.external_sinks:
            return ServiceHealth(
                "Healthy",
                "no external sink configured: emitted events are marked delivered "
                f"(they reach waiting instances on commit); {backlog}",
            )
        state = backlog if self._started else "not started"
        return ServiceHealth("Healthy", f"{state}; sinks: {', '.join(s.name for s in self.external_sinks)}")

    def figures(self) -> OutboxFigures:
        """Counters since start and the backlog last read (a snapshot)."""
        return OutboxFigures(
            deliveries=dict(self._counts),
            delivered=self._settled["delivered"],
            retried=self._settled["retried"],
            dead_letters=self._settled["dead"],
            pending=self._pending,
            dead=self._dead,
        )

    async def aclose(self) -> None:
        """Close the sinks (their connections)."""
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception as exc:  # closing must not hide why we stopped
                log.warning("Closing outbox sink %s failed: %s", sink.name, type(exc).__name__)

    # -- one batch, start to end (tests, tools) --------------------------------------------------

    async def run_once(self) -> int:
        """Claim one batch, deliver it and settle it; how many rows were claimed."""
        s = self.settings
        rows = await self.store.claim_outbox(self.owner, s.batch_size, s.claim_timeout)
        outcomes = await asyncio.gather(*(self._deliver_row(row) for row in rows))
        await self._settle(list(outcomes))
        return len(rows)

    # -- claiming ------------------------------------------------------------------------------

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()
        self._room.set()

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            room = self.max_in_flight - self._in_flight
            if room <= 0:
                self._room.clear()
                await self._room.wait()  # set by the settler (or by stop)
                continue
            # Cleared before claiming: a wake() arriving during the claim is not lost.
            self._wake.clear()
            wanted = min(self.settings.batch_size, room)
            claimed_at = time.monotonic()
            try:
                rows = await self.store.claim_outbox(self.owner, wanted, self.settings.claim_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: report, back off, go on
                self._failed("claim", exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.1
            self._last_error = None
            self._start(rows)
            # The backlog for health: often when idle, rarely under load (counting a
            # large backlog is not free).
            await self._count(COUNT_EVERY if len(rows) < wanted else self._interval)
            if len(rows) == wanted:
                await asyncio.sleep(0)  # let deliveries start before the next claim
            else:
                await self._sleep(self._idle_seconds(claimed_at))

    def _idle_seconds(self, claimed_at: float) -> float:
        """How long to sleep: until the next retry falls due, at most the processing interval."""
        # Only retries due before the claim started were taken by it; one falling due
        # while the claim ran is taken by the next claim, which comes at once.
        while self._retries and self._retries[0] <= claimed_at:
            heapq.heappop(self._retries)
        if not self._retries:
            return self._interval
        return max(0.0, min(self._interval, self._retries[0] - time.monotonic()))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    @property
    def _interval(self) -> float:
        return self.settings.processing_interval.total_seconds()

    async def _count(self, every: float) -> None:
        """Refresh the backlog figures, if the last count is ``every`` seconds old."""
        now = time.monotonic()
        if now - self._counted_at < every:
            return
        self._counted_at = now
        try:
            # Not while our own outcomes are being written: a count taken before them,
            # stored after them, would undo their effect on the figures.
            async with self._settling:
                counts = await self.store.count_outbox()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed("count", exc)
            return
        self._pending = counts[OutboxStatus.PENDING] + counts[OutboxStatus.PROCESSING]
        self._dead = counts[OutboxStatus.DEAD]

    def _failed(self, what: str, exc: Exception) -> None:
        # Store errors carry no passwords (the store masks them); the type says enough
        # for anything else.
        self._last_error = f"{what}: {type(exc).__name__}: {exc}"
        log.error("Outbox %s failed (%s)", what, self._last_error)

    # -- delivering ----------------------------------------------------------------------------

    def _start(self, rows: Sequence[OutboxRecord]) -> None:
        for row in rows:
            self._in_flight += 1
            task = asyncio.create_task(self._deliver_and_queue(row))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver_and_queue(self, row: OutboxRecord) -> None:
        try:
            outcome = await self._deliver_row(row)
        except Exception as exc:  # a sink's accepts() broke: the row must still be settled
            log.exception("Outbox event %s: choosing its sinks failed", row.id)
            outcome = _Outcome(row, row.delivered_to, (f"unexpected {type(exc).__name__}",))
        self._outcomes.put_nowait(outcome)

    async def _deliver_row(self, row: OutboxRecord) -> _Outcome:
        """Deliver one row to every accepting sink it has not reached yet, concurrently."""
        done = set(row.delivered_to)
        targets = [s for s in self.sinks if s.name not in done and s.accepts(row.event)]
        if not targets:
            return _Outcome(row, row.delivered_to, ())
        if len(targets) == 1:  # the common case, without gather's tasks
            results: Sequence[str | None] = [await self._deliver(targets[0], row)]
        else:
            results = await asyncio.gather(*(self._deliver(s, row) for s in targets))
        reached = [
            s.name
            for s, error in zip(targets, results, strict=True)
            if error is None and s.name not in self._internal
        ]
        errors = tuple(f"{s.name}: {e}" for s, e in zip(targets, results, strict=True) if e is not None)
        return _Outcome(row, (*row.delivered_to, *reached), errors)

    async def _deliver(self, sink: Sink, row: OutboxRecord) -> str | None:
        """None when delivered, else why not (safe to store and log)."""
        try:
            await sink.deliver(row.event)
        except DeliveryFailed as exc:
            error = str(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sink's bug: its text might hold anything, keep the type
            error = f"unexpected {type(exc).__name__}"
            log.exception("Outbox sink %s failed unexpectedly on event %s", sink.name, row.id)
        else:
            if sink.name not in self._internal:
                self._counts[(sink.name, "delivered")] += 1
            return None
        if sink.name not in self._internal:
            self._counts[(sink.name, "failed")] += 1
        return error

    # -- settling ------------------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        while True:
            batch = [await self._outcomes.get()]
            while not self._outcomes.empty() and len(batch) < self.max_in_flight:
                batch.append(self._outcomes.get_nowait())
            backoff = 0.1
            for attempt in range(1, SETTLE_TRIES + 1):
                try:
                    await self._settle(batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed("settle", exc)
                    if attempt == SETTLE_TRIES:
                        # Left processing: their claims run out and they are delivered again.
                        log.error("Outbox: giving up settling %d event(s); they will be retried", len(batch))
                    else:
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, MAX_BACKOFF)
            self._in_flight -= len(batch)
            self._room.set()

    async def _settle(self, outcomes: Sequence[_Outcome]) -> None:
        """Write a batch of outcomes: the delivered rows in one statement, the others each."""
        async with self._settling:
            await self._write_outcomes(outcomes)

    async def _write_outcomes(self, outcomes: Sequence[_Outcome]) -> None:
        delivered = {o.record.id: o.delivered_to for o in outcomes if not o.errors}
        failed = [o for o in outcomes if o.errors]
        writes = [self._settle_failed(o) for o in failed]
        if delivered:
            completed = await self.store.complete_outbox_many(self.owner, delivered)
            self._settled["delivered"] += len(completed)
            self._left_backlog(len(completed))
            if len(completed) < len(delivered):
                log.info(
                    "Outbox: %d delivered event(s) had been claimed by another processor meanwhile",
                    len(delivered) - len(completed),
                )
        if writes:
            await asyncio.gather(*writes)

    async def _settle_failed(self, outcome: _Outcome) -> None:
        row = outcome.record
        attempts = row.attempts + 1
        error = "; ".join(outcome.errors)
        if attempts >= max(1, self.settings.max_retry_attempts):
            if await self.store.dead_letter_outbox(row.id, self.owner, outcome.delivered_to, error):
                self._settled["dead"] += 1
                self._dead = (self._dead or 0) + 1
                self._left_backlog(1)
                log.warning(
                    "Outbox event %s is dead after %d attempt(s): %s",
                    row.id,
                    attempts,
                    error,
                    extra={"outbox_id": row.id, "attempts": attempts},
                )
            return
        delay = self.retry_delay(attempts)
        if await self.store.retry_outbox(row.id, self.owner, outcome.delivered_to, error, delay):
            self._settled["retried"] += 1
            # Measured after the write, whose database clock started the delay.
            heapq.heappush(self._retries, time.monotonic() + delay.total_seconds())
            self._wake.set()  # the claim loop may be sleeping past this retry's due time
            log.info(
                "Outbox event %s: attempt %d failed (%s); retrying in %.3gs",
                row.id,
                attempts,
                error,
                delay.total_seconds(),
                extra={"outbox_id": row.id, "attempts": attempts},
            )

    def _left_backlog(self, rows: int) -> None:
        # Keeps the figure current between counts (which also see other processors' work).
        if self._pending is not None:
            self._pending = max(0, self._pending - rows)

    def retry_delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (1 for the first)."""
        s = self.settings
        try:
            return min(s.max_retry_delay, s.retry_delay_base * s.retry_delay_multiplier ** (attempts - 1))
        except OverflowError:  # a multiplier that high has long reached the cap
            return s.max_retry_delay

    async def _drain(self) -> None:
        """Wait for the deliveries in flight to be delivered and settled."""
        while self._in_flight > 0:
            self._room.clear()
            await self._room.wait()
